"""The references every MIER number is read against, on one test task, in our harness.

* **standing still**: one episode of zero actions (the floor: doing nothing);
* **oracle, MIER's data**: SAC from scratch on the test task alone, given what MIER's
  adaptation (Algorithm 2) was given of that task: the protocol's N (`EvalProtocol.adapt_steps`) real transitions
  (collected by the untrained policy) and as many SAC updates as the relabeling phase made
  (`num_epochs x steps_per_epoch x updates_per_step`), on those transitions only. What
  plain RL makes of the same real data without a meta-trained model or policy.
* **oracle, long**: SAC from scratch on the test task alone for `max(checkpoints)` of its
  environment steps, one update per step after a 1,000-step warm-up, its deterministic
  return at each checkpoint: a ceiling that MIER, with a few hundred steps of the task,
  is not expected to reach.

The oracles use the run's SAC settings (`create_sac_agent` as bound in its config) and the
same collector and learner as MIER. `scripts/references.py` runs them for a family's runs;
`mier_tf/results.py` puts them in the tables.
"""
import time
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from mier_tf import actors
from mier_tf.agents import sac
from mier_tf.collect import MultiTaskCollector

WARMUP_STEPS = 1_000


class TransitionRing:
  """A plain numpy replay of one task's flat transitions (no per-task tables needed)."""

  def __init__(self, capacity: int, obs_dim: int, act_dim: int, rng: np.random.Generator):
    self._data = dict(observation=np.zeros((capacity, obs_dim), np.float32),
                      action=np.zeros((capacity, act_dim), np.float32),
                      reward=np.zeros((capacity,), np.float32),
                      next_observation=np.zeros((capacity, obs_dim), np.float32),
                      discount=np.zeros((capacity,), np.float32))
    self._size, self._next, self._rng = 0, 0, rng

  def __len__(self) -> int:
    return self._size

  def add(self, transitions: Dict[str, np.ndarray]) -> None:
    n = len(transitions["reward"])
    index = (self._next + np.arange(n)) % len(self._data["reward"])
    for key, value in self._data.items():
      value[index] = transitions[key]
    self._next = int(index[-1] + 1)
    self._size = min(self._size + n, len(self._data["reward"]))

  def sample(self, batch_size: int) -> Dict[str, tf.Tensor]:
    """A batch [1, batch_size, ...] (one task), uniformly with replacement."""
    index = self._rng.integers(0, self._size, batch_size)
    return {key: tf.constant(value[index][None]) for key, value in self._data.items()}


class _SingleTaskSac:
  """SAC on one task with a constant zero context (the policy needs none)."""

  def __init__(self, family, task, seed: int, capacity: int, sac_kwargs: Optional[dict]):
    tf.keras.utils.set_random_seed(seed)
    self.family, self.task = family, task
    self.agent = sac.create_sac_agent(family.observation_dim, family.action_dim, 1,
                                      **(sac_kwargs or {}))
    self.learner = sac.ContextSacLearner(self.agent)
    self.explore = actors.NumpyActor.of_agent(self.agent, seed=seed)
    self.greedy = actors.NumpyActor.of_agent(self.agent, deterministic=True)
    self.collector = MultiTaskCollector(family, 1, seed=seed)
    self.replay = TransitionRing(capacity, family.observation_dim, family.action_dim,
                                 np.random.default_rng(seed))
    self._context = np.zeros((1, 1), np.float32)
    self._zero = tf.zeros([1, 1])

  def collect(self, steps: int) -> None:
    data, _ = self.collector.collect([self.task], self._context, steps, self.explore)
    self.replay.add(data[0])

  def train(self, updates: int, batch_size: int) -> None:
    for _ in range(updates):
      self.learner.train_tagged(self.replay.sample(batch_size), self._zero)

  def greedy_return(self) -> float:
    _, episode = self.collector.collect([self.task], self._context,
                                        self.family.max_episode_steps, self.greedy)
    return float(episode[0][0])

  def close(self) -> None:
    self.collector.close()


def standing_still(family, task, seed: int = 0) -> float:
  """The return of one episode of zero actions."""
  collector = MultiTaskCollector(family, 1, seed=seed)
  try:
    _, episode = collector.collect([task], np.zeros((1, 1), np.float32),
                                   family.max_episode_steps, actors.ZeroActor(family.action_dim))
  finally:
    collector.close()
  return float(episode[0][0])


def oracle_long(family, task, checkpoints: Sequence[int], seed: int = 0,
                batch_size: int = 256, sac_kwargs: Optional[dict] = None) -> dict:
  """SAC from scratch on `task`: its deterministic return after each checkpoint's env steps.

  Collection in whole episodes; after the first `WARMUP_STEPS` steps, one update per
  environment step (done after each episode). Checkpoints must be multiples of the episode
  length.
  """
  horizon = family.max_episode_steps
  if any(c % horizon for c in checkpoints):
    raise ValueError(f"checkpoints must be multiples of the episode length {horizon}")
  run = _SingleTaskSac(family, task, seed, max(checkpoints), sac_kwargs)
  cpu, wall = time.process_time(), time.perf_counter()
  returns, steps = {}, 0
  while steps < max(checkpoints):
    run.collect(horizon)
    steps += horizon
    if steps > WARMUP_STEPS:
      run.train(horizon, batch_size)
    if steps in checkpoints:
      returns[str(steps)] = run.greedy_return()
  run.close()
  return dict(returns=returns, cpu_seconds=time.process_time() - cpu,
              wall_seconds=time.perf_counter() - wall)


def oracle_same_data(family, task, data_steps: int, updates: int, seed: int = 0,
                     batch_size: int = 256, sac_kwargs: Optional[dict] = None) -> dict:
  """SAC from scratch given MIER's real data of the task: `data_steps` transitions of the
  untrained policy, then `updates` updates on them; its deterministic return."""
  run = _SingleTaskSac(family, task, seed, data_steps, sac_kwargs)
  cpu, wall = time.process_time(), time.perf_counter()
  run.collect(data_steps)
  run.train(updates, batch_size)
  result = dict(data_steps=data_steps, updates=updates, greedy_return=run.greedy_return(),
                cpu_seconds=time.process_time() - cpu, wall_seconds=time.perf_counter() - wall)
  run.close()
  return result
