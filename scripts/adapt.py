"""MIER on out-of-distribution test tasks (Algorithm 2): experience relabeling.

    python scripts/adapt.py --root_dir=runs/cheetah_vel_hard/X --task=0
    python scripts/adapt.py --root_dir=runs/cheetah_vel_hard/X --task=all [--seed=1]

Reads the run's operative_config.gin and last checkpoint (never modified), writes TensorBoard
events (against relabeling epochs) and SavedModels under ROOT/adapt/task_<i>/, adds each
task's MIER-wR and MIER returns to ROOT/eval/results.json and MIER to TensorBoard at the
checkpoint's env steps (ROOT/eval/mier/); ends by printing the run's results.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from mier_tf import cli

flags.DEFINE_string("root_dir", None, "A meta-training run's directory.", required=True)
flags.DEFINE_string("task", "all", "Index of a test task, or 'all'.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. adapt_ood.num_epochs=2.")
flags.DEFINE_bool("video", False, "After each task, write ROOT/adapt/task_<i>/"
                  "mier_vs_mier_wr.gif: MIER-wR (left) and MIER (right) on the task.")
flags.DEFINE_integer("seed", None, "Seed of relabeling and batch draws (adapt_ood.seed; "
                     "default: the run's).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from mier_tf.train import adapt_ood, job, run_dir  # noqa: F401  pylint: disable=g-import-not-at-top
  root_dir = os.path.abspath(FLAGS.root_dir)
  with cli.one_line_errors():
    config = cli.run_config(root_dir)
    bindings = list(FLAGS.gin_bindings)
    if FLAGS.seed is not None:
      bindings.append(f"adapt_ood.seed = {FLAGS.seed}")
    cli.parse_run_config(config, bindings)
    with run_dir.RunDirectoryLock(root_dir):
      if FLAGS.task == "all":
        adapt_ood.adapt_all_test_tasks(root_dir)
      else:
        try:
          index = int(FLAGS.task)
        except ValueError:
          raise cli.UsageError(
              f"--task must be a test task index or 'all', not {FLAGS.task!r}") from None
        adapt_ood.adapt_all_test_tasks(root_dir, task_indices=[index])
      if FLAGS.video:
        _write_videos(root_dir)
  print(job.summary(root_dir))


def _write_videos(root_dir: str) -> None:
  from mier_tf import video  # pylint: disable=g-import-not-at-top
  from mier_tf import results as results_lib  # pylint: disable=g-import-not-at-top
  from mier_tf.train import evaluation  # pylint: disable=g-import-not-at-top
  results = results_lib.read_results(root_dir)
  indices = ([int(FLAGS.task)] if FLAGS.task != "all" else
             sorted(int(i) for i, e in results["test_tasks"].items() if "mier" in e))
  for index in indices:
    frames, (wr, mier) = evaluation.render_mier_vs_mier_wr(root_dir, results["family"], index)
    path = video.write_gif(os.path.join(root_dir, "adapt", f"task_{index}",
                                        "mier_vs_mier_wr.gif"), frames)
    print(f"{path}: MIER-wR (left) {wr:.1f}, MIER (right) {mier:.1f}")  # the results on screen, read from results.json


if __name__ == "__main__":
  app.run(main)
