"""The learning benchmark: how much a CPU buys, in returns (`make bench-learning`).

Two stages, each a function that returns JSON-ready rows:

* `single_task_sac`: one cheetah velocity task (v = 2.75, out of the training range of
  cheetah_vel_hard), SAC through our learner and collector, batch 256, one update per
  environment step (in 200-step chunks), deterministic return at 10k / 20k / 30k steps.
  Settings compared: ours (the release's: target entropy -1, log alpha from 0) against
  TF-Agents' stock SacAgent defaults (target entropy -dim(A)/2 = -3, log alpha from 0).
* `mier_wr_per_cpu_minute`: MIER-wR meta-training on cheetah_vel_hard under a CPU-time
  budget, for the release's SAC schedule (one update on the meta-batch's 10 x 200 rows per
  meta-step) and the CPU schedule (several updates on 10 x 32 rows). The same training tasks
  are evaluated every time and returns are reported above standing still on those tasks.

CPU time is the process's (`time.process_time`, all threads), so a busy machine slows the
wall clock but not the budget; each row also records wall seconds.
"""
import logging
import os
import tempfile
import time
from typing import List, Sequence

import gin
import numpy as np

from mier_tf import cli
from mier_tf import envs
from mier_tf import references
from mier_tf.train import job  # noqa: F401  pylint: disable=unused-import  (its gin configurables)
from mier_tf.train import meta_train

SAC_SETTINGS = {
    "ours": dict(target_entropy=-1.0, initial_log_alpha=0.0),
    "stock_tf_agents": dict(target_entropy=-3.0, initial_log_alpha=0.0),
}

SCHEDULES = {
    "paper": dict(sac_updates_per_step=1, sac_rows_per_task=None),
    "cpu_4x32": dict(sac_updates_per_step=4, sac_rows_per_task=32),
}


def single_task_sac(settings: str, seed: int, checkpoints: Sequence[int] = (10_000, 20_000, 30_000),
                    velocity: float = 2.75, batch_size: int = 256,
                    fc_layers: Sequence[int] = (256, 256)) -> dict:
  """SAC on one cheetah velocity task; deterministic returns at `checkpoints` env steps
  (`mier_tf.references.oracle_long`, the oracle of docs/RESULTS.md)."""
  family = envs.get_task_family("cheetah_vel_hard")
  result = references.oracle_long(
      family, velocity, checkpoints, seed=seed, batch_size=batch_size,
      sac_kwargs=dict(actor_fc_layers=fc_layers, critic_fc_layers=fc_layers,
                      **SAC_SETTINGS[settings]))
  return dict(stage="single_task_sac", settings=settings, seed=seed, velocity=velocity,
              returns=result["returns"], cpu_seconds=result["cpu_seconds"],
              wall_seconds=result["wall_seconds"])


def mier_wr_per_cpu_minute(schedule: str, seed: int, cpu_minutes: float,
                           gin_bindings: Sequence[str] = (), root_dir: str = None) -> dict:
  """MIER-wR on cheetah_vel_hard: returns above standing still against CPU minutes spent."""
  gin.clear_config()
  bindings = [f"MetaTrainingRun.{k} = {v!r}" for k, v in SCHEDULES[schedule].items()]
  bindings += [f"MetaTrainingRun.seed = {seed}"] + list(gin_bindings)
  cli.parse_gin([os.path.join(cli.REPO_GIN_DIR, "cheetah_vel_hard_cpu.gin")], bindings,
                root_dir="unused")
  root_dir = root_dir or tempfile.mkdtemp(prefix=f"bench_{schedule}_s{seed}_")
  run = meta_train.MetaTrainingRun(root_dir)
  cpu, wall = time.process_time(), time.perf_counter()
  run.collect_initial()
  still = {split: v.mean(axis=1) for split, v in run.standing_still().items()}
  curve: List[dict] = []
  while True:
    run.collect_epoch()
    run.refresh_normalizer()
    run.train_epoch()
    run.epoch.assign_add(1)
    spent = (time.process_time() - cpu) / 60.0
    results = run.evaluate()
    point = dict(epoch=int(run.epoch.numpy()), env_steps=int(run.env_steps.numpy()),
                 train_steps=int(run.train_step.numpy()),
                 sac_updates=int(run.agent.train_step_counter.numpy()),
                 cpu_minutes=spent, wall_minutes=(time.perf_counter() - wall) / 60.0,
                 train_return=float(results["train"].mean()),
                 train_above_still=float((results["train"] - still["train"]).mean()),
                 test_return=float(results["test"].mean()),
                 test_above_still=float((results["test"] - still["test"]).mean()),
                 identification_r2=float(run.last_identification.r2))
    curve.append(point)
    logging.info("bench %s seed %d: %s", schedule, seed, point)
    if spent >= cpu_minutes:
      break
  gin.clear_config()
  return dict(stage="mier_wr_per_cpu_minute", schedule=schedule, seed=seed,
              cpu_budget_minutes=cpu_minutes, standing_still_train=float(still["train"].mean()),
              standing_still_test=float(still["test"].mean()), curve=curve)


def plot(rows: List[dict], path: str) -> None:
  """One PNG: single-task returns per setting (left), MIER-wR above still per CPU minute."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  for settings in SAC_SETTINGS:
    runs = [r for r in rows if r["stage"] == "single_task_sac" and r["settings"] == settings]
    if not runs:
      continue
    steps = sorted(int(k) for k in runs[0]["returns"])
    values = np.array([[r["returns"][str(s)] for s in steps] for r in runs])
    left.errorbar(steps, values.mean(0), yerr=values.std(0), marker="o", capsize=3,
                  label=f"{settings} ({len(runs)} seeds)")
  left.set_xlabel("environment steps")
  left.set_ylabel("return (v = 2.75)")
  left.set_title("SAC on one cheetah velocity task")
  left.legend()
  for schedule in SCHEDULES:
    for r in rows:
      if r["stage"] == "mier_wr_per_cpu_minute" and r["schedule"] == schedule:
        x = [p["cpu_minutes"] for p in r["curve"]]
        right.plot(x, [p["train_above_still"] for p in r["curve"]], marker="o",
                   label=f"{schedule} train (seed {r['seed']})")
        right.plot(x, [p["test_above_still"] for p in r["curve"]], marker="x", linestyle="--",
                   label=f"{schedule} test (seed {r['seed']})")
  right.axhline(0.0, color="grey", linewidth=0.8)
  right.set_xlabel("CPU minutes (process time)")
  right.set_ylabel("MIER-wR return above standing still")
  right.set_title("cheetah_vel_hard meta-training")
  right.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
