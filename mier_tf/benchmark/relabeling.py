"""Stage "relabeling": relabel_transitions vs one forward pass of the actor and the model."""
from typing import List

import numpy as np
import tensorflow as tf

from mier_tf import model as model_lib
from mier_tf.agents import sac
from mier_tf.benchmark.fixtures import ACT, CTX, OBS, random_transitions
from mier_tf.benchmark.harness import Row, Sizes, at_most, stage, time_ms
from mier_tf.relabel import relabel_transitions


@stage("relabeling")
def bench_relabeling(sizes: Sizes) -> List[Row]:
  """relabel_transitions (policy sample + model sample) vs one forward pass of both nets.

  100,000 rows, mode policy_actions, HalfCheetah sizes. The reference is one compiled call of
  the actor network (its distribution's mode) followed by `model.predict` on the same rows,
  with the outputs brought back to numpy as relabel_transitions does.
  """
  rows = sizes.pick(100_000, 500)
  rng = np.random.default_rng(0)
  data = random_transitions(rng, rows)
  model = model_lib.ContextualDynamicsModel(OBS, ACT, context_dim=CTX)
  model.update_normalizer(data)
  actor = sac.create_sac_agent(OBS, ACT, CTX).policy._actor_network  # pylint: disable=protected-access
  context = tf.constant(rng.normal(size=CTX), tf.float32)

  @tf.function
  def actor_mode(observation):
    x = tf.concat([observation, tf.tile(context[None], [tf.shape(observation)[0], 1])], -1)
    distribution, _ = actor(x, step_type=(), network_state=(), training=False)
    return distribution.mode()

  def forward():
    observation = tf.convert_to_tensor(data["observation"])
    action = actor_mode(observation)
    next_obs, reward = model.predict(observation, action, context)
    return action.numpy(), next_obs.numpy(), reward.numpy()

  relabel_ms, forward_ms = time_ms(
      sizes,
      lambda: relabel_transitions(model, actor, context, data, "policy_actions", seed=0),
      forward, warmup=1, repeats=sizes.pick(7, 1))
  return [at_most("relabeling", relabel_ms, forward_ms, 1.5, (
      f"ms: relabel_transitions(policy_actions) on {rows:,} rows / actor forward + "
      "model.predict on the same rows"))]
