"""Soft actor-critic whose observation is concat(state, context).

MIER's policy is ordinary off-policy SAC (it is never meta-trained): the only change is
the observation spec, which carries the task's adapted context phi_T next to the robot's
state. TF-Agents' networks take one flat observation, so the context is concatenated to it.
"""
import collections
from typing import Sequence

import gin
import tensorflow as tf
from tf_agents.agents.sac import sac_agent
from tf_agents.agents.sac import tanh_normal_projection_network
from tf_agents.networks import actor_distribution_network
from tf_agents.agents.ddpg import critic_network
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory
from tf_agents.utils import common
from tf_agents.utils import nest_utils

SacLosses = collections.namedtuple(
    "SacLosses", ("critic_loss", "actor_loss", "alpha_loss", "alpha"))


def augmented_time_step_spec(observation_dim: int, context_dim: int) -> ts.TimeStep:
  """The TimeStep spec of a context-augmented observation [observation_dim + context_dim]."""
  observation_spec = tf.TensorSpec([observation_dim + context_dim], tf.float32,
                                   name="observation")
  return ts.time_step_spec(observation_spec)


MIXED_PRECISION_POLICY = "mixed_bfloat16"


class MixedPrecisionCriticNetwork(critic_network.CriticNetwork):
  """TF-Agents' CriticNetwork with bfloat16 hidden layers.

  Weights stay float32 (Keras' mixed_bfloat16 policy); the hidden layers compute in
  bfloat16; the value layer computes in float32, so Q-values (hundreds, here) keep float32
  precision in the TD error. Arguments as `CriticNetwork`'s of the same name.
  """

  def __init__(self, input_tensor_spec, joint_fc_layer_params=None, kernel_initializer=None,
               last_kernel_initializer=None, name="CriticNetwork"):
    previous = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy(MIXED_PRECISION_POLICY)
    try:  # CriticNetwork makes its layers under the global policy; it takes no dtype.
      super().__init__(input_tensor_spec, joint_fc_layer_params=joint_fc_layer_params,
                       kernel_initializer=kernel_initializer,
                       last_kernel_initializer=last_kernel_initializer, name=name)
    finally:
      tf.keras.mixed_precision.set_global_policy(previous)
    value = self._joint_layers[-1]
    self._joint_layers[-1] = tf.keras.layers.Dense(
        1, kernel_initializer=value.kernel_initializer, name=value.name, dtype="float32")


class Float32TanhNormalProjectionNetwork(
    tanh_normal_projection_network.TanhNormalProjectionNetwork):
  """TanhNormalProjectionNetwork that takes bfloat16 features (it refuses any other dtype)."""

  def call(self, inputs, outer_rank, training=False, mask=None):
    return super().call(tf.cast(inputs, tf.float32), outer_rank, training=training, mask=mask)


class SeededSacAgent(sac_agent.SacAgent):
  """TF-Agents' SacAgent whose training samples draw from a checkpointed generator.

  SacAgent samples the actions of its losses with stateful random ops, whose state is not in
  any checkpoint: a run resumed from a checkpoint would draw other actions than the same
  run uninterrupted. Here every draw takes a stateless seed from `sample_generator`, a
  `tf.random.Generator` tracked by (so saved and restored with) the agent.

  Args:
    *args, **kwargs: as `SacAgent`'s.
    sample_seed: seed of `sample_generator`.
  """

  def __init__(self, *args, sample_seed: int = 0, **kwargs):
    super().__init__(*args, **kwargs)
    self.sample_generator = tf.random.Generator.from_seed(sample_seed)

  def _actions_and_log_probs(self, time_steps, training=False):
    # SacAgent._actions_and_log_probs of the pinned TF-Agents (0.19), with a seeded sample.
    batch_size = nest_utils.get_outer_shape(time_steps, self._time_step_spec)[0]
    policy = self._train_policy if training else self._policy
    action_distribution = policy.distribution(
        time_steps, policy_state=policy.get_initial_state(batch_size)).action
    actions = tf.nest.map_structure(
        lambda d: d.sample(seed=tf.cast(self.sample_generator.make_seeds(1)[:, 0], tf.int32)),
        action_distribution)
    log_pi = common.log_probability(action_distribution, actions, self.action_spec)
    return actions, log_pi


