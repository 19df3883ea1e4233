"""Saves what a run's plots and tables need, small enough to commit (no checkpoints, no events).

    python scripts/save_run.py --root_dir=runs/x --out_dir=docs/results/cheetah_vel_hard_cpu/s0

Writes OUT/eval/results.json, OUT/operative_config.gin and OUT/scalars.json (every eval and
relabeling scalar; training scalars at 200 evenly spaced steps), and a campaign's evaluated
milestones; a campaign's run still training is saved with its evaluated milestones alone (no
eval/results.json), so they outlive the machine. `scripts/plot.py` takes
OUT as a --root_dir, so the figures can be drawn again from the saved files alone.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from mier_tf import cli

flags.DEFINE_string("root_dir", None, "A run directory of scripts/train.py.", required=True)
flags.DEFINE_string("out_dir", None, "Where to write the saved run.", required=True)
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from mier_tf import plotting  # pylint: disable=g-import-not-at-top
  with cli.one_line_errors():
    if not os.path.isdir(FLAGS.root_dir):
      raise cli.UsageError(f"--root_dir={FLAGS.root_dir} is not a directory")
    for path in plotting.save_run(FLAGS.root_dir, FLAGS.out_dir):
      print(path)
    if not os.path.exists(os.path.join(FLAGS.root_dir, "eval", "results.json")):
      print(f"{FLAGS.root_dir} is still training: its evaluated milestones are saved; save "
            "it again at its end")


if __name__ == "__main__":
  app.run(main)
