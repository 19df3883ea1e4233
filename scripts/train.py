"""Meta-trains MIER on a task family: `python scripts/train.py --gin_file=gin/ant_negjoints.gin`.

Writes ROOT/operative_config.gin, ROOT/train and ROOT/eval (TensorBoard), ROOT/checkpoints
and ROOT/export (SavedModels). Re-running on the same --root_dir resumes.
"""
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from mier_tf import cli

cli.define_run_flags("gin/cheetah_vel_hard.gin",
                     "Output directory (default runs/<config>__s<seed>__<time>).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from mier_tf.train import job  # pylint: disable=g-import-not-at-top
  with cli.one_line_errors():
    root_dir, _ = cli.parse_run_flags(FLAGS)
    logging.info("Run directory: %s", root_dir)  # absolute: a default is under the cwd
    text = job.train_and_adapt(root_dir)
  print(text, flush=True)


if __name__ == "__main__":
  app.run(main)