@gin.configurable
def create_sac_agent(
    observation_dim: int,
    action_dim: int,
    context_dim: int,
    action_low: float = -1.0,
    action_high: float = 1.0,
    # Networks: 256-256 for the out-of-distribution configs of the paper.
    actor_fc_layers: Sequence[int] = (256, 256),
    critic_fc_layers: Sequence[int] = (256, 256),
    # Optimisation (the paper's SAC settings).
    actor_learning_rate: float = 3e-4,
    critic_learning_rate: float = 3e-4,
    alpha_learning_rate: float = 3e-4,
    gamma: float = 0.99,
    target_update_tau: float = 0.005,
    initial_log_alpha: float = 0.0,
    target_entropy: float = -1.0,
    reward_scale_factor: float = 1.0,
    mixed_precision: bool = False,
    seed: int = 0,
    train_step_counter: tf.Variable = None,
) -> sac_agent.SacAgent:
  """Builds a TF-Agents SacAgent whose observations are concat(state, context).

  Args:
    observation_dim: size of the robot's observation.
    action_dim: size of the action.
    context_dim: size of MIER's latent context vector.
    action_low: lower bound of every action entry.
    action_high: upper bound of every action entry.
    actor_fc_layers: hidden sizes of the actor.
    critic_fc_layers: hidden sizes of each of the two critics (joint state-action input).
    actor_learning_rate: Adam learning rate of the actor.
    critic_learning_rate: Adam learning rate of the critics.
    alpha_learning_rate: Adam learning rate of the entropy temperature.
    gamma: discount factor.
    target_update_tau: Polyak factor of the target critics.
    initial_log_alpha: initial log of the entropy temperature.
    target_entropy: entropy target of the automatic temperature tuning.
    reward_scale_factor: multiplies rewards in the critic target.
    mixed_precision: compute the hidden layers of the actor and critics in bfloat16
      (weights, output layers and losses stay float32). Off by default: `make bench` on
      this project's CPU found it worth little at the CPU configs' batch
      (docs/BENCHMARK.md, "bfloat16").
    seed: seed of the actions sampled in the losses (their generator is checkpointed with
      the agent, so a resumed run draws what the uninterrupted run would have).
    train_step_counter: optional counter incremented by every train step.

  Returns:
    An initialised `SacAgent`.
  """
  time_step_spec = augmented_time_step_spec(observation_dim, context_dim)
  action_spec = tensor_spec.BoundedTensorSpec(
      [action_dim], tf.float32, minimum=action_low, maximum=action_high, name="action")
  if mixed_precision:
    hidden_dtype = tf.keras.mixed_precision.Policy(MIXED_PRECISION_POLICY)
    projection = Float32TanhNormalProjectionNetwork
  else:
    hidden_dtype = tf.float32
    projection = tanh_normal_projection_network.TanhNormalProjectionNetwork
  actor_net = actor_distribution_network.ActorDistributionNetwork(
      time_step_spec.observation, action_spec, fc_layer_params=tuple(actor_fc_layers),
      dtype=hidden_dtype, continuous_projection_net=projection)
  critic_class = MixedPrecisionCriticNetwork if mixed_precision else critic_network.CriticNetwork
  critic_net = critic_class(
      (time_step_spec.observation, action_spec),
      joint_fc_layer_params=tuple(critic_fc_layers),
      kernel_initializer="glorot_uniform",
      last_kernel_initializer="glorot_uniform")
  if train_step_counter is None:
    train_step_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="sac_step")
  agent = SeededSacAgent(
      time_step_spec, action_spec,
      actor_network=actor_net,
      critic_network=critic_net,
      actor_optimizer=tf.keras.optimizers.Adam(actor_learning_rate),
      critic_optimizer=tf.keras.optimizers.Adam(critic_learning_rate),
      alpha_optimizer=tf.keras.optimizers.Adam(alpha_learning_rate),
      target_update_tau=target_update_tau,
      target_update_period=1,
      td_errors_loss_fn=tf.math.squared_difference,
      gamma=gamma,
      reward_scale_factor=reward_scale_factor,
      initial_log_alpha=initial_log_alpha,
      target_entropy=target_entropy,
      train_step_counter=train_step_counter,
      sample_seed=seed)
  agent.initialize()
  return agent


