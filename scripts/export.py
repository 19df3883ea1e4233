"""Exports a run's last checkpoint (or a milestone's) as the SavedModels of a run's end.

    python scripts/export.py --root_dir=runs/X/milestones/step_850000
    python scripts/evaluate.py --root_dir=runs/X/milestones/step_850000 --reward_parts

Reads ROOT's operative_config.gin and last checkpoint (never modified) and writes ROOT/export/
(agent, policy, collect_policy, model), as meta-training writes at a run's end and at each
milestone it keeps (milestones kept before 2026-12-05 have none), so that
`scripts/evaluate.py --root_dir=ROOT` evaluates that checkpoint. An existing export/ is
replaced only with --overwrite.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from mier_tf import cli

flags.DEFINE_string("root_dir", None, "A meta-training run's directory, or one of its "
                    "milestones (ROOT/milestones/step_<n>).", required=True)
flags.DEFINE_bool("overwrite", False, "Replace an existing ROOT/export/.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from mier_tf.train import adapt_ood, job, meta_train, run_dir  # noqa: F401  pylint: disable=g-import-not-at-top
  root_dir = os.path.abspath(FLAGS.root_dir)
  with cli.one_line_errors():
    config = cli.run_config(root_dir, "a run of scripts/train.py or one of its milestones")
    export_dir = os.path.join(root_dir, "export")
    if os.path.exists(export_dir) and not FLAGS.overwrite:
      raise cli.UsageError(f"{export_dir} exists; --overwrite replaces it")
    cli.parse_run_config(config)
    with run_dir.RunDirectoryLock(root_dir):
      run = adapt_ood.restored_run(root_dir)
      meta_train.export_run(run, export_dir)
  print(f"{export_dir}: agent, policy, collect_policy and model SavedModels of the checkpoint "
        f"at {int(run.env_steps.numpy()):,} env steps")


if __name__ == "__main__":
  app.run(main)
