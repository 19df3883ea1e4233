"""Every TensorBoard tag mier_tf writes, by writer: the one home of the tag names.

The axes: train/ logs against training steps; eval/ and its two sub-runs against
environment steps (evaluations, identification, Perf/*; MIER at the checkpoint it relabeled
from); adapt/task_<i>/ against relabeling epochs, under Relabel/* only. No tag is written
against two axes. TensorBoard colours a chart's lines by run, so MIER-wR (eval/), standing
still (eval/standing_still/) and MIER (eval/mier/) are three runs that write the same
per-task tag, and each test task's chart holds the three. The tags are a contract (README,
"TensorBoard"): the tests read them back by their literal names. The functions that write
them are in `mier_tf/summaries.py`. (No imports: plotting reads these names without
loading TensorFlow.)
"""

# The writers besides train/, eval/ and adapt/task_<i>/ (directories under ROOT).
STANDING_STILL_WRITER = "eval/standing_still"
MIER_WRITER = "eval/mier"

# train/, at training steps (every MetaTrainingRun.summary_interval steps).
META_LOSS = "Model/meta_loss"
NLL_BEFORE_ADAPT = "Model/nll_before_adapt"
NLL_AFTER_ADAPT = "Model/nll_after_adapt"
CRITIC_LOSS = "SAC/critic_loss"
ACTOR_LOSS = "SAC/actor_loss"
ALPHA_LOSS = "SAC/alpha_loss"
ALPHA = "SAC/alpha"
ENV_STEPS = "Progress/env_steps"
CONFIG = "Config/operative_gin"  # text, once per run, at step 0
# eval/, at environment steps (each evaluation, and Perf/* each epoch). Returns are MIER-wR
# means over the K protocol episodes; standing still is from the same start states.
TRAIN_RETURN = "Eval/train_return"
TEST_RETURN_MIER_WR = "Eval/test_return_mier_wr"
TRAIN_RETURN_ABOVE_STILL = "Eval/train_return_above_still"
TEST_RETURN_MIER_WR_ABOVE_STILL = "Eval/test_return_mier_wr_above_still"
TRAIN_EPISODE_LENGTH = "Eval/train_episode_length"
TEST_EPISODE_LENGTH = "Eval/test_episode_length"
TEST_TASK_00_ROLLOUT = "Eval/test_task_00_rollout"  # an animated GIF (Images tab)
IDENTIFICATION_R2 = "Eval/identification_r2"
IDENTIFICATION_SPREAD_RATIO = "Eval/identification_spread_ratio"
NLL_STATE_BEFORE_ADAPT = "Model/nll_state_before_adapt"
NLL_STATE_AFTER_ADAPT = "Model/nll_state_after_adapt"
NLL_REWARD_BEFORE_ADAPT = "Model/nll_reward_before_adapt"
NLL_REWARD_AFTER_ADAPT = "Model/nll_reward_after_adapt"
TRAIN_STEPS_PER_SEC = "Perf/train_steps_per_sec"
ENV_STEPS_PER_SEC = "Perf/env_steps_per_sec"
# eval/, each epoch of single-process meta-training: the mean return of the training-task
# episodes that epoch's collection finished, with the prior context and with the adapted one
# (the exploration policy's sampled actions: a learning curve between evaluations, which the
# paper campaign runs only from its milestones; not the evaluation protocol's returns).
COLLECT_RETURN = {"prior": "Collect/return_prior_context",
                  "adapted": "Collect/return_adapted_context"}
# eval/standing_still/, at each evaluation: standing still's mean over the test tasks (and
# per task, `test_task_return_tag`); the same at every evaluation (fixed start states).
TEST_STANDING_STILL = "Eval/test_standing_still"
# eval/mier/ and eval/, at the env steps of the meta-training checkpoint Algorithm 2 started
# from, written from results.json after each relabeling job (`adapt_all_test_tasks`): one
# point per checkpoint. eval/mier/ holds MIER's mean over the test tasks relabeled at that
# checkpoint (often fewer than all; per task, `test_task_return_tag`), eval/ MIER-wR's mean
# over those same tasks, its paired reference. A task relabeled again from the same
# checkpoint (adapt.py) adds a point at the same step; results.json keeps the latest.
TEST_RETURN_MIER = "Eval/test_return_mier"
TEST_RETURN_MIER_WR_RELABELED = "Eval/test_return_mier_wr_relabeled_tasks"
# eval/, once at step 0: the Custom Scalars dashboard's layout (`summaries.layout`).
CUSTOM_SCALARS_LAYOUT = "custom_scalars__config__"  # TensorBoard's own name for it
# adapt/task_<i>/, at relabeling epochs (Algorithm 2 on test task i).
RELABEL_RETURN_MIER = "Relabel/return_mier"  # the policy's return after each epoch
RELABEL_RETURN_MIER_WR = "Relabel/return_mier_wr"  # the level it started from (flat)
RELABEL_CRITIC_LOSS = "Relabel/sac_critic_loss"
RELABEL_ACTOR_LOSS = "Relabel/sac_actor_loss"
RELABEL_ALPHA = "Relabel/sac_alpha"
RELABEL_ERROR_KEYS = ("reward_mae", "reward_bias", "reward_corr", "next_state_rmse")


def test_task_return_tag(index: int) -> str:
  """One test task's return: MIER-wR's in eval/, standing still's in eval/standing_still/,
  MIER's in eval/mier/ (the run says which)."""
  return f"Eval_test_task/return_{index:02d}"


def relabel_error_tag(key: str) -> str:
  """adapt/task_<i>/'s error of the relabeled experience (one of RELABEL_ERROR_KEYS)."""
  return f"Relabel/{key}"
