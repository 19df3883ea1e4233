"""Decisive experiments on Algorithm 2 (issue #22): variants of experience relabeling, each
rerun from the same meta-trained checkpoint, one variable changed at a time.

    python scripts/relabel_study.py --root_dir=RUN --out=DIR --variants=base,release \\
        --tasks=0,9,18,27 --seeds=0,1,2       # runs what is not done yet (resumable)
    python scripts/relabel_study.py --out=DIR --table   # the table of what is done
    python scripts/relabel_study.py --out=DIR --table --tasks=0,9,18,27  # of those tasks only

RUN is a meta-training run or one of its milestones (RUN/milestones/step_<n>); it is read,
never written: each (variant, seed) works in DIR/<variant>/s<seed>/, a copy of RUN's
checkpoint made of hard links. Every task is one `scripts/adapt.py` process (a kill loses at
most the task it was on), run with the variant's gin bindings and adapt_ood.guard_episodes = 0:
relabeling is measured alone, without the guard that would hide it. DIR/study.csv and
DIR/study.json hold one row per (variant, seed, task): the held-out NLL of the task's own data
(meta-trained inner loop, after the context steps, after the whole-model steps), the steps
taken, where the context went, the relabeled reward's correlation, bias and MAE and the
next-state error against the simulator, MIER-wR, MIER, their paired difference, and the
seconds the task took (wall clock, and the CPU seconds of its process: the fairer measure of
cost beside other jobs).

    python scripts/relabel_study.py --root_dir=RUN --out=DIR --variants=base \
        --transplant=agent:RUN/milestones/step_850000 --tasks=0,9
asks which part of a checkpoint decides: every variant's copy of RUN takes the agent (actor,
critics, temperature), the model or the replay arrays of another checkpoint of the same
config (`mier_tf.train.checkpoints.transplant`; recorded in DIR/study_config.json).
"""
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from mier_tf import cli
from mier_tf.train import checkpoints

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> (what it changes against base, its gin bindings). Base is today's Algorithm 2.
VARIANTS = {
    "base": ("the run's own recorded Algorithm 2 settings (with --gin_bindings on top)", []),
    "release": ("the release's fixed counts: no held-out stopping",
                ["adapt_ood.heldout_fraction = 0.0"]),
    "context_far": ("(a) 100 context steps, all at the full rate, gradient clip 100: the "
                    "context may leave the training range",
                    ["adapt_ood.context_steps = 100", "adapt_ood.fast_steps = 100",
                     "adapt_ood.context_clip = 100.0", "adapt_ood.patience = 20"]),
    "context_10": ("(a) the release's 10 context steps (2 at the inner rate, then a tenth), "
                   "the inner loop's gradient clip: what the 100 of today's cheetah_vel_hard "
                   "replaced", ["adapt_ood.context_steps = 10", "adapt_ood.fast_steps = 2",
                                "adapt_ood.context_clip = None"]),
    "policy_wr": ("(a) the policy acts and learns on MIER-wR's context (inside its training "
                  "range), the model relabels on its own phi_T",
                  ["adapt_ood.policy_context = 'mier_wr'"]),
    "context_only": ("(b) no whole-model steps", ["adapt_ood.model_steps = 0"]),
    "model_100": ("(b) 100 whole-model steps, the release's count (with `release`: all "
                  "taken, on all of the task's data)", ["adapt_ood.model_steps = 100"]),
    "model_1000": ("(b) up to 1,000 whole-model steps (held-out stopping, patience 50)",
                   ["adapt_ood.model_steps = 1000", "adapt_ood.patience = 50"]),
    "model_3000": ("(b) up to 3,000 whole-model steps (held-out stopping, patience 100)",
                   ["adapt_ood.model_steps = 3000", "adapt_ood.patience = 100"]),
    "model_10000": ("(b) every one of 10,000 whole-model steps, the best held-out weights kept",
                    ["adapt_ood.model_steps = 10000", "adapt_ood.patience = 10000"]),
    "data_2000": ("(c) 2,000 adaptation steps of the task instead of 400 (MIER-wR's too)",
                  ["EvalProtocol.adapt_steps = 2000"]),
    "data_greedy": ("(c) the 400 adaptation steps collected by the prior-context policy "
                    "without its exploration noise (MIER-wR's too)",
                    ["EvalProtocol.adapt_policy = 'deterministic'"]),
    "real_half": ("(d) half of every SAC batch from the task's own data (the release: 5%)",
                  ["adapt_ood.real_fraction = 0.5"]),
    "real_5pct": ("(d) 5% of every SAC batch from the task's own data, the release's share",
                  ["adapt_ood.real_fraction = 0.05"]),
    "no_stop": ("(b) every whole-model step taken: the held-out NLL is measured, never stops",
                ["adapt_ood.patience = 1000000"]),
    "real_only": ("(d) every SAC batch from the task's own data: no relabeled experience "
                  "(claim 3; the model is adapted all the same)",
                  ["adapt_ood.real_fraction = 1.0"]),
    "updates_x4": ("(d) four times the SAC updates", ["adapt_ood.updates_per_step = 8"]),
    "critic_reset": ("(d) the policy trained from freshly initialised critics (the "
                     "meta-trained actor kept)", ["adapt_ood.reset_critic = True"]),
    "epochs_1": ("(d) 1 policy epoch instead of 5 (its return is the 5-epoch run's first "
                 "epoch's: the same draws)", ["adapt_ood.num_epochs = 1"]),
    "epochs_10": ("(d) 10 policy epochs (twice the CPU configs' 5)",
                  ["adapt_ood.num_epochs = 10"]),
}
ALWAYS = ["adapt_ood.guard_episodes = 0"]


