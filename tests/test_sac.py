"""Context-augmented SAC: specs, context tagging, one compiled update, mixed precision."""
import numpy as np
import pytest
import tensorflow as tf

from mier_tf import actors
from mier_tf.agents import sac

OBS, ACT, CTX = 3, 2, 4


@pytest.fixture(scope="module")
def agent():
  return sac.create_sac_agent(OBS, ACT, CTX, actor_fc_layers=(16,), critic_fc_layers=(16,))


def test_observation_spec_carries_the_context(agent):
  assert agent.time_step_spec.observation.shape == (OBS + CTX,)
  assert agent.action_spec.shape == (ACT,)
  # The release's SAC starts log alpha at 0 (alpha 1), whatever its config said.
  assert float(tf.exp(agent._log_alpha)) == pytest.approx(1.0, rel=1e-6)


def test_tag_with_context_puts_each_tasks_context_on_its_rows():
  obs = np.arange(2 * 3 * OBS, dtype=np.float32).reshape(2, 3, OBS)
  ctx = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32)
  flat = sac.tag_with_context(tf.constant(obs), tf.constant(ctx)).numpy()
  assert flat.shape == (6, OBS + CTX)
  np.testing.assert_array_equal(flat[:3, :OBS], obs[0])
  np.testing.assert_array_equal(flat[3:, :OBS], obs[1])
  np.testing.assert_array_equal(flat[:3, OBS:], np.tile(ctx[0], (3, 1)))
  np.testing.assert_array_equal(flat[3:, OBS:], np.tile(ctx[1], (3, 1)))


def test_sac_receives_context_tagged_observations(agent):
  """The batch the agent trains on carries each row's own task's adapted context."""
  seen = {}
  original = agent.train

  def record(obs, nxt):
    seen["obs"], seen["next"] = obs, nxt
    return np.float32(0)

  def spy(experience, weights=None):  # runs inside the compiled step: record through numpy
    tf.numpy_function(record, [experience.time_step.observation,
                               experience.next_time_step.observation], tf.float32)
    return original(experience, weights)

  learner = sac.ContextSacLearner(agent)
  agent.train = spy
  try:
    rng = np.random.default_rng(0)
    tasks, n = 3, 5
    batch = dict(observation=rng.normal(size=(tasks, n, OBS)).astype(np.float32),
                 action=rng.uniform(-1, 1, (tasks, n, ACT)).astype(np.float32),
                 reward=rng.normal(size=(tasks, n)).astype(np.float32),
                 next_observation=rng.normal(size=(tasks, n, OBS)).astype(np.float32),
                 discount=np.ones((tasks, n), np.float32))
    contexts = rng.normal(size=(tasks, CTX)).astype(np.float32)
    step_before = int(agent.train_step_counter.numpy())
    losses = learner.train_tagged({k: tf.constant(v) for k, v in batch.items()},
                                  tf.constant(contexts))
  finally:
    agent.train = original
  obs, nxt = seen["obs"], seen["next"]
  for t in range(tasks):
    np.testing.assert_array_equal(obs[t * n:(t + 1) * n, OBS:], np.tile(contexts[t], (n, 1)))
    np.testing.assert_array_equal(nxt[t * n:(t + 1) * n, OBS:], np.tile(contexts[t], (n, 1)))
    np.testing.assert_array_equal(obs[t * n:(t + 1) * n, :OBS], batch["observation"][t])
  assert int(agent.train_step_counter.numpy()) == step_before + 1
  assert np.isfinite(float(losses.critic_loss)) and float(losses.alpha) > 0


def test_sac_update_lowers_the_critic_loss_on_a_fixed_batch():
  agent = sac.create_sac_agent(OBS, ACT, CTX, actor_fc_layers=(16,), critic_fc_layers=(32,),
                               critic_learning_rate=1e-2)
  rng = np.random.default_rng(1)
  n = 64
  obs = rng.normal(size=(n, OBS + CTX)).astype(np.float32)
  act = rng.uniform(-1, 1, (n, ACT)).astype(np.float32)
  rew = (obs[:, 0] * 2.0).astype(np.float32)
  learner = sac.ContextSacLearner(agent)
  args = [tf.constant(x) for x in (obs, act, rew, obs, np.zeros(n, np.float32))]
  first = float(learner.train(*args).critic_loss)
  for _ in range(150):
    last = float(learner.train(*args).critic_loss)
  assert last < 0.2 * first


