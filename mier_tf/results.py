"""Results files: a run's eval/results.json (read, and written atomically), and tables of
MIER against MIER-wR over seeds made from them.

eval/results.json holds the run's family, env_steps, identification score, training-task
MIER-wR return and standing still, and per test task ("0", "1", ...) its description,
standing still, MIER-wR return, and (once Algorithm 2 ran on it) MIER's return, curve and
relabeling error. Meta-training writes the first part; each relabeled task adds its own.

A family's runs sit in one folder, one sub-folder per seed (as `scripts/save_run.py` writes
them, or run directories themselves). `comparison` lines them up per relabeled test task;
`markdown` renders that as the tables of docs/RESULTS.md.
"""
import glob
import json
import os
from typing import Dict, List, Optional

import numpy as np

from mier_tf import files


def results_path(root_dir: str) -> str:
  """A run's results file."""
  return os.path.join(root_dir, "eval", "results.json")


def read_results(root_dir: str) -> dict:
  """eval/results.json, or an empty skeleton if there is none yet."""
  path = results_path(root_dir)
  if not os.path.exists(path):
    return {"test_tasks": {}}
  with open(path) as f:
    return json.load(f)


def write_results_file(root_dir: str, results: dict) -> None:
  """Replaces eval/results.json whole (a kill leaves the old file or the new one)."""
  files.atomic_write_json(results_path(root_dir), results)


def load_runs(family_dir: str) -> Dict[str, dict]:
  """seed folder name -> its results.json, for every sub-folder of family_dir that has one."""
  runs = {}
  for path in sorted(glob.glob(os.path.join(family_dir, "*", "eval", "results.json"))):
    with open(path) as f:
      runs[os.path.basename(os.path.dirname(os.path.dirname(path)))] = json.load(f)
  if not runs:
    raise FileNotFoundError(f"no <seed>/eval/results.json under {family_dir}")
  return runs


def load_references(family_dir: str) -> Dict[int, dict]:
  """test task index -> its references (FAMILY_DIR/references/task_<i>.json, written by
  `scripts/references.py`); empty if there are none."""
  refs = {}
  for path in glob.glob(os.path.join(family_dir, "references", "task_*.json")):
    entry = files.read_json(path)
    refs[int(entry["index"])] = entry
  return refs


def comparison(runs: Dict[str, dict], references: Optional[Dict[int, dict]] = None) -> dict:
  """Per relabeled test task and per seed: standing still, MIER-wR, MIER (and the oracles).

  Returns {"tasks": [{"index", "task", "standing_still", "mier_wr": [per seed],
  "mier": [per seed], "oracle_same_data", "oracle_long", "oracle_long_steps"}], "seeds": [...],
  "per_seed": [{"seed", "mier_wr", "mier", "wins", "tasks", "identification_r2",
  "env_steps"}]}; a task counts only if every seed relabeled it. The oracle entries are the
  greedy return of SAC from scratch given MIER's data, and at its last checkpoint of the long
  run (None where `references` has none).
  """
  references = references or {}
  seeds = sorted(runs)
  common = set.intersection(*({i for i, e in r["test_tasks"].items() if "mier" in e}
                              for r in runs.values()))
  indices = sorted(common, key=int)
  tasks = []
  for i in indices:
    entries = [runs[s]["test_tasks"][i] for s in seeds]
    tasks.append({"index": int(i), "task": entries[0]["task"],
                  "standing_still": float(np.mean([e["standing_still"] for e in entries])),
                  "mier_wr": [e["mier_wr"] for e in entries],
                  "mier": [e["mier"] for e in entries]})
    ref = references.get(int(i), {})
    tasks[-1]["oracle_same_data"] = ref.get("oracle_same_data", {}).get("greedy_return")
    returns = ref.get("oracle_long", {}).get("returns", {})
    last = max(returns, key=int) if returns else None
    tasks[-1]["oracle_long"] = returns[last] if last else None
    tasks[-1]["oracle_long_steps"] = int(last) if last else None
  per_seed = []
  for k, seed in enumerate(seeds):
    wr = np.array([t["mier_wr"][k] for t in tasks])
    mier = np.array([t["mier"][k] for t in tasks])
    per_seed.append({"seed": seed, "mier_wr": float(wr.mean()) if tasks else None,
                     "mier": float(mier.mean()) if tasks else None,
                     "wins": int((mier > wr).sum()), "tasks": len(tasks),
                     "identification_r2": runs[seed].get("identification", {}).get("r2"),
                     "identification": runs[seed].get("identification", {}),
                     "env_steps": runs[seed].get("env_steps")})
    every = [e for e in runs[seed]["test_tasks"].values() if "mier_wr" in e]
    per_seed[-1].update(  # every evaluated test task, relabeled or not
        all_tasks=len(every),
        all_mier_wr=float(np.mean([e["mier_wr"] for e in every])) if every else None,
        all_standing_still=float(np.mean([e["standing_still"] for e in every
                                          if "standing_still" in e])) if every else None)
  return {"tasks": tasks, "seeds": seeds, "per_seed": per_seed}