def variant_bindings(name: str) -> list:
  """A variant's bindings; `a+b` is variant a with b's changes on top (b's win)."""
  return [b for part in name.split("+") for b in VARIANTS[part][1]]


def known(name: str) -> bool:
  return all(part in VARIANTS for part in name.split("+"))
COLUMNS = ["variant", "seed", "task", "task_parameter", "mier_env_steps",
           "nll_meta", "nll_context", "nll_model", "context_steps", "model_steps",
           "context_moved", "reward_corr", "reward_bias", "reward_mae", "reward_true_std",
           "next_state_rmse", "mier_wr", "mier", "difference", "difference_se", "verdict",
           "seconds", "cpu_seconds"]

flags.DEFINE_string("root_dir", None, "The meta-training run (or milestone) to start from.")
flags.DEFINE_string("out", None, "The study's directory.", required=True)
flags.DEFINE_list("variants", ["base"], f"Of: {', '.join(VARIANTS)}; a+b combines two.")
flags.DEFINE_list("tasks", ["0"], "Test task indices (with --table: only these tasks' rows).")
flags.DEFINE_list("seeds", ["0"], "adapt_ood seeds (relabeling and batch draws).")
flags.DEFINE_multi_string("gin_bindings", [], "Bindings for every variant (e.g. a shorter "
                          "adapt_ood.num_epochs), recorded in DIR/study_config.json.")
flags.DEFINE_multi_string("transplant", [], "PART:RUN2 (PART one of agent, model, replay): "
                          "every variant's copy of RUN takes PART from RUN2's checkpoint.")
flags.DEFINE_integer("nice", 10, "Niceness of each task's process.")
flags.DEFINE_bool("table", False, "Only write and print the table of what is done.")
FLAGS = flags.FLAGS


def _copy_checkpoint(root_dir: str, dest: str, transplants=()) -> None:
  """DIR/<variant>/s<seed>: RUN's configs and checkpoint, hard-linked (read-only use), with
  the parts `transplants` ((part, donor run) pairs) taken from other checkpoints."""
  if os.path.isfile(os.path.join(dest, "operative_config.gin")):
    return
  partial = dest + ".partial"
  shutil.rmtree(partial, ignore_errors=True)
  os.makedirs(partial)
  for name in ("operative_config.gin", "run_config.gin", "run.json"):
    if os.path.exists(os.path.join(root_dir, name)):
      shutil.copy2(os.path.join(root_dir, name), partial)
  shutil.copytree(os.path.join(root_dir, "checkpoints"), os.path.join(partial, "checkpoints"),
                  copy_function=os.link)
  for part, donor in transplants:
    print(checkpoints.transplant(os.path.join(partial, "checkpoints"),
                                 os.path.join(donor, "checkpoints"), part), flush=True)
  os.rename(partial, dest)


def _results(dest: str) -> dict:
  try:
    with open(os.path.join(dest, "eval", "results.json")) as f:
      return json.load(f)
  except FileNotFoundError:
    return {"test_tasks": {}}


def _times(dest: str, name: str = "seconds.json") -> dict:
  try:
    with open(os.path.join(dest, name)) as f:
      return json.load(f)
  except FileNotFoundError:
    return {}


def run_task(dest: str, variant: str, seed: int, task: int, bindings) -> None:
  command = ["nice", "-n", str(FLAGS.nice), sys.executable,
             os.path.join(REPO, "scripts", "adapt.py"), f"--root_dir={dest}", f"--task={task}",
             f"--seed={seed}"]
  # ALWAYS last: no --gin_bindings turns the guard back on.
  command += [f"--gin_bindings={b}" for b in bindings + variant_bindings(variant) + ALWAYS]
  start, usage = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
  with open(os.path.join(dest, "adapt.log"), "a") as log:
    subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
  for name, value in (("seconds.json", time.time() - start), ("cpu_seconds.json", cpu)):
    times = _times(dest, name)
    times[str(task)] = value
    with open(os.path.join(dest, name), "w") as f:
      json.dump(times, f)


