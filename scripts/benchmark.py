"""Benchmarks of mier_tf's stages: prints a table and writes bench.json.

  python scripts/benchmark.py                       # every stage
  python scripts/benchmark.py --only "model meta-step" --out bench.json

Each stage is a function registered with `@stage(name)` that returns rows
{stage, measured, reference, ratio, goal, met, detail}: `measured` and `reference` in the
units the detail names, `ratio` = measured / reference, `goal` a short statement of what the
ratio should satisfy ("report" when it is only reported; `met` is then None).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

Row = Dict[str, object]
STAGES: Dict[str, Callable[[], List[Row]]] = {}


def stage(name: str):
  """Registers a benchmark stage under `name` (stages run in registration order)."""
  def register(fn):
    STAGES[name] = fn
    return fn
  return register


def time_ms(*fns: Callable[[], object], warmup: int = 3, repeats: int = 30) -> List[float]:
  """Median wall time in milliseconds of each fn(), after `warmup` untimed calls of each.

  The functions are timed in turn within each repeat, so that load from other processes on a
  shared machine falls on all of them alike and their ratio stays meaningful.
  """
  for fn in fns:
    for _ in range(warmup):
      fn()
  times = [[] for _ in fns]
  for _ in range(repeats):
    for fn, fn_times in zip(fns, times):
      start = time.perf_counter()
      fn()
      fn_times.append((time.perf_counter() - start) * 1e3)
  return [statistics.median(fn_times) for fn_times in times]


def make_row(name: str, measured: float, reference: float, goal: str = "report",
             met=None, detail: str = "") -> Row:
  return dict(stage=name, measured=round(measured, 3), reference=round(reference, 3),
              ratio=round(measured / reference, 3), goal=goal, met=met, detail=detail)


# ------------------------------------------------------------------------------------------
# Stages.

@stage("model meta-step")
def bench_model_meta_step() -> List[Row]:
  """One MIER model meta-step vs one supervised NLL step, at the paper's sizes.

  10 tasks x (200 adapt + 200 eval) transitions, 2 inner steps, HalfCheetah sizes
  (obs 17, act 6, context 5), 4 x 200 network. The supervised step is one Adam step on the
  plain NLL of the same model on the same 4,000 transitions (prior context, no adaptation).
  """
  from mier_tf import model as model_lib  # pylint: disable=g-import-not-at-top
  tasks, samples, obs_dim, act_dim = 10, 200, 17, 6
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
  model = model_lib.ContextualDynamicsModel(obs_dim, act_dim, context_dim=5)
  model.update_normalizer(adapt_batch)
  trainer = model_lib.MetaTrainer(model, inner_steps=2, inner_lr=0.01)

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
  meta_ms, supervised_ms = time_ms(
      lambda: trainer.step(adapt_batch, eval_batch).meta_loss.numpy(),
      lambda: supervised_step(both).numpy())
  return [make_row("model meta-step", meta_ms, supervised_ms, detail=(
      "ms per meta-step (10 tasks x 200+200, 2 inner steps, 4x200) / ms per supervised "
      "NLL step on the same 4,000 transitions"))]


# ------------------------------------------------------------------------------------------

def print_table(rows: List[Row]) -> None:
  header = ("stage", "measured", "reference", "ratio", "goal", "met")
  lines = [header] + [tuple(str("-" if row[k] is None else row[k]) for k in header)
                      for row in rows]
  widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
  for i, line in enumerate(lines):
    print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)))
    if i == 0:
      print("  ".join("-" * width for width in widths))
  for row in rows:
    if row.get("detail"):
      print(f"* {row['stage']}: {row['detail']}")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--only", action="append", choices=list(STAGES), metavar="STAGE",
                      help=f"run only this stage (repeatable); stages: {list(STAGES)}")
  parser.add_argument("--out", default="bench.json", help="JSON file for the rows")
  args = parser.parse_args(argv)
  rows: List[Row] = []
  for name in args.only or list(STAGES):
    rows.extend(STAGES[name]())
  print_table(rows)
  machine = dict(platform=platform.platform(), processor=platform.processor(),
                 cpus=os.cpu_count(), tensorflow=tf.__version__,
                 gpus=[d.name for d in tf.config.list_physical_devices("GPU")])
  with open(args.out, "w") as f:
    json.dump(dict(machine=machine, rows=rows), f, indent=2)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
