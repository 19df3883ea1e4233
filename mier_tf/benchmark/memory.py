"""Stage "memory": peak RSS of an in-process replay filled like a full meta-training."""
import json
import os
import subprocess
import sys
from typing import List

import mier_tf
from mier_tf.benchmark import memory_probe
from mier_tf.benchmark.harness import Row, Sizes, make_row, stage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(mier_tf.__file__)))


@stage("memory")
def bench_memory(sizes: Sizes) -> List[Row]:
  """Peak RSS of an in-process replay filled like a full cheetah_vel_hard meta-training.

  100 tasks x 20 rounds x (400 prior rows into adapt+full, 600 into full): 2,000,000
  transitions in the full tables and 800,000 in the adapt tables, HalfCheetah sizes, in a
  fresh subprocess (`memory_probe`, so nothing else of the benchmark counts). Peak = VmHWM.
  """
  tasks, rounds = sizes.pick(100, 2), sizes.pick(20, 2)
  proc = subprocess.run(
      [sys.executable, "-m", memory_probe.__name__, str(tasks), str(rounds),
       str(sizes.pick(400, 40)), str(sizes.pick(600, 60))],
      cwd=REPO, capture_output=True, text=True, check=True,
      env=dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", "")))
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  gib = 2.0 ** 30
  peak = result["peak"] / gib
  return [make_row(
      "memory replay peak RSS", peak, 4.0, "under 4 GiB", peak < 4.0, (
          f"GiB: peak RSS of a process holding {result['rows']:,} transitions in "
          f"{tasks} tasks' in-process tables / the 4 GiB goal; packed data "
          f"{result['data_bytes'] / gib:.2f} GiB, arrays allocated "
          f"{result['table_bytes'] / gib:.2f} GiB, process before filling "
          f"{result['before'] / gib:.2f} GiB"),
      peak_bytes=result["peak"], data_bytes=result["data_bytes"],
      allocated_bytes=result["table_bytes"], baseline_bytes=result["before"])]
