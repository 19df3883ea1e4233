"""Every TensorBoard tag mier_tf writes, by writer: the one home of the tag names.

The axes: train/ logs against training steps; eval/ (evaluations, identification, Perf/*)
against environment steps; adapt/task_<i>/ against relabeling epochs. The tags are a
contract (README, "TensorBoard"): the tests read them back by their literal names. The
functions that write them are in `mier_tf/summaries.py`. (No imports: plotting reads these
names without loading TensorFlow.)
"""

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
# eval/, at environment steps (each evaluation, and Perf/* each epoch).
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
# adapt/task_<i>/, at relabeling epochs (Algorithm 2).
TEST_RETURN_MIER = "Eval/test_return_mier"
ADAPT_MIER_WR_RETURN = "Adapt/mier_wr_return"
ADAPT_NLL_META_ADAPTED = "Adapt/nll_meta_adapted"
ADAPT_NLL_OOD_ADAPTED = "Adapt/nll_ood_adapted"
RELABEL_ERROR_KEYS = ("reward_mae", "reward_bias", "reward_corr", "next_state_rmse")


def test_task_return_tag(index: int) -> str:
  """eval/'s curve of one test task's MIER-wR return."""
  return f"Eval_test_task/return_{index:02d}"


def relabel_error_tag(key: str) -> str:
  """adapt/task_<i>/'s error of the relabeled experience (one of RELABEL_ERROR_KEYS)."""
  return f"Relabel/{key}"
