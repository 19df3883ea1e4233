"""Scores how well an exported model identifies tasks; prints a summary (--json: JSON).

    python scripts/identify.py --root_dir=runs/X            # family read from the run
    python scripts/identify.py --export_dir=runs/X/export --family=cheetah_vel_hard

Only the model SavedModel is loaded. Random-action data from training tasks are adapted on
with the export's `adapt` signature; the score is the leave-one-task-out R^2 of a linear map
from the adapted contexts to the task parameter, and the spread of contexts between tasks
against their spread between two adaptations of one task (`mier_tf/identification.py`).
Test tasks are read through the same map, after the `adapt` signature and after Algorithm
2's longer context adaptation.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from mier_tf import cli
from mier_tf import report_text

cli.define_export_flags()
cli.define_json_flag()
flags.DEFINE_integer("num_tasks", 40, "Training tasks scored.")
flags.DEFINE_integer("steps", 200, "Random-action transitions per adaptation.")
flags.DEFINE_integer("ood_context_steps", 10, "Context steps of Algorithm 2 on test tasks.")
flags.DEFINE_integer("seed", 0, "Seed of resets and random actions.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from mier_tf import identification  # pylint: disable=g-import-not-at-top
  with cli.one_line_errors():
    export_dir, family = cli.export_and_family(FLAGS.root_dir, FLAGS.export_dir, FLAGS.family)
    report = identification.score_export(export_dir, family, FLAGS.num_tasks, FLAGS.steps,
                                         FLAGS.ood_context_steps, seed=FLAGS.seed)
  cli.print_report(report, report_text.identification_summary(report), FLAGS.json)


if __name__ == "__main__":
  app.run(main)
