"""Evaluation of exported SavedModels alone (what `scripts/evaluate.py` runs).

Nothing here imports the model or agent code: the policy and the model come back from
`tf.saved_model.load`, so this is also how a user evaluates an export elsewhere.
"""
import functools
import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_agents  # noqa: F401  registers the distribution specs the policy SavedModel uses
from tf_agents.trajectories import time_step as ts

from mier_tf import envs
from mier_tf.errors import CheckpointError
from mier_tf.collect import MultiTaskCollector, stack_tasks
from mier_tf.train.evaluation import evaluate_mier_wr


def saved_policy_fn(policy):
  """Action function over context-augmented observations for a loaded PolicySaver policy."""

  def action_fn(observation: np.ndarray) -> np.ndarray:
    b = observation.shape[0]
    step = ts.TimeStep(step_type=tf.fill([b], tf.constant(ts.StepType.MID, tf.int32)),
                       reward=tf.zeros([b]), discount=tf.ones([b]),
                       observation=tf.constant(observation, tf.float32))
    return policy.action(step, ()).action.numpy()

  return action_fn


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
                                saved_policy_fn(collect_policy))
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
  from mier_tf import video  # pylint: disable=import-outside-toplevel
  family = envs.get_task_family(family_name)
  tasks = family.train_tasks if split == "train" else family.test_tasks
  if not 0 <= task_index < len(tasks):
    raise ValueError(f"task index {task_index} out of range: {family_name} has {len(tasks)} "
                     f"{split} tasks")
  task = tasks[task_index]
  if context is None:
    context = adapted_context(export_dir, family, task, seed)
  policy = _loaded_export(export_dir)[0]
  return video.rollout_frames(family, task, saved_policy_fn(policy), context,
                              steps=family.max_episode_steps, seed=seed)


def render_mier_vs_mier_wr(root_dir: str, family_name: str, task_index: int,
                           seed: int = 0):
  """Side-by-side frames of MIER-wR (left) and MIER (right) on one relabeled test task.

  Returns (frames, (mier_wr_return, mier_return)) of the rendered episodes.
  """
  from mier_tf import video  # pylint: disable=import-outside-toplevel
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
                       saved_policy_fn(collect_policy), saved_policy_fn(policy),
                       family.max_episode_steps, slots=10)
      for _ in range(num_episodes)], axis=1)  # [tasks, episodes]
  collector.close()
  means = episodes.mean(axis=1)
  return {"family": family_name, "split": split, "num_episodes": num_episodes,
          "mean_return": float(means.mean()), "std_return": float(means.std()),
          "tasks": [{"index": i, "task": family.describe_task(tasks[i]),
                     "return": float(m), "returns": [float(r) for r in row]}
                    for i, m, row in zip(indices, means, episodes)]}
