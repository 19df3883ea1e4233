"""Benchmarks of mier_tf's stages: prints a table and writes bench.json.

  python scripts/benchmark.py                       # every stage (`make bench`)
  python scripts/benchmark.py --only "model meta-step" --out bench.json
  python scripts/benchmark.py --only replay --quick --out /tmp/b.json   # tiny sizes (tests)

The stages, their rows and the harness are in mier_tf/benchmark/ (see mier_tf/benchmark/
harness.py for what a row holds).
"""
import argparse
import os
import sys
import time
from typing import Optional, Sequence

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mier_tf import benchmark  # pylint: disable=g-import-not-at-top
from mier_tf.benchmark import harness  # pylint: disable=g-import-not-at-top


def main(argv: Optional[Sequence[str]] = None) -> int:
  stages = list(benchmark.STAGES)
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--only", action="append", choices=stages, metavar="STAGE",
                      help=f"run only this stage (repeatable); stages: {stages}")
  parser.add_argument("--out", default="bench.json", help="JSON file for the rows")
  parser.add_argument("--quick", action="store_true",
                      help="tiny sizes and 1-2 repeats: checks that the stages run, the "
                      "numbers mean nothing")
  args = parser.parse_args(argv)
  start = time.perf_counter()
  rows = benchmark.run(args.only, args.quick, args.out)
  print(harness.format_table(rows))
  print(f"wrote {args.out} ({time.perf_counter() - start:.0f} s)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
