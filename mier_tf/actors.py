"""Actors: what steps an environment. One interface, one home.

An `Actor` maps a batch of context-augmented observations [B, d + c] (numpy) to actions
[B, a] (numpy), and has an explicit `refresh()` that the collector calls before every
collection: an actor holding a copy of the weights reads them again there; the others have
nothing to read. Every environment loop in mier_tf (`MultiTaskCollector.collect`, rendering,
evaluation of SavedModels) takes an `Actor`.

* `NumpyActor`: the live SAC actor network, evaluated in numpy from weights read at each
  `refresh()` (collection during training: one call per environment step, where a TF call
  costs more than the network).
* `CompiledActor`: the same network as one compiled TF call per batch, always current.
* `SavedPolicyActor`: a policy loaded from a SavedModel (`export/policy`), needing no
  mier_tf model or agent code.
* `RandomActor`: uniform random actions (data for scoring identification).
* `ZeroActor`: zero actions (standing still, the floor every return is read against).
* `FunctionActor`: any numpy function (random actions, tests).

(Relabeling samples actions for 100k stored states inside one `tf.function`; that is a
tensor computation on the actor network, not a step of an environment, and stays in
`mier_tf/relabel.py`.)
"""
from typing import Callable

import numpy as np
import tensorflow as tf
from tf_agents.trajectories import time_step as ts


class Actor:
  """Base class: `actor(observation) -> actions`, and `refresh()` before each collection."""

  def __call__(self, observation: np.ndarray) -> np.ndarray:
    raise NotImplementedError

  def refresh(self) -> None:
    """Reads the current weights; actors without a copy of them have nothing to do."""


class FunctionActor(Actor):
  """Wraps a numpy function [B, d + c] -> [B, a] (random actions, scripted policies)."""

  def __init__(self, fn: Callable[[np.ndarray], np.ndarray]):
    self._fn = fn

  def __call__(self, observation: np.ndarray) -> np.ndarray:
    return np.asarray(self._fn(observation), np.float32)


class RandomActor(Actor):
  """Actions uniform in [low, high] from a seeded generator (identification data)."""

  def __init__(self, low, high, seed: int = 0):
    self.low = np.asarray(low, np.float32)
    self.high = np.asarray(high, np.float32)
    self.rng = np.random.default_rng(seed)

  def __call__(self, observation: np.ndarray) -> np.ndarray:
    size = (np.shape(observation)[0], self.low.shape[0])
    return self.rng.uniform(self.low, self.high, size=size).astype(np.float32)


class ZeroActor(Actor):
  """Zero actions: standing still."""

  def __init__(self, action_dim: int):
    self.action_dim = action_dim

  def __call__(self, observation: np.ndarray) -> np.ndarray:
    return np.zeros((np.shape(observation)[0], self.action_dim), np.float32)


class CompiledActor(Actor):
  """A TF-Agents SAC policy's actor network as one compiled call per batch.

  Args:
    policy: the agent's policy or collect policy (its actor network is called directly).
    deterministic: return the mode (tanh of the mean) instead of a sample.
    seed: seed of the sampling generator (`self.generator`).
  """

  def __init__(self, policy, deterministic: bool = False, seed: int = 0):
    actor_net = policy._actor_network  # pylint: disable=protected-access
    self.generator = tf.random.Generator.from_seed(seed)
    generator = self.generator

    @tf.function
    def action(observation):
      distribution, _ = actor_net(observation, step_type=(), network_state=(), training=False)
      if deterministic:
        return distribution.mode()
      return distribution.sample(seed=tf.cast(generator.make_seeds(1)[:, 0], tf.int32))

    self.compiled = action  # the tf.function itself, for benchmarks and profiles

  def __call__(self, observation: np.ndarray) -> np.ndarray:
    return self.compiled(tf.convert_to_tensor(observation, tf.float32)).numpy()


class NumpyActor(Actor):
  """The SAC actor evaluated in numpy, for stepping environments.

  Collection calls the policy once per environment step on a batch of a few rows; there a
  TensorFlow call costs more than the network itself (about 1.5 ms against 0.1 ms here), and
  it halves the collection rate of HalfCheetah. This evaluates the same network (ReLU hidden
  layers, then TF-Agents' TanhNormalProjectionNetwork: mean and log-std, action =
  a * tanh(x) + b for the action spec's bounds) from weights read at each `refresh()`;
  `MultiTaskCollector` refreshes it at the start of every collection. Training stays in TF.

  Args:
    actor_network: the agent's `ActorDistributionNetwork` (flat observation, ReLU layers,
      `TanhNormalProjectionNetwork`), as built by `create_sac_agent`.
    action_spec: the agent's bounded action spec.
    deterministic: return a * tanh(mean) + b (the policy's mode) instead of a sample.
    seed: seed of the exploration noise.
  """

  def __init__(self, actor_network, action_spec, deterministic: bool = False, seed: int = 0):
    self._network = actor_network
    low = np.asarray(action_spec.minimum, np.float32)
    high = np.asarray(action_spec.maximum, np.float32)
    self._scale, self._shift = (high - low) / 2.0, (high + low) / 2.0
    self.deterministic = deterministic
    self.rng = np.random.default_rng(seed)
    self._layers = []
    self.refresh()

  @classmethod
  def of_agent(cls, agent, deterministic: bool = False, seed: int = 0) -> "NumpyActor":
    """The actor of a `create_sac_agent` agent."""
    return cls(agent.policy._actor_network, agent.action_spec,  # pylint: disable=protected-access
               deterministic=deterministic, seed=seed)

  def refresh(self) -> None:
    """Reads the network's current weights."""
    weights = [v.numpy() for v in self._network.trainable_variables]
    if len(weights) % 2:
      raise ValueError("NumpyActor expects Dense layers (kernel, bias) only")
    self._layers = list(zip(weights[0::2], weights[1::2]))

  def __call__(self, observation: np.ndarray) -> np.ndarray:
    h = np.asarray(observation, np.float32)
    for kernel, bias in self._layers[:-1]:
      h = np.maximum(h @ kernel + bias, 0.0)
    kernel, bias = self._layers[-1]
    mean, log_std = np.split(h @ kernel + bias, 2, axis=-1)
    if self.deterministic:
      x = mean
    else:
      x = mean + np.exp(log_std) * self.rng.standard_normal(mean.shape, np.float32)
    return (self._scale * np.tanh(x) + self._shift).astype(np.float32)

  def get_state(self) -> dict:
    return self.rng.bit_generator.state

  def set_state(self, state: dict) -> None:
    self.rng.bit_generator.state = state


class SavedPolicyActor(Actor):
  """A policy loaded with `tf.saved_model.load` from a PolicySaver export."""

  def __init__(self, policy):
    self._policy = policy

  def __call__(self, observation: np.ndarray) -> np.ndarray:
    b = observation.shape[0]
    step = ts.TimeStep(step_type=tf.fill([b], tf.constant(ts.StepType.MID, tf.int32)),
                       reward=tf.zeros([b]), discount=tf.ones([b]),
                       observation=tf.constant(observation, tf.float32))
    return self._policy.action(step, ()).action.numpy()
