"""One command per family: the seeds' runs, their saved results, the references, the tables.

    python scripts/reproduce_results.py --gin_file=gin/cheetah_vel_hard_cpu.gin --seeds=0,1,2
    python scripts/reproduce_results.py --gin_file=gin/cheetah_negjoints_cpu.gin --seeds=1 \
        --oracle_steps=10000,20000,30000,40000,50000
    python scripts/reproduce_results.py ... --dry_run      # print the commands only

As CleanRL's benchmark scripts do, this runs the same commands a user would, in order:

  1. per seed: `scripts/train.py --gin_file=F --seed=S --root_dir=RUNS/<config>_s<S>`
     (meta-training, then Algorithm 2 on the config's test tasks; resumes if interrupted);
  2. per seed: `scripts/save_run.py` into OUT/s<S> (results, config, scalars: small enough to
     commit);
  3. `scripts/references.py --family_dir=OUT` (standing still and the two oracles on every
     relabeled test task; skips what is already there);
  4. `scripts/regenerate_results.py` (OUT/table.md and the plots).

OUT defaults to docs/results/<config>. Every step can be re-run: a finished run says so and
changes nothing, references already computed are kept. On 2 CPU cores one seed of the
hour-long CPU configs takes 1-1.5 hours and a 50k-step oracle about 11 CPU minutes per task;
split the work over invocations with --seeds, --skip_references or --oracle_tasks.
"""
import os
import subprocess
import sys

from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_string("gin_file", None, "The family's config, e.g. gin/cheetah_vel_hard_cpu.gin.",
                    required=True)
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to run.")
flags.DEFINE_string("runs_dir", "runs", "Where the full run directories go.")
flags.DEFINE_string("out_dir", None, "Saved results (default docs/results/<config>).")
flags.DEFINE_list("oracle_steps", ["10000", "20000", "30000", "40000", "50000"],
                  "Checkpoints of the long oracle (scripts/references.py).")
flags.DEFINE_list("oracle_tasks", None, "Test tasks of the references (default: relabeled).")
flags.DEFINE_bool("skip_runs", False, "Only the references and the tables.")
flags.DEFINE_bool("skip_references", False, "Only the runs and the tables.")
flags.DEFINE_bool("dry_run", False, "Print the commands, run nothing.")
FLAGS = flags.FLAGS


def commands() -> list:
  """The commands, in order, as argument lists."""
  config = os.path.splitext(os.path.basename(FLAGS.gin_file))[0]
  out_dir = FLAGS.out_dir or os.path.join("docs", "results", config)
  py = sys.executable
  steps = []
  if not FLAGS.skip_runs:
    for seed in FLAGS.seeds:
      root = os.path.join(FLAGS.runs_dir, f"{config}_s{seed}")
      steps.append([py, "scripts/train.py", f"--gin_file={FLAGS.gin_file}", f"--seed={seed}",
                    f"--root_dir={root}"])
      steps.append([py, "scripts/save_run.py", f"--root_dir={root}",
                    f"--out_dir={os.path.join(out_dir, f's{seed}')}"])
  if not FLAGS.skip_references:
    step = [py, "scripts/references.py", f"--family_dir={out_dir}",
            f"--oracle_steps={','.join(FLAGS.oracle_steps)}"]
    if FLAGS.oracle_tasks:
      step.append(f"--tasks={','.join(FLAGS.oracle_tasks)}")
    steps.append(step)
  steps.append([py, "scripts/regenerate_results.py",
                f"--results_dir={os.path.dirname(os.path.normpath(out_dir))}"])
  return steps


def main(argv):
  del argv
  if not os.path.isfile(os.path.join(REPO, FLAGS.gin_file)) and not os.path.isfile(
      FLAGS.gin_file):
    print(f"error: gin file not found: {FLAGS.gin_file}", file=sys.stderr)
    return 2
  for command in commands():
    print("$ " + " ".join(command[1:]), flush=True)
    if FLAGS.dry_run:
      continue
    code = subprocess.call(command, cwd=REPO)
    if code != 0:
      print(f"error: `{' '.join(command[1:])}` exited with {code}", file=sys.stderr)
      return code
  return 0


if __name__ == "__main__":
  app.run(main)
