"""Stage "model meta-step": one MIER model meta-step vs one supervised NLL step."""
from typing import List

import numpy as np
import tensorflow as tf
from tensorflow.python.profiler import model_analyzer
from tensorflow.python.profiler import option_builder

from mier_tf import model as model_lib
from mier_tf.benchmark.fixtures import ACT, CTX, OBS
from mier_tf.benchmark.harness import Row, Sizes, make_row, stage, time_ms


def _operation_ratio(trainer, supervised_step, adapt_batch, eval_batch, both) -> float:
  """Floating-point operations of one meta-step / one supervised step, from the graphs."""
  tf.get_logger().setLevel("ERROR")  # The v1 profiler warns about its own deprecated calls.
  options = option_builder.ProfileOptionBuilder(
      option_builder.ProfileOptionBuilder.float_operation()).with_empty_output().build()

  def flops(concrete):
    return model_analyzer.profile(concrete.graph, options=options).total_float_ops

  return (flops(trainer._step.get_concrete_function(adapt_batch, eval_batch)) /  # pylint: disable=protected-access
          flops(supervised_step.get_concrete_function(both)))


@stage("model meta-step")
def bench_model_meta_step(sizes: Sizes) -> List[Row]:
  """One MIER model meta-step vs one supervised NLL step, at the paper's sizes.

  10 tasks x (200 adapt + 200 eval) transitions, 2 inner steps, HalfCheetah sizes
  (obs 17, act 6, context 5), 4 x 200 network. The supervised step is one Adam step on the
  plain NLL of the same model on the same 4,000 transitions (prior context, no adaptation).
  A copy of the meta-step compiled with XLA (jit_compile=True) is timed beside them.
  """
  tasks, samples, obs_dim, act_dim = sizes.pick(10, 2), sizes.pick(200, 8), OBS, ACT
  rng = np.random.default_rng(0)

  def batch():
    obs = rng.normal(size=(tasks, samples, obs_dim)).astype(np.float32)
    return dict(observation=tf.constant(obs),
                action=tf.constant(rng.uniform(-1, 1, (tasks, samples, act_dim)),
                                   tf.float32),
                next_observation=tf.constant(obs + 0.1 * rng.normal(size=obs.shape),
                                             tf.float32),
                reward=tf.constant(rng.normal(size=(tasks, samples)), tf.float32))

  adapt_batch, eval_batch = batch(), batch()
  model = model_lib.ContextualDynamicsModel(obs_dim, act_dim, context_dim=CTX)
  model.update_normalizer(adapt_batch)
  trainer = model_lib.MetaTrainer(model, model_lib.InnerLoop(steps=2, lr=0.01))
  xla_step = tf.function(trainer._train_step, jit_compile=True)  # pylint: disable=protected-access

  both = {key: tf.concat([adapt_batch[key], eval_batch[key]], axis=1) for key in adapt_batch}
  optimizer = tf.keras.optimizers.Adam(1e-3)
  variables = model.trainable_variables
  optimizer.build(variables)

  @tf.function
  def supervised_step(data):
    with tf.GradientTape() as tape:
      loss = model.nll(data) + 0.01 * model.logvar_bound_penalty()
    grads = tape.gradient(loss, variables)
    grads, _ = tf.clip_by_global_norm(grads, 10.)
    optimizer.apply_gradients(zip(grads, variables))
    return loss

  # .numpy() waits for the result (on a GPU the calls would otherwise return early).
  meta_ms, supervised_ms, xla_ms = time_ms(
      sizes,
      lambda: trainer.step(adapt_batch, eval_batch).meta_loss.numpy(),
      lambda: supervised_step(both).numpy(),
      lambda: xla_step(adapt_batch, eval_batch).meta_loss.numpy())
  flop_ratio = _operation_ratio(trainer, supervised_step, adapt_batch, eval_batch, both)
  return [
      make_row("model meta-step", meta_ms, supervised_ms, flop_ratio=round(flop_ratio, 3),
               detail=(
                   f"ms per meta-step ({tasks} tasks x {samples}+{samples}, 2 inner steps, "
                   f"4x200) / ms per supervised NLL step on the same {2 * tasks * samples} "
                   f"transitions. Operation count (TF profiler, float ops of the two graphs): "
                   f"{flop_ratio:.2f}x; the meta-step runs a forward pass for the NLL before "
                   "adaptation, two inner forward+backward passes, the outer forward, and a "
                   "second-order backward through both inner steps, all on half the rows")),
      make_row("model meta-step XLA", xla_ms, meta_ms, detail=(
          "ms per meta-step: compiled with jit_compile=True / as shipped (plain "
          "tf.function); below 1 means XLA is faster here")),
  ]
