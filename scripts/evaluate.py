"""Evaluates exported SavedModels on a task family; prints JSON returns on stdout.

    python scripts/evaluate.py --root_dir=runs/X --split=test --num_episodes=3
    python scripts/evaluate.py --export_dir=runs/X/export --family=cheetah_vel_hard --split=test

Only the SavedModels in export_dir are loaded (policy, collect_policy, model), not the training
code: for each task, one episode with the prior context and the stochastic policy gives the
adaptation data, the model's `adapt` signature gives the task's context, and one episode with
the deterministic policy on concat(state, context) gives the reported return (MIER-wR).
With --video_dir each task's MIER-wR episode is also rendered to an animated GIF (one more
episode, so its return, "video_return", may differ from the reported one).
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from mier_tf import cli

cli.define_export_flags()
flags.DEFINE_integer("num_episodes", 1, "MIER-wR episodes per task (mean and spread).")
flags.DEFINE_enum("split", "test", ["train", "test"], "Which tasks of the family.")
flags.DEFINE_list("tasks", None, "Task indices in the split (default: all).")
flags.DEFINE_integer("seed", 0, "Seed of the environment resets.")
flags.DEFINE_string("video_dir", None, "Also write an animated GIF of each task's MIER-wR "
                    "episode there (<split>_task_<i>.gif).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from mier_tf.train import evaluation  # pylint: disable=g-import-not-at-top
  with cli.one_line_errors():
    export_dir, family = cli.export_and_family(FLAGS.root_dir, FLAGS.export_dir, FLAGS.family)
    report = evaluation.evaluate_export(export_dir, family, FLAGS.split, FLAGS.tasks,
                                        FLAGS.seed, FLAGS.num_episodes)
    if FLAGS.video_dir:
      from mier_tf import video  # pylint: disable=g-import-not-at-top
      for entry in report["tasks"]:
        frames, episode_return = evaluation.render_export(
            export_dir, family, entry["index"], FLAGS.split, seed=FLAGS.seed)
        entry["video"] = video.write_gif(os.path.join(
            FLAGS.video_dir, f"{FLAGS.split}_task_{entry['index']}.gif"), frames)
        entry["video_return"] = episode_return
  print(json.dumps(report, indent=1))


if __name__ == "__main__":
  app.run(main)