def test_mixed_precision_hidden_layers_in_bfloat16_outputs_in_float32():
  agent = sac.create_sac_agent(OBS, ACT, CTX, actor_fc_layers=(32,), critic_fc_layers=(32,),
                               critic_learning_rate=1e-2, mixed_precision=True)
  nets = {"critic": agent._critic_network_1, "critic 2": agent._critic_network_2,
          "target": agent._target_critic_network_1}  # pylint: disable=protected-access
  for name, net in nets.items():
    *_, hidden, value = net._joint_layers  # pylint: disable=protected-access
    assert hidden.compute_dtype == "bfloat16", name
    assert value.compute_dtype == "float32", name
    assert all(v.dtype == tf.float32 for v in net.trainable_variables), name
  # The copies SacAgent makes have weights of their own (no layer shared with the original).
  assert nets["critic"].trainable_variables[-1] is not nets["critic 2"].trainable_variables[-1]
  rng = np.random.default_rng(5)
  n = 64
  obs = rng.normal(size=(n, OBS + CTX)).astype(np.float32)
  act = rng.uniform(-1, 1, (n, ACT)).astype(np.float32)
  actor_hidden = agent._actor_network._encoder._postprocessing_layers[-1]  # pylint: disable=protected-access
  assert actor_hidden.compute_dtype == "bfloat16"
  q, _ = nets["critic"]((tf.constant(obs), tf.constant(act)))
  assert q.dtype == tf.float32
  # The critic computes the float32 network's function to bfloat16 accuracy.
  kernels = [v.numpy() for v in nets["critic"].trainable_variables]
  h = np.maximum(np.concatenate([obs, act], 1) @ kernels[0] + kernels[1], 0)
  np.testing.assert_allclose(q.numpy(), (h @ kernels[2] + kernels[3])[:, 0], atol=0.05)
  actions = actors.CompiledActor(agent.policy, deterministic=True)(obs)
  assert actions.dtype == np.float32 and np.all(np.abs(actions) <= 1.0)
  # It learns: the critic loss on a fixed batch falls as in float32.
  learner = sac.ContextSacLearner(agent)
  rew = (obs[:, 0] * 2.0).astype(np.float32)
  args = [tf.constant(x) for x in (obs, act, rew, obs, np.zeros(n, np.float32))]
  first = float(learner.train(*args).critic_loss)
  for _ in range(150):
    last = float(learner.train(*args).critic_loss)
  assert last < 0.2 * first


def test_reset_critics_redraws_both_critics_and_their_targets_only():
  agent = sac.create_sac_agent(OBS, ACT, CTX, actor_fc_layers=(16,), critic_fc_layers=(16,))
  critics = agent._critic_network_1.variables + agent._critic_network_2.variables
  before_critics = [v.numpy() for v in critics]
  actor = [v.numpy() for v in agent._actor_network.variables]
  log_alpha = agent._log_alpha.numpy()
  for v in critics:  # as if meta-trained: far from any initialisation
    v.assign(v + 5.0)
  sac.reset_critics(agent, seed=3)
  for v, b in zip(critics, before_critics):
    if "bias" in v.name:
      np.testing.assert_array_equal(v.numpy(), 0.0)
    else:  # Glorot uniform: within sqrt(6 / (fan_in + fan_out)), and not the old weights
      limit = np.sqrt(6.0 / sum(v.shape))
      assert np.abs(v.numpy()).max() <= limit and not np.allclose(v.numpy(), b + 5.0)
  for critic, target in ((agent._critic_network_1, agent._target_critic_network_1),
                         (agent._critic_network_2, agent._target_critic_network_2)):
    for v, t in zip(critic.variables, target.variables):
      np.testing.assert_array_equal(v.numpy(), t.numpy())
  # The two critics differ; the actor and the temperature are untouched; the seed decides.
  assert not np.allclose(agent._critic_network_1.variables[0].numpy(),
                         agent._critic_network_2.variables[0].numpy())
  for v, a in zip(agent._actor_network.variables, actor):
    np.testing.assert_array_equal(v.numpy(), a)
  assert agent._log_alpha.numpy() == log_alpha
  first = agent._critic_network_1.variables[0].numpy()
  sac.reset_critics(agent, seed=3)
  np.testing.assert_array_equal(agent._critic_network_1.variables[0].numpy(), first)
