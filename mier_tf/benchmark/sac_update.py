"""Stage "SAC update": ContextSacLearner.train_tagged vs a stock TF-Agents SacAgent."""
from typing import List

import numpy as np
import tensorflow as tf
from tf_agents.agents.ddpg import critic_network
from tf_agents.agents.sac import sac_agent
from tf_agents.agents.sac import tanh_normal_projection_network as tanh_net
from tf_agents.networks import actor_distribution_network
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory
from tf_agents.utils import common

from mier_tf.agents import sac
from mier_tf.benchmark.fixtures import ACT, CTX, OBS, random_transitions, tensors
from mier_tf.benchmark.harness import Row, Sizes, at_most, make_row, stage, time_ms


@stage("SAC update")
def bench_sac_update(sizes: Sizes) -> List[Row]:
  """ContextSacLearner.train_tagged vs a stock TF-Agents SacAgent, and an XLA copy of ours.

  The stock agent has the same networks and optimisers on a plain observation of size
  obs + context; its `train` is wrapped in `tf_agents.utils.common.function` and fed a
  `Transition` of flat tensors. HalfCheetah sizes, 256-256 networks (base.gin).
  """
  learner = sac.ContextSacLearner(sac.create_sac_agent(OBS, ACT, CTX))
  xla_step = tf.function(lambda batch, contexts: learner.train_tagged(batch, contexts),
                         jit_compile=True)

  time_step_spec = ts.time_step_spec(tf.TensorSpec([OBS + CTX], tf.float32))
  action_spec = tensor_spec.BoundedTensorSpec([ACT], tf.float32, -1., 1.)
  stock = sac_agent.SacAgent(
      time_step_spec, action_spec,
      actor_network=actor_distribution_network.ActorDistributionNetwork(
          time_step_spec.observation, action_spec, fc_layer_params=(256, 256),
          continuous_projection_net=tanh_net.TanhNormalProjectionNetwork),
      critic_network=critic_network.CriticNetwork(
          (time_step_spec.observation, action_spec), joint_fc_layer_params=(256, 256),
          kernel_initializer="glorot_uniform", last_kernel_initializer="glorot_uniform"),
      actor_optimizer=tf.keras.optimizers.Adam(3e-4),
      critic_optimizer=tf.keras.optimizers.Adam(3e-4),
      alpha_optimizer=tf.keras.optimizers.Adam(3e-4),
      target_update_tau=0.005, target_update_period=1,
      td_errors_loss_fn=tf.math.squared_difference, gamma=0.99, initial_log_alpha=-1.0,
      target_entropy=-1.0)
  stock.initialize()
  stock_train = common.function(stock.train)

  rng = np.random.default_rng(0)
  rows = []
  for tasks, per_task in sizes.pick(((1, 256), (10, 200)), ((2, 8),)):
    batch = tensors(random_transitions(rng, per_task, leading=(tasks,)))
    contexts = tf.constant(rng.normal(size=(tasks, CTX)), tf.float32)
    # The stock agent's input: the same rows, context already appended.
    flat = {key: tf.reshape(value, [tasks * per_task, -1]) for key, value in batch.items()}
    tiled = tf.repeat(contexts, per_task, axis=0)
    reward, discount = tf.reshape(flat["reward"], [-1]), tf.reshape(flat["discount"], [-1])
    mid = tf.fill([tasks * per_task], ts.StepType.MID)
    transition = trajectory.Transition(
        ts.TimeStep(mid, tf.zeros_like(reward), tf.ones_like(discount),
                    tf.concat([flat["observation"], tiled], -1)),
        policy_step.PolicyStep(flat["action"], (), ()),
        ts.TimeStep(mid, reward, discount, tf.concat([flat["next_observation"], tiled], -1)))
    ours_ms, stock_ms, xla_ms = time_ms(
        sizes,
        lambda: learner.train_tagged(batch, contexts).critic_loss.numpy(),
        lambda: stock_train(transition).loss.numpy(),
        lambda: xla_step(batch, contexts).critic_loss.numpy(),
        warmup=3, repeats=sizes.pick(20, 2))
    size = f"{tasks}x{per_task}"
    rows.append(at_most(f"SAC update {size}", ours_ms, stock_ms, 1.05, (
        f"ms per step: ContextSacLearner.train_tagged on {tasks} task(s) x {per_task} rows / "
        f"stock SacAgent.train (common.function) on the same {tasks * per_task} rows")))
    rows.append(make_row(f"SAC update {size} XLA", xla_ms, ours_ms, detail=(
        "ms per step: train_tagged compiled with jit_compile=True / as shipped (plain "
        "tf.function); below 1 means XLA is faster here")))
  return rows
