"""Meta-trains MIER on a task family: `python scripts/train.py --gin_file=gin/ant_negjoints.gin`.

Writes ROOT/operative_config.gin, ROOT/train and ROOT/eval (TensorBoard), ROOT/checkpoints
and ROOT/export (SavedModels). Re-running on the same --root_dir resumes.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from mier_tf import cli

flags.DEFINE_multi_string("gin_file", [], "Gin config file(s), e.g. gin/cheetah_vel_hard.gin.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings overriding the files.")
flags.DEFINE_string("root_dir", None,
                    "Output directory (default runs/<config>__s<seed>__<time>).")
flags.DEFINE_integer("seed", None, "Seeds everything (binds MetaTrainingRun.seed and "
                     "adapt_ood.seed); default: the config's.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from mier_tf.train import job  # pylint: disable=g-import-not-at-top
  with cli.one_line_errors():
    bindings = list(FLAGS.gin_bindings) + cli.seed_bindings(FLAGS.seed)
    root_dir = cli.parse_gin(FLAGS.gin_file, bindings, FLAGS.root_dir)
    text = job.train_and_adapt(root_dir)
  print(text, flush=True)


if __name__ == "__main__":
  app.run(main)
