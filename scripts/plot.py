"""Plots one or more runs (seeds) from their event files and results.json.

    python scripts/plot.py --root_dir=runs/a --root_dir=runs/b [--out_dir=plots]

Writes learning_curves.png (MIER-wR returns on training and test tasks against environment
steps), training_losses.png, and mier_vs_mier_wr.png (per test task, after adaptation).
Several runs are drawn as mean and standard deviation.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from mier_tf import cli

flags.DEFINE_multi_string("root_dir", None, "Run directories (repeat for seeds).", required=True)
flags.DEFINE_string("out_dir", None, "Where the PNGs go (default ROOT/plots of the first run).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from mier_tf import plotting  # pylint: disable=g-import-not-at-top
  with cli.one_line_errors():
    for d in FLAGS.root_dir:
      if not os.path.isdir(os.path.join(d, "eval")):
        raise cli.UsageError(f"{d} has no eval/ directory: not a run of scripts/train.py")
    out_dir = FLAGS.out_dir or os.path.join(FLAGS.root_dir[0], "plots")
    for path in plotting.plot_runs(FLAGS.root_dir, out_dir):
      print(path)


if __name__ == "__main__":
  app.run(main)
