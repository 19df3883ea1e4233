"""MIER-wR evaluation: collect with the prior context, adapt the context, run the policy.

This is the test-time procedure of MIER without experience relabeling (the paper's
MIER-wR), batched over tasks: one prior-context episode per task gives D_adapt, a few
gradient steps on the context give phi_T, and one episode with the deterministic policy
on concat(s, phi_T) gives the return that is reported.
"""
from typing import Callable, Sequence, Tuple

import numpy as np

from mier_tf.collect import ActionFn, MultiTaskCollector, in_groups, stack_tasks

AdaptFn = Callable[[dict], np.ndarray]


def evaluate_mier_wr(collector: MultiTaskCollector, tasks: Sequence, prior_context: np.ndarray,
                     adapt_fn: AdaptFn, explore_fn: ActionFn, greedy_fn: ActionFn,
                     adapt_steps: int, slots: int) -> np.ndarray:
  """Returns the MIER-wR return of each task (see `evaluate_mier_wr_episodes`)."""
  return evaluate_mier_wr_episodes(collector, tasks, prior_context, adapt_fn, explore_fn,
                                   greedy_fn, adapt_steps, slots)[0]


def evaluate_mier_wr_episodes(collector: MultiTaskCollector, tasks: Sequence,
                              prior_context: np.ndarray, adapt_fn: AdaptFn,
                              explore_fn: ActionFn, greedy_fn: ActionFn, adapt_steps: int,
                              slots: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The MIER-wR return, episode length and adapted context of each task.

  Args:
    collector: a collector over the tasks' family.
    tasks: task parameters to evaluate.
    prior_context: [context_dim] the meta-learned initial context.
    adapt_fn: maps a batch dict with leading dims [tasks, samples] to contexts [tasks, c].
    explore_fn: the stochastic policy, used to collect adaptation data.
    greedy_fn: the deterministic policy, used for the evaluation episode.
    adapt_steps: transitions of adaptation data per task.
    slots: the most tasks collected at once.

  Returns:
    (returns, lengths, contexts): per task, the evaluation episode's return, its number of
    steps (the time limit, or fewer where the robot fell), and the context it acted on.
  """
  returns, lengths, all_contexts = [], [], []
  horizon = collector.family.max_episode_steps
  for group in in_groups(list(tasks), slots):
    prior = np.tile(np.asarray(prior_context, np.float32)[None], (len(group), 1))
    data, _ = collector.collect(group, prior, adapt_steps, explore_fn)
    contexts = np.asarray(adapt_fn(stack_tasks(data)), np.float32)
    all_contexts.extend(contexts)
    episodes, episode_returns = collector.collect(group, contexts, horizon, greedy_fn)
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
  still = lambda observation: np.zeros((observation.shape[0], family.action_dim), np.float32)
  returns = []
  for group in in_groups(list(tasks), slots):
    _, episode_returns = collector.collect(group, np.zeros((len(group), 1), np.float32),
                                           family.max_episode_steps, still)
    returns.extend(r[0] for r in episode_returns)
  collector.close()
  return np.asarray(returns, np.float64)