def _mean_std(values: List[float]) -> str:
  values = np.asarray(values, float)
  return f"{values.mean():.1f}" if len(values) == 1 else \
      f"{values.mean():.1f} ± {values.std():.1f}"


def _oracle_cells(tasks: List[dict]) -> tuple:
  """Column headers and per-task cells of the oracles present in any task."""
  headers, columns = [], []
  if any(t.get("oracle_same_data") is not None for t in tasks):
    headers.append("oracle, MIER's data")
    columns.append([t.get("oracle_same_data") for t in tasks])
  steps = {t.get("oracle_long_steps") for t in tasks} - {None}
  if steps:
    headers.append("oracle, " + "/".join(f"{s // 1000}k" if s % 1000 == 0 else f"{s:,}"
                                         for s in sorted(steps)) + " steps")
    columns.append([t.get("oracle_long") for t in tasks])
  return headers, columns


def markdown(table: dict) -> str:
  """The per-task table (mean ± std over seeds) and the per-seed summary, in markdown.

  Oracle columns appear when references were given; a task without one shows "–", and the
  mean row then averages the oracle over the tasks that have it (k of n).
  """
  tasks = table["tasks"]
  if not tasks:  # meta-trained and evaluated, not yet relabeled (a campaign's run, say)
    lines = ["No test task went through Algorithm 2 yet: MIER-wR over every test task.", "",
             "| seed | env steps | identification R² | test tasks | standing still | MIER-wR |",
             "| --- | --- | --- | --- | --- | --- |"]
    for s in table["per_seed"]:
      r2 = "–" if s["identification_r2"] is None else f"{s['identification_r2']:.3f}"
      fmt = lambda v: "–" if v is None else f"{v:.1f}"
      lines.append(f"| {s['seed']} | {s['env_steps']:,} | {r2} | {s['all_tasks']} | "
                   f"{fmt(s['all_standing_still'])} | {fmt(s['all_mier_wr'])} |")
    return "\n".join(lines) + "\n"
  headers, columns = _oracle_cells(tasks)
  lines = ["| test task | standing still | MIER-wR | MIER | MIER − MIER-wR |"
           + "".join(f" {h} |" for h in headers),
           "| --- | --- | --- | --- | --- |" + " --- |" * len(headers)]
  for k, t in enumerate(tasks):
    gain = np.array(t["mier"]) - np.array(t["mier_wr"])
    oracles = "".join(" – |" if c[k] is None else f" {c[k]:.1f} |" for c in columns)
    lines.append(f"| {t['index']} ({t['task']}) | {t['standing_still']:.1f} | "
                 f"{_mean_std(t['mier_wr'])} | {_mean_std(t['mier'])} | {_mean_std(gain)} |"
                 + oracles)
  wr = np.array([t["mier_wr"] for t in tasks])  # [tasks, seeds]
  mier = np.array([t["mier"] for t in tasks])
  still = np.mean([t["standing_still"] for t in tasks])
  oracle_means = ""
  for column in columns:
    present = [v for v in column if v is not None]
    note = "" if len(present) == len(column) else f" ({len(present)} of {len(column)})"
    oracle_means += f" {np.mean(present):.1f}{note} |"
  lines.append(f"| **mean** | {still:.1f} | {_mean_std(wr.mean(0))} | {_mean_std(mier.mean(0))} "
               f"| {_mean_std((mier - wr).mean(0))} |" + oracle_means)
  lines += ["", "| seed | env steps | identification R² | MIER-wR | MIER | tasks where MIER > MIER-wR |",
            "| --- | --- | --- | --- | --- | --- |"]
  for s in table["per_seed"]:
    r2 = "–" if s["identification_r2"] is None else f"{s['identification_r2']:.3f}"
    lines.append(f"| {s['seed']} | {s['env_steps']:,} | {r2} | {s['mier_wr']:.1f} | "
                 f"{s['mier']:.1f} | {s['wins']} of {s['tasks']} |")
  blocks = [s for s in table["per_seed"] if "nll_reward_before" in s.get("identification", {})]
  if blocks:  # the identification issue's per-block NLLs, at the last evaluation
    lines += ["", "| seed | identification R² | spread ratio | state NLL, prior → adapted "
              "| reward NLL, prior → adapted |", "| --- | --- | --- | --- | --- |"]
    for s in blocks:
      i = s["identification"]
      lines.append(f"| {s['seed']} | {i['r2']:.3f} | {i['spread_ratio']:.1f} | "
                   f"{i['nll_state_before']:.1f} → {i['nll_state_after']:.1f} | "
                   f"{i['nll_reward_before']:.2f} → {i['nll_reward_after']:.2f} |")
  return "\n".join(lines) + "\n"
