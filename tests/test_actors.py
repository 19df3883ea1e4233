"""Actors: the numpy SAC actor against the TF policy, seeding, refresh, and the collector's contract."""
import numpy as np
import pytest
import tensorflow as tf

from mier_tf import actors
from mier_tf import envs
from mier_tf.agents import sac
from mier_tf.collect import MultiTaskCollector

OBS, ACT, CTX = 3, 2, 4


@pytest.fixture(scope="module")
def agent():
  return sac.create_sac_agent(OBS, ACT, CTX, actor_fc_layers=(16,), critic_fc_layers=(16,))


def test_compiled_actor_greedy_is_repeatable_and_sampling_is_seeded(agent):
  obs = np.random.default_rng(2).normal(size=(7, OBS + CTX)).astype(np.float32)
  greedy = actors.CompiledActor(agent.policy, deterministic=True)
  a1, a2 = greedy(obs), greedy(obs)
  assert a1.shape == (7, ACT)
  np.testing.assert_array_equal(a1, a2)
  explore = actors.CompiledActor(agent.collect_policy, seed=3)
  b1, b2 = explore(obs), explore(obs)
  assert np.all(np.abs(b1) <= 1.0)
  assert not np.allclose(b1, b2)
  again = actors.CompiledActor(agent.collect_policy, seed=3)
  np.testing.assert_allclose(again(obs), b1, rtol=1e-6)


def test_numpy_actor_is_the_tf_policy(agent):
  """The collection actor computes the same network and distribution as the TF policy."""
  actor_net = agent.policy._actor_network  # pylint: disable=protected-access
  rng = np.random.default_rng(4)
  for v in actor_net.trainable_variables:  # move off the initial weights
    v.assign(v + rng.normal(scale=0.3, size=v.shape).astype(np.float32))
  obs = rng.normal(size=(6, OBS + CTX)).astype(np.float32)
  greedy = actors.NumpyActor(actor_net, agent.action_spec, deterministic=True)
  np.testing.assert_allclose(greedy(obs), actors.CompiledActor(agent.policy, True)(obs),
                             atol=1e-5)
  # Stochastic: a * tanh(mean + std * eps) with the TF network's mean and std, eps from the
  # actor's seeded generator.
  distribution, _ = actor_net(tf.constant(obs), step_type=(), network_state=())
  normal = distribution._distribution  # the Gaussian before the tanh squash  pylint: disable=protected-access
  eps = np.random.default_rng(11).standard_normal((6, ACT), np.float32)
  expected = np.tanh(normal.mean().numpy() + normal.stddev().numpy() * eps)
  explore = actors.NumpyActor(actor_net, agent.action_spec, seed=11)
  np.testing.assert_allclose(explore(obs), expected, atol=1e-5)
  # refresh() picks up new weights
  actor_net.trainable_variables[-1].assign_add(tf.ones_like(actor_net.trainable_variables[-1]))
  before = greedy(obs)
  greedy.refresh()
  assert not np.allclose(before, greedy(obs))
  np.testing.assert_allclose(greedy(obs), actors.CompiledActor(agent.policy, True)(obs),
                             atol=1e-5)


def test_of_agent_is_the_agents_actor(agent):
  obs = np.random.default_rng(6).normal(size=(5, OBS + CTX)).astype(np.float32)
  direct = actors.NumpyActor(agent.policy._actor_network, agent.action_spec,  # pylint: disable=protected-access
                             deterministic=True)
  np.testing.assert_array_equal(actors.NumpyActor.of_agent(agent, deterministic=True)(obs),
                                direct(obs))


def test_random_zero_and_function_actors():
  obs = np.zeros((4, 7), np.float32)
  low, high = np.array([-1.0, 0.0]), np.array([1.0, 0.5])
  a = actors.RandomActor(low, high, seed=3)(obs)
  assert a.shape == (4, 2) and a.dtype == np.float32
  assert np.all(a >= low) and np.all(a <= high)
  np.testing.assert_array_equal(a, np.random.default_rng(3).uniform(low, high, (4, 2))
                                .astype(np.float32))
  np.testing.assert_array_equal(actors.ZeroActor(3)(obs), np.zeros((4, 3)))
  np.testing.assert_array_equal(actors.FunctionActor(lambda x: x[:, :2] + 1)(obs),
                                np.ones((4, 2)))


def test_the_collector_refreshes_every_actor_and_refuses_a_plain_function():
  family = envs.get_task_family("cheetah_vel_hard")
  calls = []

  class Counting(actors.ZeroActor):
    def refresh(self):
      calls.append("refresh")

  collector = MultiTaskCollector(family, num_slots=1)
  collector.collect(list(family.train_tasks[:1]), np.zeros((1, 2)), 3, Counting(6))
  collector.collect(list(family.train_tasks[:1]), np.zeros((1, 2)), 3, Counting(6))
  assert calls == ["refresh", "refresh"]
  with pytest.raises(TypeError, match="FunctionActor"):
    collector.collect(list(family.train_tasks[:1]), np.zeros((1, 2)), 3,
                      lambda x: np.zeros((1, 6)))
  collector.close()
