"""The batched multi-task collector against single-environment collection."""
import numpy as np
import pytest

from mier_tf import actors
from mier_tf import envs
from mier_tf.collect import MultiTaskCollector


def _linear_policy(obs_dim, act_dim, seed=0):
  """A deterministic row-wise policy, so batched and single-env actions can be compared."""
  w = np.random.default_rng(seed).normal(size=(obs_dim, act_dim)).astype(np.float32) * 0.3
  # Row by row: a batched matmul may round differently from a [1, d] one, and the ant's
  # dynamics amplify one ulp into visible differences within a few hundred steps.
  return actors.FunctionActor(lambda x: np.stack([np.tanh(row @ w) for row in x]))


def _single_env_collect(family, task, context, num_steps, action_fn, seed, slot):
  """Reference: one plain gymnasium env, one policy call per step, the slot's reset seeds."""
  env = family.make_env(task)
  rng = np.random.default_rng([seed, slot])
  obs, _ = env.reset(seed=int(rng.integers(2**31 - 1)))
  rows, returns, total = [], [], 0.0
  for _ in range(num_steps):
    action = action_fn(np.concatenate([obs, context])[None].astype(np.float32))[0]
    nxt, reward, terminated, truncated, _ = env.step(action)
    rows.append((obs, action, reward, nxt, 0.0 if terminated else 1.0))
    total += reward
    if terminated or truncated:
      returns.append(total)
      total = 0.0
      nxt, _ = env.reset(seed=int(rng.integers(2**31 - 1)))
    obs = nxt
  env.close()
  keys = ("observation", "action", "reward", "next_observation", "discount")
  return {k: np.asarray([r[i] for r in rows], np.float32) for i, k in enumerate(keys)}, returns


@pytest.mark.parametrize("name,num_steps", [("cheetah_vel_hard", 450), ("ant_negjoints", 300)])
def test_batched_collection_equals_single_env_collection(name, num_steps):
  family = envs.get_task_family(name)
  tasks = list(family.train_tasks[:3])
  contexts = np.random.default_rng(1).normal(size=(3, 5)).astype(np.float32)
  action_fn = _linear_policy(family.observation_dim + 5, family.action_dim)
  collector = MultiTaskCollector(family, num_slots=4, seed=7)
  data, returns = collector.collect(tasks, contexts, num_steps, action_fn)
  for i, task in enumerate(tasks):
    expected, expected_returns = _single_env_collect(family, task, contexts[i], num_steps,
                                                     action_fn, seed=7, slot=i)
    for key, value in expected.items():
      np.testing.assert_allclose(data[i][key], value, rtol=1e-6, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(returns[i], expected_returns, rtol=1e-5)
  if name == "cheetah_vel_hard":  # never ends early: two full episodes of 200 steps
    assert all(len(r) == 2 for r in returns)
    assert np.all(np.concatenate([d["discount"] for d in data]) == 1.0)
  collector.close()


def test_ant_terminations_are_recorded_with_discount_zero_and_the_episode_restarts():
  family = envs.get_task_family("ant_negjoints")
  collector = MultiTaskCollector(family, num_slots=2, seed=0)
  rng = np.random.default_rng(0)  # full-torque random signs make the ant jump out of range
  bang = actors.FunctionActor(
      lambda x: rng.choice([-1.0, 1.0], (x.shape[0], family.action_dim)).astype(np.float32))
  data, returns = collector.collect(list(family.train_tasks[:2]), np.zeros((2, 5)), 400, bang)
  discounts = np.concatenate([d["discount"] for d in data])
  assert discounts.min() == 0.0, "no termination in 400 steps of bang-bang actions"
  for d, r in zip(data, returns):
    ends = np.flatnonzero(d["discount"] == 0.0)
    assert len(r) >= len(ends)
    for e in ends[ends < 399]:  # the next row starts a fresh episode, not the fallen state
      assert not np.allclose(d["observation"][e + 1], d["next_observation"][e])


def test_contexts_reach_the_policy_row_by_row():
  family = envs.get_task_family("cheetah_vel_hard")
  seen = []

  def action_fn(x):
    seen.append(x.copy())
    return np.zeros((x.shape[0], family.action_dim), np.float32)

  contexts = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
  MultiTaskCollector(family, num_slots=2).collect(list(family.train_tasks[:2]), contexts, 5,
                                                  actors.FunctionActor(action_fn))
  assert len(seen) == 5
  for x in seen:
    np.testing.assert_array_equal(x[:, family.observation_dim:], contexts)


def test_too_many_tasks_for_the_slots_is_an_error():
  family = envs.get_task_family("cheetah_vel_hard")
  with pytest.raises(ValueError, match="slots"):
    MultiTaskCollector(family, num_slots=1).collect(list(family.train_tasks[:2]),
                                                    np.zeros((2, 5)), 1, actors.ZeroActor(6))