def _row(variant: str, seed: int, task: str, entry: dict, seconds, cpu_seconds) -> dict:
  adaptation = entry.get("adaptation", {})
  error = entry.get("relabel_error", {})
  contexts = entry.get("contexts", {})
  moved = (sum((a - b) ** 2 for a, b in zip(contexts["adapted"], contexts["mier_wr"])) ** 0.5
           if contexts else None)
  difference = entry["difference"]
  return {"variant": variant, "seed": seed, "task": int(task),
          "task_parameter": entry.get("task"), "mier_env_steps": entry.get("mier_env_steps"),
          "nll_meta": adaptation.get("heldout_nll_meta"),
          "nll_context": adaptation.get("heldout_nll_context"),
          "nll_model": adaptation.get("heldout_nll_model"),
          "context_steps": adaptation.get("context_steps"),
          "model_steps": adaptation.get("model_steps"), "context_moved": moved,
          "reward_corr": error.get("reward_corr"), "reward_bias": error.get("reward_bias"),
          "reward_mae": error.get("reward_mae"), "reward_true_std": error.get("reward_true_std"),
          "next_state_rmse": error.get("next_state_rmse"), "mier_wr": entry["mier_wr"],
          "mier": entry["mier"], "difference": difference["mean"],
          "difference_se": difference["se"], "verdict": difference["verdict"],
          "seconds": seconds, "cpu_seconds": cpu_seconds}


