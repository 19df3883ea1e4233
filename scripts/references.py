"""The references of a family's runs, per relabeled test task: standing still and two oracles.

    python scripts/references.py --family_dir=docs/results/cheetah_vel_hard_cpu
    python scripts/references.py --family_dir=... --only=same_data          # minutes
    python scripts/references.py --family_dir=... --only=long --tasks=0,3   # ~10 CPU min per 50k steps
    python scripts/references.py --family_dir=... --tasks=0,1 \
        --gin_bindings='adapt_ood.num_epochs = 5'   # as a campaign evaluates the runs

Reads the runs' configs and results under FAMILY_DIR (one folder per seed, as
`scripts/save_run.py` writes them): the family, the SAC settings, and MIER's adaptation
budget (`adapt_ood.*`, with --gin_bindings on top). With --tasks only a seed's
operative_config.gin is needed, so a family's references can be computed while its runs
train. For every test task that a run relabeled (or --tasks), writes
FAMILY_DIR/references/task_<i>.json with standing still, the oracle given MIER's data, and
the long oracle's returns at --oracle_steps (see `mier_tf/references.py`). A task whose file
already holds a part with the same settings is skipped, so the work can be split over
several invocations (one per session); `scripts/results_table.py` and `scripts/plot.py` read
the files.
"""
import ast
import glob
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from mier_tf import cli

flags.DEFINE_string("family_dir", None, "Folder with one saved run per seed.", required=True)
flags.DEFINE_list("tasks", None, "Test task indices (default: every task a run relabeled).")
flags.DEFINE_list("only", ["standing_still", "same_data", "long"], "Parts to compute.")
flags.DEFINE_multi_string("gin_bindings", [], "Bindings on top of the runs' operative config, "
                          "as the runs are evaluated with them (a campaign's Algorithm 2: "
                          "'adapt_ood.num_epochs = 5').")
flags.DEFINE_list("oracle_steps", ["10000", "20000", "30000", "40000", "50000"],
                  "Environment steps at which the long oracle is evaluated.")
flags.DEFINE_integer("seed", 0, "Seed of the oracles.")
FLAGS = flags.FLAGS

PARTS = ("standing_still", "same_data", "long")
SAC_KEYS = ("actor_fc_layers", "critic_fc_layers", "target_entropy", "initial_log_alpha",
            "actor_learning_rate", "critic_learning_rate", "alpha_learning_rate", "gamma",
            "target_update_tau", "reward_scale_factor")


def parse_bindings(lines) -> dict:
  """'Name.param' -> value of every binding line (the last one wins)."""
  bindings = {}
  for line in lines:
    match = re.match(r"^([A-Za-z_][\w.]*)\s*=\s*(.+)$", line.strip())
    if match:
      try:
        bindings[match.group(1)] = ast.literal_eval(match.group(2))
      except (ValueError, SyntaxError):
        bindings[match.group(1)] = match.group(2)
  return bindings


def read_bindings(path: str) -> dict:
  """'Name.param' -> value of every binding of an operative config (the last one wins)."""
  with open(path) as f:
    return parse_bindings(f)


def main(argv):
  del argv
  from mier_tf import envs  # pylint: disable=g-import-not-at-top  (after absl's flags)
  from mier_tf import files  # pylint: disable=g-import-not-at-top
  from mier_tf import references  # pylint: disable=g-import-not-at-top
  from mier_tf import results as results_lib  # pylint: disable=g-import-not-at-top
  with cli.one_line_errors():
    unknown = sorted(set(FLAGS.only) - set(PARTS))
    if unknown:
      raise ValueError(f"--only: unknown part(s) {unknown}; valid: {list(PARTS)}")
    # With --tasks the runs' results are not needed: references can be computed while the
    # runs still train (only their config is read).
    runs = {} if FLAGS.tasks else results_lib.load_runs(FLAGS.family_dir)
    configs = sorted(glob.glob(os.path.join(FLAGS.family_dir, "*", "operative_config.gin")))
    if not configs:
      raise FileNotFoundError(f"no <seed>/operative_config.gin under {FLAGS.family_dir}")
    bindings = read_bindings(configs[0])
    for line in FLAGS.gin_bindings:
      parsed = parse_bindings([line])
      if not parsed:
        raise ValueError(f"--gin_bindings: not a binding 'Name.param = value': {line!r}")
      bindings.update(parsed)
    family = envs.get_task_family(bindings["MetaTrainingRun.family"])
    sac_kwargs = {k: bindings[f"create_sac_agent.{k}"] for k in SAC_KEYS
                  if f"create_sac_agent.{k}" in bindings}
    # The evaluation protocol's N (runs made before it: adapt_ood.adapt_data_steps).
    data_steps = int(bindings.get("EvalProtocol.adapt_steps",
                                  bindings.get("adapt_ood.adapt_data_steps", 400)))
    updates = int(bindings["adapt_ood.num_epochs"] * bindings["adapt_ood.steps_per_epoch"]
                  * bindings["adapt_ood.updates_per_step"])
    batch_size = int(bindings.get("adapt_ood.batch_size", 256))
    checkpoints = sorted(int(s) for s in FLAGS.oracle_steps)
    if FLAGS.tasks:
      indices = sorted(int(i) for i in FLAGS.tasks)
    else:
      indices = sorted({int(i) for r in runs.values() for i, e in r["test_tasks"].items()
                        if "mier" in e})
    for i in indices:
      if not 0 <= i < len(family.test_tasks):
        raise ValueError(f"test task {i} out of range: {family.name} has "
                         f"{len(family.test_tasks)} test tasks")
    out_dir = os.path.join(FLAGS.family_dir, "references")
    for i in indices:
      task = family.test_tasks[i]
      path = os.path.join(out_dir, f"task_{i}.json")
      entry = files.read_json(path) if os.path.exists(path) else {}
      new = {}
      if "standing_still" in FLAGS.only and "standing_still" not in entry:
        new["standing_still"] = references.standing_still(family, task, seed=FLAGS.seed)
      same = entry.get("oracle_same_data", {})
      if "same_data" in FLAGS.only and (same.get("data_steps"), same.get("updates")) != (
          data_steps, updates):
        new["oracle_same_data"] = references.oracle_same_data(
            family, task, data_steps, updates, seed=FLAGS.seed, batch_size=batch_size,
            sac_kwargs=sac_kwargs)
      long = entry.get("oracle_long", {})
      if "long" in FLAGS.only and sorted(map(int, long.get("returns", {}))) != checkpoints:
        new["oracle_long"] = references.oracle_long(
            family, task, checkpoints, seed=FLAGS.seed, sac_kwargs=sac_kwargs)
      # Read again before writing: another invocation (say --only=long beside
      # --only=same_data) may have added its part meanwhile; only this one's parts change.
      entry = files.read_json(path) if os.path.exists(path) else {}
      entry.update(index=i, task=family.describe_task(task), family=family.name,
                   seed=FLAGS.seed, sac=sac_kwargs, **new)
      files.atomic_write_json(path, entry)
      print(json.dumps({k: entry.get(k) for k in
                        ("index", "task", "standing_still", "oracle_same_data",
                         "oracle_long")}), flush=True)


if __name__ == "__main__":
  app.run(main)
