"""Evaluates a run's export on a task family under the evaluation protocol (MIER-wR).

    python scripts/evaluate.py --root_dir=runs/X --split=test
    python scripts/evaluate.py --export_dir=runs/X/export --family=cheetah_vel_hard --tasks=0,3

Only the SavedModel export/agent is loaded (TensorFlow alone, no training code). Per task,
as in training (mier_tf/train/evaluation.py): N prior-context transitions of the stochastic
policy are the adaptation data, the export's `identify` gives the task's context, and K
deterministic episodes from the task's K start states give the return (their mean), beside
standing still from the same start states. Every draw is seeded by (seed, split, task,
episode): a task's numbers do not depend on which other tasks are evaluated.
With --video_dir each task's first episode is also rendered to an animated GIF; with
--reward_parts each task's episodes are also split into the environment's reward parts
(e.g. the ant's forward, ctrl, contact and survive: whether it walks or only stays up).
Prints a summary per task and the mean; --json prints the report as JSON instead (the
summary then goes to stderr).
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
flags.DEFINE_integer("num_episodes", 3, "K: deterministic episodes per task (the protocol's "
                     "default, EvalProtocol.episodes).")
flags.DEFINE_integer("adapt_steps", 400, "N: prior-context transitions per task to adapt on "
                     "(the protocol's default, EvalProtocol.adapt_steps).")
flags.DEFINE_enum("split", "test", ["train", "test"], "Which tasks of the family.")
flags.DEFINE_list("tasks", None, "Task indices in the split (default: all).")
flags.DEFINE_integer("seed", 0, "The protocol's seed (EvalProtocol.seed): start states and "
                     "exploration noise.")
flags.DEFINE_bool("reward_parts", False, "Also split each task's episodes into the "
                  "environment's reward parts (forward, ctrl, contact, survive...): where a "
                  "return comes from.")
flags.DEFINE_string("video_dir", None, "Also write an animated GIF of each task's MIER-wR "
                    "episode there (<split>_task_<i>.gif).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from mier_tf.train import evaluation  # pylint: disable=g-import-not-at-top
  with cli.one_line_errors():
    export_dir, family = cli.export_and_family(FLAGS.root_dir, FLAGS.export_dir, FLAGS.family)
    try:
      protocol = evaluation.EvalProtocol(adapt_steps=FLAGS.adapt_steps,
                                         episodes=FLAGS.num_episodes, seed=FLAGS.seed)
    except ValueError as e:
      raise cli.UsageError(str(e).replace("EvalProtocol.episodes", "--num_episodes")
                           .replace("EvalProtocol.adapt_steps", "--adapt_steps")) from None
    report = evaluation.evaluate_export(export_dir, family, FLAGS.split, FLAGS.tasks, protocol,
                                        reward_parts=FLAGS.reward_parts)
    if FLAGS.video_dir:
      from mier_tf import video  # pylint: disable=g-import-not-at-top
      for entry in report["tasks"]:
        frames, episode_return = evaluation.render_export(
            export_dir, family, entry["index"], FLAGS.split, protocol=protocol)
        entry["video"] = video.write_gif(os.path.join(
            FLAGS.video_dir, f"{FLAGS.split}_task_{entry['index']}.gif"), frames)
        entry["video_return"] = episode_return
  cli.print_report(report, report_text.evaluation_summary(report, export_dir), FLAGS.json)


if __name__ == "__main__":
  app.run(main)