def table(out: str, tasks=None) -> list:
  """Writes DIR/study.{json,csv,md} from every variant's results (only `tasks`' if given)."""
  rows = []
  for variant in sorted(os.listdir(out)):
    vdir = os.path.join(out, variant)
    if not (os.path.isdir(vdir) and known(variant)):
      continue
    for name in sorted(os.listdir(vdir)):
      if not (name.startswith("s") and name[1:].isdigit()):
        continue
      dest = os.path.join(vdir, name)
      times, cpu_times = _times(dest), _times(dest, "cpu_seconds.json")
      for task, entry in sorted(_results(dest)["test_tasks"].items(), key=lambda x: int(x[0])):
        if "mier" in entry and (tasks is None or int(task) in tasks):
          rows.append(_row(variant, int(name[1:]), task, entry, times.get(task),
                           cpu_times.get(task)))
  with open(os.path.join(out, "study.json"), "w") as f:
    json.dump(rows, f, indent=1)
  with open(os.path.join(out, "study.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
  with open(os.path.join(out, "study.md"), "w") as f:
    f.write(markdown(rows))
  return rows


def markdown(rows: list) -> str:
  """Per variant over its tasks, then per task: what docs/RESULTS.md shows."""
  lines = ["| variant | tasks | MIER − MIER-wR, mean | won / tie / lost | reward corr, mean | "
           "next-state RMSE, mean | held-out NLL after | s per task (CPU s) |",
           "|---|---:|---:|---|---:|---:|---:|---:|"]
  mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
  for variant in sorted({r["variant"] for r in rows}, key=lambda v: -mean(
      [r["difference"] for r in rows if r["variant"] == v])):
    group = [r for r in rows if r["variant"] == variant]
    verdicts = [r["verdict"] for r in group]
    vals = lambda k: [r[k] for r in group if r[k] is not None]
    lines.append(
        f"| {variant} | {len(group)} | {mean(vals('difference')):+.1f} | "
        f"{verdicts.count('won')} / {verdicts.count('tie')} / {verdicts.count('lost')} | "
        f"{mean(vals('reward_corr')):.2f} | {mean(vals('next_state_rmse')):.2f} | "
        f"{mean(vals('nll_model')):.2f} | {mean(vals('seconds')):.0f} "
        f"({_fmt(mean(vals('cpu_seconds')) if vals('cpu_seconds') else None, '.0f')}) |")
  lines += ["", "| variant | seed | task | held-out NLL: meta / context / model | steps "
            "(context + model) | reward corr | reward bias | next-state RMSE | MIER-wR | MIER "
            "| MIER − MIER-wR |", "|---|---:|---|---|---|---:|---:|---:|---:|---:|---|"]
  for r in sorted(rows, key=lambda r: (r["task"], r["seed"], r["variant"])):
    nll = " / ".join(_fmt(r[k], ".2f") for k in ("nll_meta", "nll_context", "nll_model"))
    lines.append(
        f"| {r['variant']} | {r['seed']} | {r['task']} ({r['task_parameter']}) | {nll} | "
        f"{_fmt(r['context_steps'], '.0f')} + {_fmt(r['model_steps'], '.0f')} | "
        f"{_fmt(r['reward_corr'], '.2f')} | {_fmt(r['reward_bias'], '+.2f')} | "
        f"{_fmt(r['next_state_rmse'], '.2f')} | {r['mier_wr']:.1f} | {r['mier']:.1f} | "
        f"{r['difference']:+.1f} ± {r['difference_se']:.1f} ({r['verdict']}) |")
  return "\n".join(lines) + "\n"


def _fmt(value, spec):
  return "-" if value is None else format(value, spec)


def print_table(rows: list) -> None:
  print(f"{'variant':24} {'seed':>4} {'task':>4} {'nll meta>ctx>model':>22} {'steps':>8} "
        f"{'moved':>6} {'r corr':>6} {'r bias':>6} {'r MAE':>6} {'s RMSE':>6} {'MIER-wR':>8} "
        f"{'MIER':>8} {'diff':>14} {'s':>5}")
  for r in rows:
    nll = "/".join(_fmt(r[k], ".2f") for k in ("nll_meta", "nll_context", "nll_model"))
    print(f"{r['variant']:24} {r['seed']:>4} {r['task']:>4} {nll:>22} "
          f"{_fmt(r['context_steps'], '.0f')}+{_fmt(r['model_steps'], '.0f'):<4} "
          f"{_fmt(r['context_moved'], '6.2f')} {_fmt(r['reward_corr'], '6.2f')} "
          f"{_fmt(r['reward_bias'], '6.2f')} {_fmt(r['reward_mae'], '6.2f')} "
          f"{_fmt(r['next_state_rmse'], '6.2f')} {r['mier_wr']:8.1f} {r['mier']:8.1f} "
          f"{r['difference']:+7.1f}±{r['difference_se']:<5.1f} {_fmt(r['seconds'], '5.0f')}")


def main(argv):
  del argv
  with cli.one_line_errors():
    out = os.path.abspath(os.path.expanduser(FLAGS.out))
    if FLAGS.table:
      print_table(table(out, [int(t) for t in FLAGS.tasks] if FLAGS["tasks"].present else None))
      return 0
    unknown = [v for v in FLAGS.variants if not known(v)]
    if unknown:
      raise cli.UsageError(f"unknown variant(s) {', '.join(unknown)}; variants: "
                           f"{', '.join(VARIANTS)}")
    if not FLAGS.root_dir:
      raise cli.UsageError("--root_dir is needed to run variants (or --table to read them)")
    root_dir = os.path.abspath(os.path.expanduser(FLAGS.root_dir))
    if not os.path.isdir(os.path.join(root_dir, "checkpoints")):
      raise cli.UsageError(f"{root_dir}/checkpoints not found: --root_dir must be a "
                           "meta-training run or one of its milestones")
    transplants = []
    for spec in FLAGS.transplant:
      part, _, donor = spec.partition(":")
      if part not in checkpoints.TRANSPLANT_PARTS or not donor:
        raise cli.UsageError(f"--transplant={spec}: give PART:RUN, PART one of "
                             f"{', '.join(checkpoints.TRANSPLANT_PARTS)}")
      donor = os.path.abspath(os.path.expanduser(donor))
      if not os.path.isdir(os.path.join(donor, "checkpoints")):
        raise cli.UsageError(f"{donor}/checkpoints not found (--transplant={spec})")
      transplants.append([part, donor])
    os.makedirs(out, exist_ok=True)
    config = {"root_dir": root_dir, "gin_bindings": list(FLAGS.gin_bindings),
              "always": ALWAYS, "variants": {}}
    if transplants:
      config["transplants"] = transplants
    path = os.path.join(out, "study_config.json")
    if os.path.exists(path):  # a study grows; what all its rows share must not change
      with open(path) as f:
        earlier = json.load(f)
      for key in ("root_dir", "gin_bindings", "transplants"):
        if earlier.get(key) != config.get(key):
          raise cli.UsageError(f"{path}: this study ran with {key} {earlier.get(key)!r}, not "
                               f"{config.get(key)!r}; give another --out")
      config["variants"] = earlier["variants"]
    config["variants"].update({v: variant_bindings(v) for v in FLAGS.variants})
    with open(path, "w") as f:
      json.dump(config, f, indent=1)
    tasks, seeds = [int(t) for t in FLAGS.tasks], [int(s) for s in FLAGS.seeds]
    # Seed-major, then task, then variant: every variant of a task before the next task, so
    # an interrupted study still compares variants on the same tasks.
    for seed in seeds:
      for task in tasks:
        for variant in FLAGS.variants:
          dest = os.path.join(out, variant, f"s{seed}")
          _copy_checkpoint(root_dir, dest, transplants)
          if "mier" in _results(dest)["test_tasks"].get(str(task), {}):
            continue
          print(f"{variant} seed {seed} task {task} ...", flush=True)
          run_task(dest, variant, seed, task, list(FLAGS.gin_bindings))
          print_table(table(out)[-1:])
  print_table(table(out))
  return 0


if __name__ == "__main__":
  app.run(main)
