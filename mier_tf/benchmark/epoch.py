"""Stage "epoch": one meta-training epoch vs the sum of its compute parts timed alone."""
import statistics
import tempfile
import time
from typing import List

import gin
import numpy as np

from mier_tf.benchmark.fixtures import CTX, step_envs_randomly, tensors
from mier_tf.benchmark.harness import Row, Sizes, at_most, stage
from mier_tf.benchmark.training_run import run_with_real_tables


@stage("epoch")
def bench_epoch(sizes: Sizes) -> List[Row]:
  """One meta-training epoch vs the sum of its compute parts timed alone.

  MetaTrainingRun built under gin from each family's config (base.gin sizes, in-process
  replay): collect_epoch (5 tasks x (400 + 600) steps) + refresh_normalizer + train_epoch.
  The paper's epoch has 1,000 train steps (~0.1 s each here): too long for the benchmark's
  budget, so the epoch runs fewer and both sides are also extrapolated linearly to 1,000
  (`full_epoch_s`, `full_parts_s`). The parts: the same envs stepped with random actions
  (5 x 1,000 steps), 1,000 batched policy calls at batch 5, one adaptation, the normaliser
  update, and the train steps (meta-step + SAC step) on a batch already in memory.
  """
  train_steps = sizes.pick(40, 2)
  rows = []
  for name in ("cheetah_vel_hard", "ant_negjoints"):
    gin.clear_config()
    with tempfile.TemporaryDirectory() as root:
      bindings = [f"MetaTrainingRun.train_steps_per_epoch = {train_steps}",
                  "make_task_tables.backend = 'in_process'"]
      if sizes.quick:
        bindings += ["MetaTrainingRun.prior_steps = 4", "MetaTrainingRun.posterior_steps = 6"]
      run, seed_data = run_with_real_tables(sizes, name, root, bindings)
      k = run.tasks_per_epoch
      collect_steps = run.prior_steps + run.posterior_steps
      ids = np.arange(run.meta_batch_size)
      fixed = (tensors(run.tables.sample(ids, "adapt", run.adapt_batch_size)),
               tensors(run.tables.sample(ids, "full", run.eval_batch_size)))
      rows_of = np.arange(run.prior_steps) % seed_data[0]["reward"].shape[0]
      prior = {key: np.stack([d[key][rows_of] for d in seed_data[:k]]) for key in seed_data[0]}
      raw_envs = [run.family.make_env(task) for task in run.family.train_tasks[:k]]
      rng = np.random.default_rng(0)
      policy_inputs = rng.normal(size=(k, run.family.observation_dim + CTX)).astype(np.float32)

      def train_parts():
        for _ in range(train_steps):
          info = run.model_trainer.step(*fixed)
          run.learner.train_tagged(fixed[1], info.contexts).critic_loss.numpy()

      def epoch():
        times = {}
        start = time.perf_counter()
        run.collect_epoch()
        times["collect"] = time.perf_counter() - start
        run.refresh_normalizer()
        times["refresh"] = time.perf_counter() - start - times["collect"]
        run.train_epoch()
        times["train"] = time.perf_counter() - start - times["collect"] - times["refresh"]
        return times

      def parts():
        times = {}
        for part, fn in (
            ("env", lambda: step_envs_randomly(raw_envs, collect_steps, rng)),
            ("policy", lambda: [run.explore_actor(policy_inputs) for _ in range(collect_steps)]),
            ("adapt", lambda: run.adapt_contexts(prior)),
            ("normalizer", lambda: run.model.update_normalizer(fixed[1])),
            ("train", train_parts)):
          start = time.perf_counter()
          fn()
          times[part] = time.perf_counter() - start
        return times

      # Warm-up: traces every compiled function at the shapes of the epoch.
      run.explore_actor(policy_inputs)
      run.adapt_contexts(prior)
      run.train_steps_per_epoch, saved = 1, run.train_steps_per_epoch
      run.train_epoch()
      run.train_steps_per_epoch = saved
      epochs, part_times = [], []
      for _ in range(sizes.pick(2, 1)):  # Interleaved; the median of 2 is their mean.
        epochs.append(epoch())
        part_times.append(parts())
      median = lambda runs, key: statistics.median(r[key] for r in runs)
      epoch_t = {key: median(epochs, key) for key in epochs[0]}
      parts_t = {key: median(part_times, key) for key in part_times[0]}
      epoch_s, parts_s = sum(epoch_t.values()), sum(parts_t.values())
      scale = 1000 / train_steps
      full_epoch_s = epoch_s + (scale - 1) * epoch_t["train"]
      full_parts_s = parts_s + (scale - 1) * parts_t["train"]
      rows.append(at_most(
          f"epoch {name}", epoch_s, parts_s, 1.3, (
              f"s per epoch with {train_steps} train steps (not 1,000: see the stage doc) / "
              f"sum of its parts alone; extrapolated to 1,000 steps: {full_epoch_s:.1f} s vs "
              f"{full_parts_s:.1f} s = {full_epoch_s / full_parts_s:.3f}. Epoch: " +
              ", ".join(f"{k_} {v:.2f}" for k_, v in epoch_t.items()) + " s; parts: " +
              ", ".join(f"{k_} {v:.2f}" for k_, v in parts_t.items()) + " s"),
          train_steps=train_steps, full_epoch_s=round(full_epoch_s, 2),
          full_parts_s=round(full_parts_s, 2),
          full_ratio=round(full_epoch_s / full_parts_s, 3),
          epoch_parts_s={k_: round(v, 3) for k_, v in epoch_t.items()},
          compute_parts_s={k_: round(v, 3) for k_, v in parts_t.items()}))
      for env in raw_envs:
        env.close()
      run.collector.close()
    gin.clear_config()
  return rows
