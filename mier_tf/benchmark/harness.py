"""The speed benchmark's harness: the stage registry, timing, rows, the table and bench.json.

Each stage is a function registered with `@stage(name)`; it takes the run's `Sizes` (full,
or --quick's tiny ones) and returns rows {stage, measured, reference, ratio, goal, met,
detail} (some rows add keys of their own): `measured` and `reference` in the units the
detail names, `ratio` = measured / reference, `goal` a short statement of what the ratio
should satisfy ("report" when it is only reported; `met` is then None). Both sides of a ratio
are measured in the same run, interleaved, so that load from other processes on a shared
machine falls on both alike; medians are reported.
"""
import contextlib
import dataclasses
import json
import logging
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import tensorflow as tf

Row = Dict[str, object]


@dataclasses.dataclass(frozen=True)
class Sizes:
  """The sizes a run measures at: full, or tiny with few repeats (`quick`, for tests).

  Under `quick` a stage runs in seconds and its numbers are meaningless; only the shape of
  its output is.
  """
  quick: bool = False

  def pick(self, full, quick):
    """`full` normally, `quick` under --quick."""
    return quick if self.quick else full


Stage = Callable[[Sizes], List[Row]]
STAGES: Dict[str, Stage] = {}


def stage(name: str):
  """Registers a benchmark stage under `name` (stages run in registration order)."""
  def register(fn: Stage) -> Stage:
    STAGES[name] = fn
    return fn
  return register


def time_ms(sizes: Sizes, *fns: Callable[[], object], warmup: int = 3,
            repeats: int = 30) -> List[float]:
  """Median wall time in milliseconds of each fn(), after `warmup` untimed calls of each.

  The functions are timed in turn within each repeat, so that load from other processes on a
  shared machine falls on all of them alike and their ratio stays meaningful. Under quick
  sizes at most 1 warm-up call and 2 repeats.
  """
  if sizes.quick:
    warmup, repeats = min(warmup, 1), min(repeats, 2)
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
             met=None, detail: str = "", **extra) -> Row:
  return dict(stage=name, measured=round(float(measured), 3),
              reference=round(float(reference), 3),
              ratio=round(float(measured) / float(reference), 3), goal=goal,
              met=None if met is None else bool(met), detail=detail, **extra)


def at_most(name: str, measured: float, reference: float, limit: float, detail: str = "",
            **extra) -> Row:
  """A row whose goal is ratio <= limit."""
  return make_row(name, measured, reference, f"ratio <= {limit:g}",
                  measured / reference <= limit, detail, **extra)


def at_least(name: str, measured: float, reference: float, limit: float, detail: str = "",
             **extra) -> Row:
  """A row whose goal is ratio >= limit."""
  return make_row(name, measured, reference, f"ratio >= {limit:g}",
                  measured / reference >= limit, detail, **extra)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
  """Sends file descriptor 2 to /dev/null (Reverb's C++ writer logs a line per flush)."""
  sys.stderr.flush()
  saved = os.dup(2)
  with open(os.devnull, "w") as devnull:
    os.dup2(devnull.fileno(), 2)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


def format_table(rows: List[Row]) -> str:
  """The rows as a text table (one line per row under a header), then each row's detail."""
  header = ("stage", "measured", "reference", "ratio", "goal", "met")
  lines = [header] + [tuple(str("-" if row[k] is None else row[k]) for k in header)
                      for row in rows]
  widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
  out = []
  for i, line in enumerate(lines):
    out.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths)))
    if i == 0:
      out.append("  ".join("-" * width for width in widths))
  out += [f"* {row['stage']}: {row['detail']}" for row in rows if row.get("detail")]
  return "\n".join(out)


def machine() -> Dict[str, object]:
  """What the numbers were measured on (bench.json's `machine`)."""
  return dict(platform=platform.platform(), processor=platform.processor(),
              cpus=os.cpu_count(), tensorflow=tf.__version__,
              gpus=[d.name for d in tf.config.list_physical_devices("GPU")])


def run(stages: Optional[Sequence[str]], quick: bool, out: str) -> List[Row]:
  """Runs `stages` (None: all, in registration order), writes `out`, returns the rows.

  `out` gets {machine, quick, seconds, rows}; each stage's wall time is logged.
  """
  sizes = Sizes(quick=quick)
  rows: List[Row] = []
  start = time.perf_counter()
  for name in stages or list(STAGES):
    stage_start = time.perf_counter()
    rows.extend(STAGES[name](sizes))
    logging.info("[%s: %.0f s]", name, time.perf_counter() - stage_start)
  with open(out, "w") as f:
    json.dump(dict(machine=machine(), quick=quick,
                   seconds=round(time.perf_counter() - start, 1), rows=rows), f, indent=2)
  return rows
