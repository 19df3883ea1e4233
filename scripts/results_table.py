"""Prints the MIER against MIER-wR tables of a family's saved runs (one folder per seed).

    python scripts/results_table.py --family_dir=docs/results/cheetah_vel_hard_cpu [--json=out.json]

Per relabeled test task: standing still, MIER-wR and MIER as mean ± std over seeds, the
gain, and the oracles where `scripts/references.py` has computed them; then per seed: identification R², the means and on how many tasks MIER won. The
tables of docs/RESULTS.md are this script's output.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from mier_tf import cli

flags.DEFINE_string("family_dir", None, "Folder with one saved run per seed.", required=True)
flags.DEFINE_string("json", None, "Also write the table's numbers as JSON there.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from mier_tf import results  # pylint: disable=g-import-not-at-top
  with cli.one_line_errors():
    table = results.comparison(results.load_runs(FLAGS.family_dir),
                               results.load_references(FLAGS.family_dir))
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(table, f, indent=1)
  print(results.markdown(table), end="")


if __name__ == "__main__":
  app.run(main)
