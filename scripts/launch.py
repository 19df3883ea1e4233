"""A distributed run on Reverb: `python scripts/launch.py --gin_file=gin/quickstart.gin --collectors=2`.

--role=all (default) starts the replay server, the collectors and the learner as processes
on this machine and stops them all when the learner finishes or on Ctrl-C. Each role also
runs alone, e.g. on different machines (same --gin_file and --gin_bindings for all):

  scripts/launch.py --role=server    --gin_file=C --root_dir=R --port=8000
  scripts/launch.py --role=collector --gin_file=C --root_dir=R_i --server=HOST:8000 \
                    --collector_index=i --collectors=N
  scripts/launch.py --role=learner   --gin_file=C --root_dir=R --server=HOST:8000

The server listens on every interface without authentication: trusted networks only.
See docs/DISTRIBUTED.md.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from mier_tf import cli

cli.define_run_flags("gin/quickstart.gin", "The run's directory (default runs/<config>__s<seed>"
                     "__<time>); a collector's own directory with --role=collector.")
flags.DEFINE_enum("role", "all", ["all", "server", "collector", "learner"],
                  "all: every role on this machine; or one role.")
flags.DEFINE_integer("collectors", 2, "Number of collectors (all: started; collector: how "
                     "many share the tasks).")
flags.DEFINE_string("server", None, "The replay server, host:port (collector, learner).")
flags.DEFINE_integer("port", None, "The server's port (server, all; default: a free one).")
flags.DEFINE_integer("collector_index", 0, "Which collector this is, 0 .. --collectors - 1.")
flags.DEFINE_enum("task_choice", "share", ["share", "random"], "Collectors' rounds draw from "
                  "their share of the training tasks or from all of them.")
flags.DEFINE_float("connect_timeout_s", 60.0, "How long to wait for the server before "
                   "stopping with one line (collector, learner).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  # The roles' configurables (and meta-training's) are registered before gin parses.
  from mier_tf.distributed import collector, launch, learner, server  # pylint: disable=g-import-not-at-top
  with cli.one_line_errors():
    root_dir, bindings = cli.parse_run_flags(FLAGS)
    if FLAGS.role in ("collector", "learner") and not FLAGS.server:
      raise cli.UsageError(f"--role={FLAGS.role} needs --server=host:port")
    if FLAGS.role == "all":
      config = [f"--gin_file={f}" for f in FLAGS.gin_file] + [
          f"--gin_bindings={b}" for b in bindings]
      sys.exit(launch.launch(
          [sys.executable, os.path.abspath(__file__)], config, os.path.abspath(root_dir),
          FLAGS.collectors, port=FLAGS.port, task_choice=FLAGS.task_choice,
          collector_flags=[f"--connect_timeout_s={FLAGS.connect_timeout_s}"],
          learner_flags=[f"--connect_timeout_s={FLAGS.connect_timeout_s}"]))
    if FLAGS.role == "server":
      server.serve(root_dir, port=FLAGS.port)
    elif FLAGS.role == "collector":
      collector.collect(root_dir, FLAGS.server, index=FLAGS.collector_index,
                        num_collectors=FLAGS.collectors, task_choice=FLAGS.task_choice,
                        connect_timeout_s=FLAGS.connect_timeout_s)
    else:
      print(learner.learn(root_dir, FLAGS.server, connect_timeout_s=FLAGS.connect_timeout_s),
            flush=True)


if __name__ == "__main__":
  app.run(main)
