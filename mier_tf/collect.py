"""Multi-task collection: several tasks' environments stepped in lock-step.

One policy call per step serves every task at once: row i of the batch is task i's state
concatenated with task i's context. Episodes end at the 200-step limit (a truncation, the
discount stays 1) or at a real termination (discount 0); an ended episode restarts at once,
so every task yields exactly `num_steps` transitions.
"""
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from mier_tf.actors import Actor

Transitions = Dict[str, np.ndarray]


class MultiTaskCollector:
  """Steps up to `num_slots` environments of one task family together.

  Args:
    family: a `mier_tf.envs.TaskFamily`.
    num_slots: the most tasks collected at once (one environment per slot, reused across
      tasks through `set_task`, so MuJoCo models are built once).
    seed: seed of the environments' resets. Slot i draws the seed of each of its resets
      from `np.random.default_rng([seed, i])`, so a slot's episodes do not depend on how
      many other slots run beside it.
  """

  def __init__(self, family, num_slots: int, seed: int = 0):
    self.family = family
    self._envs = []
    self._num_slots = num_slots
    self._rngs = [np.random.default_rng([seed, slot]) for slot in range(num_slots)]

  def _env(self, slot: int, task):
    while len(self._envs) <= slot:
      self._envs.append(self.family.make_env(task))
    env = self._envs[slot]
    env.unwrapped.set_task(task)
    return env

  def _reset(self, slot: int, rngs=None) -> np.ndarray:
    rng = (rngs or self._rngs)[slot]
    obs, _ = self._envs[slot].reset(seed=int(rng.integers(2**31 - 1)))
    return np.asarray(obs, np.float32)

  def get_state(self) -> list:
    """The reset-seed generators' states (JSON-serialisable), for checkpoints."""
    return [rng.bit_generator.state for rng in self._rngs]

  def set_state(self, state: list) -> None:
    for rng, s in zip(self._rngs, state):
      rng.bit_generator.state = s

  def collect(self, tasks: Sequence, contexts: np.ndarray, num_steps: int,
              actor: Actor, reset_rngs: Optional[Sequence[np.random.Generator]] = None
              ) -> Tuple[List[Transitions], List[List[float]]]:
    """Collects `num_steps` transitions for each task, starting fresh episodes.

    Args:
      tasks: task parameters (from `family.train_tasks` or `family.test_tasks`).
      contexts: [len(tasks), context_dim] context given to the policy for each task.
      num_steps: transitions to collect per task.
      actor: maps context-augmented observations [B, obs + context] to actions [B, act];
        its `refresh()` is called first (a `NumpyActor` reads the current weights there).
      reset_rngs: one generator per task drawing the seeds of that task's resets, instead
        of the slots' own (the evaluation protocol: a task's start states then depend on
        the task alone, `mier_tf.train.evaluation`).

    Returns:
      (transitions, returns): per task a dict of arrays [num_steps, ...] with keys
      observation, action, reward, next_observation, discount; and per task the undiscounted
      returns of the episodes that finished (by termination or by the time limit).
    """
    if len(tasks) > self._num_slots:
      raise ValueError(f"{len(tasks)} tasks given but the collector has {self._num_slots} slots")
    if not isinstance(actor, Actor):
      raise TypeError(f"collect takes a mier_tf.actors.Actor; got {type(actor).__name__} "
                      "(wrap a plain function in actors.FunctionActor)")
    actor.refresh()
    k = len(tasks)
    contexts = np.asarray(contexts, np.float32).reshape(k, -1)
    envs = [self._env(i, task) for i, task in enumerate(tasks)]
    if reset_rngs is not None and len(reset_rngs) != k:
      raise ValueError(f"{len(reset_rngs)} reset generators for {k} tasks")
    obs = np.stack([self._reset(i, reset_rngs) for i in range(k)])
    obs_dim, act_dim = obs.shape[1], self.family.action_dim
    out = dict(
        observation=np.empty((k, num_steps, obs_dim), np.float32),
        action=np.empty((k, num_steps, act_dim), np.float32),
        reward=np.empty((k, num_steps), np.float32),
        next_observation=np.empty((k, num_steps, obs_dim), np.float32),
        discount=np.empty((k, num_steps), np.float32))
    returns: List[List[float]] = [[] for _ in range(k)]
    running = np.zeros(k)
    for t in range(num_steps):
      actions = np.asarray(actor(np.concatenate([obs, contexts], axis=1)), np.float32)
      out["observation"][:, t] = obs
      out["action"][:, t] = actions
      for i, env in enumerate(envs):
        next_obs, reward, terminated, truncated, _ = env.step(actions[i])
        next_obs = np.asarray(next_obs, np.float32)
        out["reward"][i, t] = reward
        out["next_observation"][i, t] = next_obs
        out["discount"][i, t] = 0.0 if terminated else 1.0
        running[i] += reward
        if terminated or truncated:
          returns[i].append(float(running[i]))
          running[i] = 0.0
          next_obs = self._reset(i, reset_rngs)
        obs[i] = next_obs
    per_task = [{key: value[i] for key, value in out.items()} for i in range(k)]
    return per_task, returns

  def close(self) -> None:
    for env in self._envs:
      env.close()
    self._envs = []


def in_groups(items: Sequence, size: int) -> Iterator[Sequence]:
  """Consecutive groups of at most `size` items: the tasks one collection pass steps at once."""
  for start in range(0, len(items), size):
    yield items[start:start + size]


def repeat_context(context: np.ndarray, num_tasks: int) -> np.ndarray:
  """One context [c] given to `num_tasks` tasks: [num_tasks, c] (the prior context phi)."""
  context = np.asarray(context, np.float32).reshape(-1)
  return np.broadcast_to(context, (num_tasks, context.shape[0])).copy()


def stack_tasks(per_task: Sequence[Transitions]) -> Transitions:
  """Per-task dicts of [n, ...] arrays -> one dict of [tasks, n, ...] arrays."""
  return {key: np.stack([d[key] for d in per_task]) for key in per_task[0]}


def flatten_tasks(batch: Transitions) -> Transitions:
  """A dict of [tasks, n, ...] arrays -> a dict of [tasks * n, ...] arrays."""
  return {key: value.reshape((-1,) + value.shape[2:]) for key, value in batch.items()}
