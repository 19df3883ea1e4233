"""Evaluation: MIER-wR's test-time procedure, standing still, and exported SavedModels.

MIER-wR (the paper's MIER without experience relabeling), batched over tasks: one
prior-context episode per task gives D_adapt, a few gradient steps on the context give
phi_T, and one episode with the deterministic policy on concat(s, phi_T) gives the return
that is reported. `evaluate_mier_wr_episodes` runs it on the live run (meta-training's
evaluations); `evaluate_export` runs the same procedure on a run's export/ alone (what
`scripts/evaluate.py` runs): the policy and the model come back from `tf.saved_model.load`
and no model or agent code is imported, so this is also how a user evaluates an export
elsewhere. `standing_still_returns` is the floor every return is read against.
"""
import functools
import os
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_agents  # noqa: F401  registers the distribution specs the policy SavedModel uses

from mier_tf import envs
from mier_tf import video
from mier_tf.actors import Actor, SavedPolicyActor, ZeroActor
from mier_tf.collect import MultiTaskCollector, in_groups, repeat_context, stack_tasks
from mier_tf.errors import CheckpointError

AdaptFn = Callable[[dict], np.ndarray]


def evaluate_mier_wr(collector: MultiTaskCollector, tasks: Sequence, prior_context: np.ndarray,
                     adapt_fn: AdaptFn, explore_actor: Actor, greedy_actor: Actor,
                     adapt_steps: int, slots: int) -> np.ndarray:
  """Returns the MIER-wR return of each task (see `evaluate_mier_wr_episodes`)."""
  return evaluate_mier_wr_episodes(collector, tasks, prior_context, adapt_fn, explore_actor,
                                   greedy_actor, adapt_steps, slots)[0]


