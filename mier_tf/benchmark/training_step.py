"""Stage "training step": the compiled training step at the paper's sizes, in GFLOP/s."""
import tempfile
from typing import List

import gin
import numpy as np
import tensorflow as tf
from tensorflow.python.profiler import model_analyzer
from tensorflow.python.profiler import option_builder

from mier_tf.benchmark.harness import Row, Sizes, at_most, make_row, quiet_stderr, stage, time_ms
from mier_tf.benchmark.training_run import run_with_real_tables


def _graph_gflop(concrete_fn) -> float:
  """Floating-point operations of a concrete function's graph, by TensorFlow's profiler."""
  options = option_builder.ProfileOptionBuilder.float_operation()
  options["output"] = "none"
  with quiet_stderr():
    return model_analyzer.profile(concrete_fn.graph, options=options).total_float_ops / 1e9


def _matmul_gflops(sizes: Sizes, dtype, m: int = 4000, k: int = 200, n: int = 200,
                   repeats: int = 50) -> float:
  """GFLOP/s of a [m, k] x [k, n] matmul, 20 per call: the CPU's practical limit at MIER's shapes."""
  a = tf.random.normal([m, k], dtype=tf.float32)
  b = tf.random.normal([k, n], dtype=tf.float32)
  a, b = tf.cast(a, dtype), tf.cast(b, dtype)

  @tf.function
  def twenty():
    out = a
    for _ in range(20):
      out = tf.matmul(out[:, :k], b)
    return out

  (ms,) = time_ms(sizes, lambda: twenty().numpy(), repeats=sizes.pick(repeats, 2))
  return 20 * 2 * m * k * n / (ms / 1e3) / 1e9


@stage("training step")
def bench_training_step(sizes: Sizes) -> List[Row]:
  """The compiled training step (model meta-step + its SAC updates) at the paper's sizes.

  `MetaTrainingRun._train_step_fn` as a run calls it, built under gin from
  cheetah_vel_hard.gin (the release's schedule: one SAC update on 10 x 200 rows, 300-300-300
  networks) and cheetah_vel_hard_cpu.gin (four updates on 10 x 32 rows, 256-256), tables
  filled with real transitions. Its FLOPs are counted by TensorFlow's profiler on the traced
  graph (the meta-step's; the SAC updates sit in TF-Agents' nested functions, which the
  profiler does not enter, so the rate is a lower bound) and set against a float32 matmul at
  MIER's shapes timed in the same run (the CPU's practical rate). Each config is timed again
  with the SAC networks in mixed bfloat16 (goal: at most half the float32 step). The
  projected paper-budget time of cheetah_vel_hard: 260 epochs of 1,000 steps (1.5M samples
  less 200k of initial exploration, 5,000 per epoch) at the faster measured step.
  """
  matmul32 = _matmul_gflops(sizes, tf.float32)
  matmul16 = _matmul_gflops(sizes, tf.bfloat16)
  rows = [make_row("matmul bfloat16 vs float32", matmul16, matmul32, detail=(
      "GFLOP/s of a [4000,200] x [200,200] matmul in bfloat16 / in float32 (the CPU's "
      "practical rate at MIER's shapes)"))]
  for config in ("cheetah_vel_hard", "cheetah_vel_hard_cpu"):
    step_ms = {}
    for mixed in (False, True):
      gin.clear_config()
      with tempfile.TemporaryDirectory() as root:
        bindings = ["make_task_tables.backend = 'in_process'",
                    f"create_sac_agent.mixed_precision = {mixed}"]
        if sizes.quick:
          bindings += ["MetaTrainingRun.meta_batch_size = 2",
                       "MetaTrainingRun.adapt_batch_size = 8",
                       "MetaTrainingRun.eval_batch_size = 8"]
        run, _ = run_with_real_tables(sizes, config, root, bindings)
        ids = np.arange(run.meta_batch_size)
        batches = run._sample_step_batches(ids)  # pylint: disable=protected-access
        step = lambda: run._train_step_fn(*batches, with_summaries=False)[1].critic_loss.numpy()  # pylint: disable=protected-access
        (step_ms[mixed],) = time_ms(sizes, step, repeats=sizes.pick(20, 2))
        if not mixed:
          gflop = _graph_gflop(run._train_step_fn.get_concrete_function(  # pylint: disable=protected-access
              *batches, with_summaries=False))
          rate = gflop / (step_ms[mixed] / 1e3)
          schedule = (f"{run.sac_updates_per_step} x {run.meta_batch_size} x "
                      f"{run.sac_rows_per_task or run.eval_batch_size} SAC rows")
          rows.append(make_row(f"training step {config}", rate, matmul32, detail=(
              f"GFLOP/s of the compiled training step, a lower bound: the profiler counts the "
              f"meta-step's {gflop:.2f} GFLOP, not the SAC updates inside TF-Agents' nested "
              f"functions ({step_ms[mixed]:.1f} ms; "
              f"meta-step on {run.meta_batch_size} x {run.adapt_batch_size} + {schedule}) / "
              "float32 matmul GFLOP/s"),
              step_ms=round(step_ms[mixed], 2), gflop=round(gflop, 3)))
        run.collector.close()
      gin.clear_config()
    rows.append(at_most(
        f"training step {config} bfloat16 SAC", step_ms[True], step_ms[False], 0.5, detail=(
            f"ms of the training step with the SAC networks' hidden layers in bfloat16 "
            f"(create_sac_agent.mixed_precision; the model stays float32: its second-order "
            f"meta-gradient runs slower in bfloat16) / in float32 ({step_ms[False]:.1f} ms)"),
        step_ms=round(step_ms[True], 2)))
    if config == "cheetah_vel_hard":
      steps = 260 * 1000
      best = min(step_ms.values())
      hours = steps * best / 1e3 / 3600
      rows.append(make_row("projected paper budget cheetah_vel_hard", hours, 3.0,
                           "hours <= 3", hours <= 3.0, detail=(
                               f"hours of {steps:,} training steps at {best:.1f} ms, the "
                               "faster of the two precisions (collection and evaluation add "
                               "about 5%) / the 3-hour goal")))
  return rows
