"""The learning benchmark (`make bench-learning`): returns per environment step and per CPU minute.

    python scripts/benchmark_learning.py --out=docs/results/learning

Writes learning.json (every row) and learning.png; see mier_tf/benchmark/learning.py for
the stages. About 45 minutes on 2 cores with the defaults.
"""
import json
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from mier_tf import cli
from mier_tf.benchmark import learning as bench

flags.DEFINE_list("stages", ["single_task_sac", "mier_wr_per_cpu_minute"], "Stages to run.")
flags.DEFINE_integer("seeds", 3, "Seeds of the single-task stage.")
flags.DEFINE_integer("mier_seeds", 1, "Seeds of the MIER-wR stage.")
flags.DEFINE_list("checkpoints", ["10000", "20000", "30000"], "Single-task evaluation steps.")
flags.DEFINE_float("cpu_minutes", 12.0, "CPU-time budget of each MIER-wR run.")
flags.DEFINE_list("schedules", ["paper", "cpu_4x32"], "SAC schedules of the MIER-wR stage.")
flags.DEFINE_list("settings", ["ours", "stock_tf_agents"], "SAC settings of the single task.")
flags.DEFINE_multi_string("gin_bindings", [], "Extra bindings of the MIER-wR stage.")
flags.DEFINE_string("out", "runs/bench_learning", "Output directory.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  logging.getLogger().setLevel(logging.INFO)
  with cli.one_line_errors():
    os.makedirs(FLAGS.out, exist_ok=True)
    path = os.path.join(FLAGS.out, "learning.json")
    rows = []

    def save():
      with open(path + ".tmp", "w") as f:
        json.dump(rows, f, indent=1)
      os.replace(path + ".tmp", path)
      bench.plot(rows, os.path.join(FLAGS.out, "learning.png"))

    checkpoints = [int(c) for c in FLAGS.checkpoints]
    if "single_task_sac" in FLAGS.stages:
      for seed in range(FLAGS.seeds):
        for settings in FLAGS.settings:
          rows.append(bench.single_task_sac(settings, seed, checkpoints))
          print(json.dumps(rows[-1]), flush=True)
          save()
    if "mier_wr_per_cpu_minute" in FLAGS.stages:
      for seed in range(FLAGS.mier_seeds):
        for schedule in FLAGS.schedules:
          rows.append(bench.mier_wr_per_cpu_minute(schedule, seed, FLAGS.cpu_minutes,
                                                   FLAGS.gin_bindings))
          print(json.dumps(rows[-1]), flush=True)
          save()
  print(f"Results in {path} and {os.path.join(FLAGS.out, 'learning.png')}")


if __name__ == "__main__":
  app.run(main)