def evaluate_mier_wr_episodes(collector: MultiTaskCollector, tasks: Sequence,
                              prior_context: np.ndarray, adapt_fn: AdaptFn,
                              explore_actor: Actor, greedy_actor: Actor, adapt_steps: int,
                              slots: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The MIER-wR return, episode length and adapted context of each task.

  Args:
    collector: a collector over the tasks' family.
    tasks: task parameters to evaluate.
    prior_context: [context_dim] the meta-learned initial context.
    adapt_fn: maps a batch dict with leading dims [tasks, samples] to contexts [tasks, c].
    explore_actor: the stochastic policy, used to collect adaptation data.
    greedy_actor: the deterministic policy, used for the evaluation episode.
    adapt_steps: transitions of adaptation data per task.
    slots: the most tasks collected at once.

  Returns:
    (returns, lengths, contexts): per task, the evaluation episode's return, its number of
    steps (the time limit, or fewer where the robot fell), and the context it acted on.
  """
  returns, lengths, all_contexts = [], [], []
  horizon = collector.family.max_episode_steps
  for group in in_groups(list(tasks), slots):
    prior = repeat_context(prior_context, len(group))
    data, _ = collector.collect(group, prior, adapt_steps, explore_actor)
    contexts = np.asarray(adapt_fn(stack_tasks(data)), np.float32)
    all_contexts.extend(contexts)
    episodes, episode_returns = collector.collect(group, contexts, horizon, greedy_actor)
    returns.extend(r[0] for r in episode_returns)
    for episode in episodes:  # a termination is the one step with discount 0
      ends = np.flatnonzero(episode["discount"] == 0.0)
      lengths.append(int(ends[0]) + 1 if len(ends) else horizon)
  return (np.asarray(returns, np.float64), np.asarray(lengths, np.int64),
          np.asarray(all_contexts, np.float32))


def standing_still_returns(family, tasks: Sequence, slots: int = 10, seed: int = 0
                           ) -> np.ndarray:
  """The return of one episode with zero actions on each task: the floor a policy must beat.

  A collector of its own (seeded with `seed`) runs the episodes, so the training
  collector's random stream is not touched.
  """
  collector = MultiTaskCollector(family, slots, seed=seed)
  still = ZeroActor(family.action_dim)
  returns = []
  for group in in_groups(list(tasks), slots):
    _, episode_returns = collector.collect(group, np.zeros((len(group), 1), np.float32),
                                           family.max_episode_steps, still)
    returns.extend(r[0] for r in episode_returns)
  collector.close()
  return np.asarray(returns, np.float64)


# ------------------------------------------------------------------------------------------
# Exported SavedModels alone.

def load_saved_model(path: str):
  """tf.saved_model.load, with a missing or corrupt SavedModel named in one error.

  Raises:
    FileNotFoundError: no saved_model.pb at `path`.
    CheckpointError: it is there but cannot be loaded (truncated, corrupt).
  """
  if not os.path.isfile(os.path.join(path, "saved_model.pb")):
    raise FileNotFoundError(f"no SavedModel at {path} (expected a run's export/ directory)")
  try:
    return tf.saved_model.load(path)
  except Exception as e:  # pylint: disable=broad-except  (protobuf, OpError, ValueError...)
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    raise CheckpointError(f"{path}: cannot be loaded ({type(e).__name__}: {first[:200]})") from e


def load_export(export_dir: str):
  """Loads (policy, collect_policy, model) from a run's export/ directory."""
  return tuple(load_saved_model(os.path.join(export_dir, name))
               for name in ("policy", "collect_policy", "model"))


@functools.lru_cache(maxsize=4)
def _loaded_export(export_dir: str):
  """`load_export`, once per export: rendering many tasks of one export loads it once."""
  return load_export(export_dir)


def _adapt_fn(model):
  """Batch {key: [tasks, n, ...]} -> adapted contexts [tasks, c], by the model's signature."""
  adapt = model.signatures["adapt"]

  def adapt_fn(batch):
    return np.stack([adapt(observation=tf.constant(batch["observation"][k]),
                           action=tf.constant(batch["action"][k]),
                           next_observation=tf.constant(batch["next_observation"][k]),
                           reward=tf.constant(batch["reward"][k]))["context"].numpy()
                     for k in range(batch["observation"].shape[0])])

  return adapt_fn


def adapted_context(export_dir: str, family, task, seed: int = 0) -> np.ndarray:
  """MIER-wR's context for a task: the export's `adapt` on one prior-context episode."""
  _, collect_policy, model = _loaded_export(export_dir)
  prior = model.signatures["prior_context"]()["context"].numpy()
  collector = MultiTaskCollector(family, num_slots=1, seed=seed)
  try:
    data, _ = collector.collect([task], prior[None], family.max_episode_steps,
                                SavedPolicyActor(collect_policy))
  finally:
    collector.close()
  return _adapt_fn(model)(stack_tasks(data))[0]


def render_export(export_dir: str, family_name: str, task_index: int, split: str = "test",
                  context: Optional[np.ndarray] = None, seed: int = 0):
  """Frames of the export's deterministic policy on one task, and the episode's return.

  The context is MIER-wR's (adapted by the export's model on a prior-context episode)
  unless given: an export of Algorithm 2 (ROOT/adapt/task_<i>/export) holds the task's
  adapted context as its prior context, so pass that one.
  """
  family = envs.get_task_family(family_name)
  tasks = family.train_tasks if split == "train" else family.test_tasks
  if not 0 <= task_index < len(tasks):
    raise ValueError(f"task index {task_index} out of range: {family_name} has {len(tasks)} "
                     f"{split} tasks")
  task = tasks[task_index]
  if context is None:
    context = adapted_context(export_dir, family, task, seed)
  policy = _loaded_export(export_dir)[0]
  return video.rollout_frames(family, task, SavedPolicyActor(policy), context,
                              steps=family.max_episode_steps, seed=seed)


def render_mier_vs_mier_wr(root_dir: str, family_name: str, task_index: int,
                           seed: int = 0):
  """Side-by-side frames of MIER-wR (left) and MIER (right) on one relabeled test task.

  Returns (frames, (mier_wr_return, mier_return)) of the rendered episodes.
  """
  adapted = os.path.join(root_dir, "adapt", f"task_{task_index}", "export")
  phi = load_saved_model(os.path.join(adapted, "model")).signatures[
      "prior_context"]()["context"].numpy()
  wr_frames, wr_return = render_export(os.path.join(root_dir, "export"), family_name,
                                       task_index, seed=seed)
  mier_frames, mier_return = render_export(adapted, family_name, task_index, context=phi,
                                           seed=seed)
  return (video.side_by_side(video.label(wr_frames, f"MIER-wR  {wr_return:.0f}"),
                             video.label(mier_frames, f"MIER  {mier_return:.0f}")),
          (wr_return, mier_return))


def evaluate_export(export_dir: str, family_name: str, split: str = "test",
                    task_indices: Optional[Sequence] = None, seed: int = 0,
                    num_episodes: int = 1) -> dict:
  """MIER-wR returns of exported SavedModels on a family's tasks.

  Args:
    export_dir: a run's export/ directory.
    family_name: task family name.
    split: "train" or "test".
    task_indices: indices into the split (default all).
    seed: seed of the environment resets.
    num_episodes: MIER-wR episodes per task, each adapted on fresh prior-context data.

  Returns:
    {"family", "split", "num_episodes", "mean_return", "std_return" (over tasks' means),
    "tasks": [{"index", "task", "return" (mean), "returns" (each episode)}]}.
  """
  if num_episodes < 1:
    raise ValueError(f"--num_episodes must be >= 1; got {num_episodes}")
  family = envs.get_task_family(family_name)
  policy, collect_policy, model = load_export(export_dir)
  tasks = family.train_tasks if split == "train" else family.test_tasks
  indices = [int(i) for i in task_indices] if task_indices else list(range(len(tasks)))
  for i in indices:
    if not 0 <= i < len(tasks):
      raise ValueError(f"task index {i} out of range: {family_name} has {len(tasks)} "
                       f"{split} tasks")
  prior = model.signatures["prior_context"]()["context"].numpy()
  obs_dim = family.observation_dim
  inputs = policy.signatures["action"].structured_input_signature[1]
  expected = next(v.shape[-1] for k, v in inputs.items() if k.endswith("observation"))
  if expected != obs_dim + prior.shape[-1]:
    raise ValueError(f"{export_dir} was exported for observations of size "
                     f"{expected - prior.shape[-1]}, but {family_name} has {obs_dim}")
  adapt_fn = _adapt_fn(model)

  collector = MultiTaskCollector(family, num_slots=10, seed=seed)
  episodes = np.stack([
      evaluate_mier_wr(collector, [tasks[i] for i in indices], prior, adapt_fn,
                       SavedPolicyActor(collect_policy), SavedPolicyActor(policy),
                       family.max_episode_steps, slots=10)
      for _ in range(num_episodes)], axis=1)  # [tasks, episodes]
  collector.close()
  means = episodes.mean(axis=1)
  return {"family": family_name, "split": split, "num_episodes": num_episodes,
          "mean_return": float(means.mean()), "std_return": float(means.std()),
          "tasks": [{"index": i, "task": family.describe_task(tasks[i]),
                     "return": float(m), "returns": [float(r) for r in row]}
                    for i, m, row in zip(indices, means, episodes)]}
