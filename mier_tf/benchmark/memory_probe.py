"""The memory stage's measurement, run alone in a fresh process (`memory.py` starts it):

  python -m mier_tf.benchmark.memory_probe TASKS ROUNDS PRIOR POSTERIOR

Fills TASKS tasks' in-process tables with ROUNDS rounds of PRIOR rows into both tables and
POSTERIOR rows into the full table, and prints one JSON line: the RSS before filling
(`before`), the peak (`peak` = VmHWM, `maxrss`), the bytes allocated by the tables and the
bytes of the rows they hold. It imports only numpy and the in-process tables (the package's
__init__ loads nothing), so the baseline is theirs alone.
"""
import json
import resource
import sys

import numpy as np

from mier_tf.replay.in_process import InProcessTaskTables

# HalfCheetah sizes (fixtures.OBS, fixtures.ACT; not imported from there: it loads TensorFlow).
OBS, ACT = 17, 6


def vm(key: str) -> int:
  """A VmXXX: line of /proc/self/status, in bytes."""
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))


def main(argv) -> None:
  tasks, rounds, prior, posterior = (int(a) for a in argv[1:5])
  before = vm("VmRSS:")
  tables = InProcessTaskTables(tasks, OBS, ACT)
  rng = np.random.default_rng(0)

  def chunk(n):
    obs = rng.normal(size=(n, OBS)).astype(np.float32)
    return dict(observation=obs, action=rng.uniform(-1, 1, (n, ACT)).astype(np.float32),
                reward=rng.normal(size=n).astype(np.float32), next_observation=obs,
                discount=np.ones(n, np.float32))

  prior_rows, posterior_rows = chunk(prior), chunk(posterior)
  # As meta-training adds them: per epoch and task, prior-context data into both tables,
  # adapted-context data into the full table.
  for _ in range(rounds):
    for task in range(tasks):
      tables.add(task, ("adapt", "full"), prior_rows)
      tables.add(task, "full", posterior_rows)
  print(json.dumps(dict(before=before, peak=vm("VmHWM:"),
                        maxrss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                        table_bytes=tables.nbytes, rows=int(tables.sizes().sum()),
                        data_bytes=int(tables.sizes().sum()) * tables.row_dim * 4)))


if __name__ == "__main__":
  main(sys.argv)