def reset_critics(agent: sac_agent.SacAgent, seed: int) -> None:
  """Re-initialises both critics as `create_sac_agent` initialises them (Glorot-uniform
  kernels, zero biases), drawn statelessly from `seed`, and sets each target critic equal
  to its critic. The actor, the temperature and the optimizers' state are left as they are.
  """
  pairs = ((agent._critic_network_1, agent._target_critic_network_1),  # pylint: disable=protected-access
           (agent._critic_network_2, agent._target_critic_network_2))  # pylint: disable=protected-access
  for k, (critic, target) in enumerate(pairs):
    for i, variable in enumerate(critic.variables):
      if "kernel" in variable.name:
        fan_in, fan_out = variable.shape
        limit = (6.0 / (fan_in + fan_out)) ** 0.5
        value = tf.random.stateless_uniform(variable.shape, [seed, 1000 * k + i], -limit,
                                            limit, dtype=variable.dtype)
      elif "bias" in variable.name:
        value = tf.zeros_like(variable)
      else:
        raise ValueError(f"reset_critics: no initialiser known for {variable.name}")
      variable.assign(value)
    for variable, value in zip(target.variables, critic.variables):
      variable.assign(value)


def tag_with_context(observation: tf.Tensor, context: tf.Tensor) -> tf.Tensor:
  """concat(observation, context) for observations [tasks, n, d] and contexts [tasks, c].

  Returns a flat [tasks * n, d + c] tensor: each row carries its own task's context.
  """
  n = tf.shape(observation)[1]
  tiled = tf.tile(context[:, None, :], tf.stack([1, n, 1]))
  joined = tf.concat([observation, tf.cast(tiled, observation.dtype)], axis=-1)
  return tf.reshape(joined, [-1, joined.shape[-1]])


def make_transition(observation, action, reward, next_observation,
                    discount) -> trajectory.Transition:
  """A TF-Agents Transition from flat [B, ...] arrays (one environment step per row)."""
  batch = tf.shape(reward)[0]
  mid = tf.fill([batch], ts.StepType.MID)
  first = ts.TimeStep(mid, tf.zeros_like(reward), tf.ones_like(discount), observation)
  second = ts.TimeStep(mid, reward, discount, next_observation)
  return trajectory.Transition(first, policy_step.PolicyStep(action, (), ()), second)


class ContextSacLearner:
  """Compiled SAC updates on flat or per-task, context-tagged batches.

  Args:
    agent: a `SacAgent` made by `create_sac_agent`.
  """

  def __init__(self, agent: sac_agent.SacAgent):
    self.agent = agent

  @tf.function(autograph=False)
  def train(self, observation, action, reward, next_observation, discount) -> SacLosses:
    """One SAC step on flat arrays whose observations already carry their context."""
    info = self.agent.train(make_transition(
        observation, action, reward, next_observation, discount))
    losses = info.extra
    for name, value in (("critic", losses.critic_loss), ("actor", losses.actor_loss)):
      tf.debugging.check_numerics(value, f"SAC {name} loss is not finite")
    return SacLosses(losses.critic_loss, losses.actor_loss, losses.alpha_loss,
                     tf.exp(self.agent._log_alpha))  # pylint: disable=protected-access

  @tf.function(autograph=False)
  def train_tagged(self, batch, contexts) -> SacLosses:
    """One SAC step on per-task samples [tasks, n, ...] tagged with contexts [tasks, c].

    The contexts are the tasks' adapted contexts; no gradient flows into them (the policy
    is not meta-trained).
    """
    contexts = tf.stop_gradient(contexts)
    flat = lambda x: tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))
    return self.train(
        tag_with_context(batch["observation"], contexts),
        flat(batch["action"]),
        flat(batch["reward"]),
        tag_with_context(batch["next_observation"], contexts),
        flat(batch["discount"]))
