"""Benchmarks of mier_tf: the speed benchmark's stages and the learning benchmark.

  harness.py         the stage registry (`stage`, `STAGES`), `Sizes` (full or --quick),
                     `time_ms`, the row builders, the table and bench.json (`run`)
  fixtures.py        HalfCheetah sizes, random transitions, random env steps
  training_run.py    a MetaTrainingRun with real transitions in its tables
  collection.py ... distributed.py, exports.py
                     one module per stage (`STAGE_MODULES`, in the order they run)
  memory_probe.py    the memory stage's measurement, run as its own process
  learning.py        the learning benchmark (`scripts/benchmark_learning.py`)

`scripts/benchmark.py` (`make bench`) parses the flags and calls `run(stages, quick, out)`.

Importing this package loads nothing: `STAGES` and `run` import the harness and the stage
modules (in `STAGE_MODULES` order, which is the order they register and run in) when first
asked for. That keeps `python -m mier_tf.benchmark.memory_probe` (which imports this package
first) free of TensorFlow, so the probe's baseline RSS is numpy and the tables alone.
"""
import importlib

STAGE_MODULES = ("collection", "sac_update", "model_step", "relabeling", "replay",
                 "compiled_steps", "epoch", "training_step", "memory", "distributed",
                 "exports")


def __getattr__(name: str):
  if name in ("STAGES", "run"):
    for module in STAGE_MODULES:
      importlib.import_module(f"{__name__}.{module}")
    return getattr(importlib.import_module(f"{__name__}.harness"), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
