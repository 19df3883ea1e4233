"""Results files: a run's eval/results.json (read, and written atomically), and tables of
MIER against MIER-wR over seeds made from them.

eval/results.json holds the run's family, env_steps, identification score, training-task
MIER-wR return and standing still, and per test task ("0", "1", ...) its description,
standing still, MIER-wR return, and (once Algorithm 2 ran on it) MIER's return, curve and
relabeling error. Meta-training writes the first part; each relabeled task adds its own.

A family's runs sit in one folder, one sub-folder per seed (as `scripts/save_run.py` writes
them, or run directories themselves). `comparison` lines them up per relabeled test task;
`markdown` renders that as the tables of docs/RESULTS.md.

A campaign's run also evaluates milestone checkpoints along meta-training; its saved seed
folder keeps each one's results in <seed>/milestones/step_<env steps>/eval/results.json.
`load_budget` reads them with the end, `budget` lines up MIER against MIER-wR as the budget
grows and `budget_markdown` renders it.
"""
import glob
import json
import os
import re
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


MILESTONES = "milestones"


def load_budget(family_dir: str) -> Dict[str, Dict[int, dict]]:
  """seed folder name -> {env steps: results.json} of every evaluated checkpoint of the seed:
  its milestones (<seed>/milestones/step_<N>/eval/results.json) and its end, where it has one
  (a run still training is saved with its evaluated milestones alone: `plotting.save_run`).

  A milestone's evaluation (Algorithm 2 alone) does not roll out standing still: a task's
  standing still is the end's, on the same task and episodes (same protocol), as it does
  not depend on the checkpoint; before the end, the task's reference (references/, one
  zero-action episode of the same task), marked "standing_still_from": "reference".
  """
  ends = {os.path.basename(os.path.dirname(os.path.dirname(p))): files.read_json(p)
          for p in glob.glob(os.path.join(family_dir, "*", "eval", "results.json"))}
  seeds = set(ends) | {os.path.relpath(p, family_dir).split(os.sep)[0] for p in glob.glob(
      os.path.join(family_dir, "*", MILESTONES, "step_*", "eval", "results.json"))}
  if not seeds:
    raise FileNotFoundError(f"no <seed>/eval/results.json nor <seed>/{MILESTONES}/step_<N>/"
                            f"eval/results.json under {family_dir}")
  references = load_references(family_dir)
  budget_runs: Dict[str, Dict[int, dict]] = {}
  for seed in sorted(seeds):
    end = ends.get(seed)
    checkpoints = {} if end is None else {int(end.get("env_steps", 0)): end}
    for path in glob.glob(os.path.join(family_dir, seed, MILESTONES, "step_*", "eval",
                                       "results.json")):
      step = os.path.basename(os.path.dirname(os.path.dirname(path)))[len("step_"):]
      result = files.read_json(path)
      for i, entry in result.get("test_tasks", {}).items():
        if "standing_still" in entry:
          continue
        at_end = (end or {}).get("test_tasks", {}).get(i, {})
        if "standing_still" in at_end and entry.get("protocol") == at_end.get("protocol"):
          entry["standing_still"] = at_end["standing_still"]
        elif end is None and "standing_still" in references.get(int(i), {}):
          entry["standing_still"] = _reference(references, int(i), entry["task"])[
              "standing_still"]
          entry["standing_still_from"] = "reference"
      result["end"] = False
      checkpoints[int(step)] = result
    if end is not None:
      end["end"] = True
    budget_runs[seed] = dict(sorted(checkpoints.items()))
  return budget_runs


def budget(budget_runs: Dict[str, Dict[int, dict]],
           references: Optional[Dict[int, dict]] = None) -> dict:
  """MIER against MIER-wR at each evaluated checkpoint of each seed.

  Returns {"rows": [{"seed", "env_steps", "tasks", "standing_still", "mier_wr", "mier",
  "gain", "wins", "verdicts"}] (means over the checkpoint's relabeled test tasks; wins: tasks
  where MIER > MIER-wR, verdicts: `paired_verdicts`), "steps": [{"env_steps",
  "seeds", "standing_still", "mier_wr", "mier", "gain": per-seed lists}], "oracle_long":
  mean of the long oracle over the relabeled tasks that have one, or None}. Checkpoints
  where no task went through Algorithm 2 yet are left out.
  """
  references = references or {}
  rows, relabeled = [], set()
  for seed, checkpoints in sorted(budget_runs.items()):
    for env_steps, result in checkpoints.items():
      tasks = {i: e for i, e in result.get("test_tasks", {}).items() if "mier" in e}
      if not tasks:
        continue
      relabeled |= {(int(i), e["task"]) for i, e in tasks.items()}
      wr = np.array([e["mier_wr"] for e in tasks.values()])
      mier = np.array([e["mier"] for e in tasks.values()])
      rows.append({"seed": seed, "env_steps": env_steps, "tasks": len(tasks),
                   "context_steps": context_steps(tasks.values()),
                   "standing_still": _mean_or_none([e.get("standing_still")
                                                    for e in tasks.values()]),
                   "mier_wr": float(wr.mean()), "mier": float(mier.mean()),
                   "gain": float((mier - wr).mean()), "wins": int((mier > wr).sum()),
                   "verdicts": paired_verdicts(tasks.values())})
  finished = {seed for seed, checkpoints in budget_runs.items()
              if any(r.get("end", True) for r in checkpoints.values())}
  for row in rows:
    row["training"] = row["seed"] not in finished
  steps = []
  # Seeds are averaged only where Algorithm 2 took the same context steps (a campaign's
  # bindings can change between seeds; a seed whose checkpoints are gone keeps its own).
  for env_steps, context in sorted({(r["env_steps"], r["context_steps"]) for r in rows},
                                   key=lambda k: (k[0], -1 if k[1] is None else k[1])):
    at = [r for r in rows if (r["env_steps"], r["context_steps"]) == (env_steps, context)]
    steps.append({"env_steps": env_steps, "context_steps": context,
                  "seeds": [r["seed"] for r in at],
                  **{k: [r[k] for r in at] for k in ("standing_still", "mier_wr", "mier",
                                                     "gain", "wins", "tasks",
                                                     "verdicts")}})
  longs = []
  for i, task in sorted(relabeled):
    value, _ = _long_oracle(_reference(references, i, task))
    if value is not None:
      longs.append(value)
  return {"rows": rows, "steps": steps,
          "oracle_long": float(np.mean(longs)) if longs else None,
          "oracle_tasks": len(longs), "relabeled_tasks": len(relabeled)}


def _mean_or_none(values) -> Optional[float]:
  """The mean of the values that are not None; None if none is."""
  values = [v for v in values if v is not None]
  return float(np.mean(values)) if values else None


def _still_cell(values) -> str:
  """A table's standing still cell: the mean of the seeds that have one, – if none has."""
  mean = _mean_or_none(values)
  return "–" if mean is None else f"{mean:.1f}"


def paired_verdicts(entries) -> Optional[List[int]]:
  """[won, tie, lost] by the paired verdict of each task (MIER − MIER-wR beyond twice its
  standard error: results.json's "difference"), None if a task has none (results made before
  the protocol paired them)."""
  verdicts = [e.get("difference", {}).get("verdict") for e in entries]
  if not verdicts or None in verdicts:
    return None
  return [verdicts.count("won"), verdicts.count("tie"), verdicts.count("lost")]


def _won_column(rows: List[dict]):
  """The tables' won column: its header and a cell function (verdict lists, wins, tasks).
  Tasks won, tied and lost by the paired verdicts where every row has them (a task is won
  only beyond twice its paired standard error), else tasks where MIER > MIER-wR."""
  if all(r["verdicts"] is not None for r in rows):
    return "won / tie / lost (paired)", lambda counts, wins, tasks: " / ".join(
        str(sum(c[k] for c in counts)) for k in range(3))
  return "tasks where MIER > MIER-wR", lambda counts, wins, tasks: f"{wins} of {tasks}"


def context_steps(entries) -> Optional[int]:
  """The context steps Algorithm 2 took on these relabeled tasks (the most of any), None
  where no task recorded its adaptation."""
  taken = [e["adaptation"]["context_steps"] for e in entries
           if "context_steps" in e.get("adaptation", {})]
  return int(max(taken)) if taken else None


def budget_markdown(table: dict) -> str:
  """One row per evaluated checkpoint (mean ± std over the seeds evaluated there), then one
  per seed and checkpoint. Where seeds were evaluated with different context steps, a column
  names them and each checkpoint has a row per count."""
  mixed = len({r["context_steps"] for r in table["rows"]}) > 1
  context = lambda x: (" | –" if x["context_steps"] is None
                       else f" | {x['context_steps']}") if mixed else ""
  head = " | context steps" if mixed else ""
  won, cell = _won_column(table["rows"])
  lines = [f"| env steps{head} | seeds | standing still | MIER-wR | MIER | MIER − MIER-wR "
           f"| {won} |", "| --- " * (7 + mixed) + "|"]
  for s in table["steps"]:
    count = cell(s["verdicts"], sum(s["wins"]), sum(s["tasks"]))
    lines.append(f"| {s['env_steps']:,}{context(s)} | {len(s['seeds'])} | "
                 f"{_still_cell(s['standing_still'])} "
                 f"| {_mean_std(s['mier_wr'])} | {_mean_std(s['mier'])} | {_mean_std(s['gain'])} "
                 f"| {count} |")
  if table["oracle_long"] is not None:
    lines += ["", f"Oracle (SAC from scratch, 50k steps on each task), mean over "
              f"{table['oracle_tasks']} of the {table['relabeled_tasks']} relabeled tasks: "
              f"{table['oracle_long']:.1f}."]
  if any(r["training"] for r in table["rows"]):
    lines += ["", "A seed marked (training) is still meta-training: its evaluated milestones "
              "so far, and the standing still of the references (one zero-action episode per "
              "task) until its end's own."]
  lines += ["", f"| seed | env steps{head} | tasks | MIER-wR | MIER | MIER − MIER-wR "
            f"| {won} |", "| --- " * (7 + mixed) + "|"]
  for r in table["rows"]:
    count = cell([r["verdicts"]], r["wins"], r["tasks"])
    lines.append(f"| {r['seed']}{' (training)' * r['training']} | "
                 f"{r['env_steps']:,}{context(r)} | {r['tasks']} | "
                 f"{r['mier_wr']:.1f} | "
                 f"{r['mier']:.1f} | {r['gain']:.1f} | {count} |")
  return "\n".join(lines) + "\n"


HEADLINE_BEGIN = "<!-- headline: written by `make results` from docs/results/*/budget.md -->"
HEADLINE_END = "<!-- /headline -->"


def headline_markdown(tables: Dict[str, dict]) -> str:
  """The campaign's headline: per family (name -> its `budget` table), MIER against MIER-wR
  at the evaluated checkpoint nearest half its budget (35-65% of its last) and at its last,
  with the references; a family none of whose seeds has finished, at its last milestone
  alone, marked (training). Where seeds were evaluated there with different context steps,
  the row of the most seeds."""
  rows = []
  for name, table in sorted(tables.items()):
    by_steps = {}
    for s in table["steps"]:
      if len(s["seeds"]) > len(by_steps.get(s["env_steps"], {"seeds": []})["seeds"]):
        by_steps[s["env_steps"]] = s
    if not by_steps:
      continue
    end = max(by_steps)
    halves = [k for k in by_steps if 0.35 * end <= k <= 0.65 * end]
    training = all(r["training"] for r in table["rows"])
    if training:
      halves = []  # no seed has reached its budget: its last milestone alone
    chosen = ([min(halves, key=lambda k: abs(k - end / 2))] if halves else []) + [end]
    rows += [(name, by_steps[k], table, training) for k in chosen]
  if not rows:
    return ""
  won, cell = _won_column([r for _, _, t, _ in rows for r in t["rows"]])
  lines = [f"| family | env steps | seeds | standing still | MIER-wR | MIER | MIER − MIER-wR "
           f"| {won} | SAC from scratch, 50k steps |", "| --- " * 9 + "|"]
  for name, s, table, training in rows:
    oracle = "–" if table["oracle_long"] is None else (
        f"{table['oracle_long']:.1f}" + (
            "" if table["oracle_tasks"] == table["relabeled_tasks"]
            else f" ({table['oracle_tasks']} of {table['relabeled_tasks']} tasks)"))
    lines.append(f"| {name} | {s['env_steps']:,}{' (training)' * training} | "
                 f"{len(s['seeds'])} | "
                 f"{_still_cell(s['standing_still'])} | {_mean_std(s['mier_wr'])} | "
                 f"{_mean_std(s['mier'])} | {_mean_std(s['gain'])} | "
                 f"{cell(s['verdicts'], sum(s['wins']), sum(s['tasks']))} | {oracle} |")
  return "\n".join(lines) + "\n"


def with_headline(text: str, headline: str) -> str:
  """`text` (docs/RESULTS.md) with the table between HEADLINE_BEGIN and HEADLINE_END
  replaced by `headline`."""
  begin, end = text.find(HEADLINE_BEGIN), text.find(HEADLINE_END)
  if begin < 0 or end < begin:
    raise ValueError(f"no {HEADLINE_BEGIN!r} ... {HEADLINE_END!r} block to write the "
                     "headline table into")
  return text[:begin + len(HEADLINE_BEGIN)] + "\n" + headline + text[end:]


def algorithm2_markdown(budget_runs: Dict[str, Dict[int, dict]]) -> Optional[str]:
  """How Algorithm 2 went on every relabeled task of every evaluated checkpoint: the model's
  held-out NLL (meta-trained inner loop → context steps → whole-model steps, and the steps
  taken), the relabeled rewards and next states against the simulator ("real" where
  relabeling kept the stored next states: reward-only families), the guard's choice and
  MIER − MIER-wR; a summary row per seed and checkpoint first. None if no task recorded its
  adaptation (results made before Algorithm 2 recorded it)."""
  fmt = lambda v, f="{:.2f}": "–" if v is None else f.format(v)
  summary = ["| seed | env steps | tasks | reward corr, min / mean | next-state RMSE, mean "
             "(max) | whole-model steps | guard kept the relabeled policy | MIER − MIER-wR |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
  rows = ["| seed | env steps | test task | held-out NLL: meta-trained → context → model "
          "(model steps) | reward corr | reward bias | reward MAE | next-state RMSE | guard "
          "| MIER − MIER-wR |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for seed, checkpoints in sorted(budget_runs.items()):
    for env_steps, result in checkpoints.items():
      tasks = sorted(((int(i), e) for i, e in result.get("test_tasks", {}).items()
                      if "mier" in e and "adaptation" in e), key=lambda t: t[0])
      if not tasks:
        continue
      corr, rmse, steps, kept, reward_only = [], [], [], 0, 0
      for i, e in tasks:
        a, err, guard = e["adaptation"], e.get("relabel_error", {}), e.get("guard")
        # Reward-only relabeling keeps the stored next states: the simulator's own, so their
        # error (zero) says nothing of the model.
        real = e.get("settings", {}).get("relabel_mode") == "reward_only"
        reward_only += real
        corr.append(err.get("reward_corr"))
        rmse.append(None if real else err.get("next_state_rmse"))
        rmse_cell = "real" if real else fmt(err.get("next_state_rmse"))
        steps.append(int(a["model_steps"]))
        kept += bool(guard) and guard["chosen"] == "relabeled"
        nll = (f"{a['heldout_nll_meta']:.1f} → {a['heldout_nll_context']:.1f} → "
               f"{a['heldout_nll_model']:.2f} ({int(a['model_steps'])})")
        rows.append(f"| {seed} | {env_steps:,} | {i} ({e['task']}) | {nll} | "
                    f"{fmt(err.get('reward_corr'))} | {fmt(err.get('reward_bias'))} | "
                    f"{fmt(err.get('reward_mae'))} | {rmse_cell} | "
                    f"{guard['chosen'] if guard else 'off'} | {e['mier'] - e['mier_wr']:.1f} |")
      known = lambda v: [x for x in v if x is not None]
      c, r = known(corr), known(rmse)
      gain = np.mean([e["mier"] - e["mier_wr"] for _, e in tasks])
      summary.append(
          f"| {seed} | {env_steps:,} | {len(tasks)} | "
          + (f"{min(c):.2f} / {np.mean(c):.2f}" if c else "–") + " | "
          + (f"{np.mean(r):.2f} ({max(r):.2f})" if r else
             "real" if reward_only == len(tasks) else "–") + " | "
          + (f"{min(steps)}" if min(steps) == max(steps) else f"{min(steps)}–{max(steps)}")
          + f" | {kept} of {len(tasks)} | {gain:.1f} |")
  if len(summary) == 2:
    return None
  return "\n".join(summary + [""] + rows) + "\n"


STUDY_SEED_DIR = re.compile(r"^(?P<config>.+)_s(?P<seed>\d+)$")


def load_study_seeds(study_dir: str) -> Dict[str, Dict[int, list]]:
  """config -> meta-training seed -> the rows of `scripts/relabel_study.py` (study.json) for
  the studies in STUDY_DIR named <config>_s<seed> (one per meta-training run's end)."""
  studies: Dict[str, Dict[int, list]] = {}
  for path in sorted(glob.glob(os.path.join(study_dir, "*", "study.json"))):
    match = STUDY_SEED_DIR.match(os.path.basename(os.path.dirname(path)))
    if match:
      studies.setdefault(match["config"], {})[int(match["seed"])] = files.read_json(path)
  return studies


def study_seeds_markdown(seeds: Dict[int, list]) -> str:
  """Algorithm 2's variants over meta-training seeds (issue #22's table per family): per
  variant, MIER − MIER-wR averaged over the tasks of each seed, the mean and standard
  deviation of those seed means (a variant run with several Algorithm 2 seeds is named with
  them, and its seed means are over them too), the paired verdicts of every (seed, task),
  the relabeled rewards' correlation (min–max), the next-state RMSE and held-out NLL
  (means), the steps taken and the seconds per task (wall clock, and CPU seconds where
  recorded). Variants ordered by their mean over seeds, best first."""
  order = sorted(seeds)
  variants = sorted({r["variant"] for rows in seeds.values() for r in rows})
  known = lambda values: [v for v in values if v is not None]
  lines = ["| variant | MIER − MIER-wR, mean over tasks (and Algorithm 2 seeds): "
           + " / ".join(f"seed {s}" for s in order)
           + " | over seeds: mean ± sample sd | won / tie / lost | reward corr, min–max | "
           "next-state RMSE, mean | held-out NLL after, mean | whole-model steps | s per task (CPU s) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  table = []
  for variant in variants:
    per_seed, group = [], []
    for seed in order:
      rows = [r for r in seeds[seed] if r["variant"] == variant]
      group += rows
      per_seed.append((np.mean([r["difference"] for r in rows]), len(rows)) if rows else None)
    means = [m for m, _ in filter(None, per_seed)]
    full = max(n for _, n in filter(None, per_seed))
    cells = ["–" if p is None else f"{p[0]:+.1f}" + ("" if p[1] == full else f" ({p[1]} tasks)")
             for p in per_seed]
    verdicts = [r["verdict"] for r in group]
    corr = known(r.get("reward_corr") for r in group)
    rmse = known(r.get("next_state_rmse") for r in group)
    nll = known(r.get("nll_model") for r in group)
    steps = known(r.get("model_steps") for r in group)
    secs = known(r.get("seconds") for r in group)
    cpu = known(r.get("cpu_seconds") for r in group)
    spread = f" ± {np.std(means, ddof=1):.1f}" if len(means) > 1 else ""
    algorithm2_seeds = sorted({int(r.get("seed", 0)) for r in group})
    name = variant if algorithm2_seeds == [0] else (
        f"{variant} (Algorithm 2 seeds {', '.join(map(str, algorithm2_seeds))})")
    table.append((-np.mean(means), (
        f"| {name} | {' / '.join(cells)} | {np.mean(means):+.1f}{spread} | "
        f"{verdicts.count('won')} / {verdicts.count('tie')} / {verdicts.count('lost')} | "
        + (f"{min(corr):.2f}–{max(corr):.2f}" if corr else "–") + " | "
        + (f"{np.mean(rmse):.2f}" if rmse else "–") + " | "
        + (f"{np.mean(nll):.2f}" if nll else "–") + " | "
        + ((f"{min(steps):.0f}" if min(steps) == max(steps) else
            f"{min(steps):.0f}–{max(steps):.0f}") if steps else "–") + " | "
        + (f"{np.mean(secs):.0f}" if secs else "–")
        + (f" ({np.mean(cpu):.0f})" if cpu else "") + " |")))
  return "\n".join(lines + [line for _, line in sorted(table)]) + "\n"


def load_training_tasks(family_dir: str) -> Dict[str, Dict[int, dict]]:
  """seed -> env steps -> the MIER-wR report of that checkpoint on training tasks, with the
  reward parts (`scripts/evaluate.py --split=train --reward_parts --json`), saved as
  FAMILY_DIR/<seed>/training_tasks/step_<env steps>.json."""
  reports: Dict[str, Dict[int, dict]] = {}
  for path in sorted(glob.glob(os.path.join(family_dir, "*", "training_tasks", "step_*.json"))):
    steps = os.path.basename(path)[len("step_"):-len(".json")]
    if steps.isdigit():
      seed = os.path.basename(os.path.dirname(os.path.dirname(path)))
      reports.setdefault(seed, {})[int(steps)] = files.read_json(path)
  return reports


def training_tasks_markdown(reports: Dict[str, Dict[int, dict]]) -> Optional[str]:
  """Does the meta-trained policy do the task where it was trained? Per seed and checkpoint,
  on the training tasks evaluated: MIER-wR and standing still (means over the tasks), the
  tasks where MIER-wR is above standing still, and where its return comes from (the reward
  parts, means over the tasks of each task's per-episode means). None without reports."""
  if not reports:
    return None
  parts = ["forward", "ctrl", "contact", "survive"]
  lines = ["| seed | env steps | training tasks | MIER-wR | standing still | above standing "
           "still | " + " | ".join(parts) + " | episode length |",
           "| --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in parts) + " | --- |"]
  for seed, checkpoints in sorted(reports.items()):
    for steps, report in sorted(checkpoints.items()):
      tasks = report["tasks"]
      mean = lambda key, part=None: float(np.mean(
          [t["reward_parts"][key] if part else t[key] for t in tasks]))
      above = sum(t["return"] > t["standing_still"] for t in tasks)
      has_parts = all("reward_parts" in t for t in tasks)
      cells = [f"{mean(p, True):.1f}" if has_parts and all(p in t["reward_parts"] for t in tasks)
               else "–" for p in parts]
      length = f"{mean('length', True):.0f}" if has_parts else "–"
      lines.append(f"| {seed} | {steps:,} | {', '.join(str(t['index']) for t in tasks)} | "
                   f"{mean('return'):.1f} | {mean('standing_still'):.1f} | {above} of "
                   f"{len(tasks)} | " + " | ".join(cells) + f" | {length} |")
  return "\n".join(lines) + "\n"


OWN_DATA_STUDY = re.compile(r"^(?P<config>.+)_s(?P<seed>\d+)_(?P<k>\d+)k$")
OWN_DATA = "real_only"


def load_own_data(study_dir: str) -> List[dict]:
  """Claim 3's pairs in the studies of STUDY_DIR named <config>_s<seed>_<k>k (a campaign
  checkpoint's, as `scripts/campaign.py` writes them): a variant V and V+real_only (`base`
  and `real_only`), the same Algorithm 2 with every SAC batch from the task's own data, on the
  tasks both ran under Algorithm 2 seed 0. One dict per pair: config, seed, env_steps, the
  variant, its bindings (the study's --gin_bindings, then V's) and its (relabeled, own data)
  rows per task."""
  pairs = []
  for path in sorted(glob.glob(os.path.join(study_dir, "*", "study.json"))):
    name = os.path.basename(os.path.dirname(path))
    match = OWN_DATA_STUDY.match(name)
    if not match:
      continue
    rows = [r for r in files.read_json(path) if int(r.get("seed", 0)) == 0]
    config_path = os.path.join(os.path.dirname(path), "study_config.json")
    config = files.read_json(config_path) if os.path.exists(config_path) else {}
    variants = {r["variant"] for r in rows}
    for variant in sorted(variants):
      own = OWN_DATA if variant == "base" else f"{variant}+{OWN_DATA}"
      if own not in variants:
        continue
      relabeled = {r["task"]: r for r in rows if r["variant"] == variant}
      own_rows = {r["task"]: r for r in rows if r["variant"] == own}
      tasks = sorted(set(relabeled) & set(own_rows))
      if tasks:
        pairs.append({"config": match["config"], "seed": int(match["seed"]),
                      "env_steps": int(match["k"]) * 1000, "variant": variant,
                      "bindings": (config.get("gin_bindings", []) +
                                   config.get("variants", {}).get(variant, [])),
                      "tasks": [(relabeled[t], own_rows[t]) for t in tasks]})
  return pairs


def _short_binding(binding: str) -> str:
  return binding.replace("adapt_ood.", "").replace(" ", "")


def own_data_markdown(pairs: List[dict]) -> str:
  """Claim 3 per family: for each seed and checkpoint, MIER-wR, Algorithm 2 on the task's
  own data alone, Algorithm 2 with relabeled data (both with the guard off), their
  differences and the tasks where the relabeled run is ahead; then per checkpoint over the
  seeds, the mean and population sd of the seeds' relabeled − own data. Bindings every row
  of a family shares are named once above its table, the others in its rows."""
  mean = lambda values: float(np.mean(values))
  lines = []
  for config in sorted({p["config"] for p in pairs}):
    group = sorted((p for p in pairs if p["config"] == config),
                   key=lambda p: (p["env_steps"], p["seed"], p["variant"]))
    effective = [dict(b.split("=", 1) for b in map(_short_binding, p["bindings"]))
                 for p in group]
    shared = {k: v for k, v in effective[0].items()
              if all(e.get(k) == v for e in effective)}
    lines += [f"**{config}**" + (" (every row: " + ", ".join(
        f"{k} = {v}" for k, v in sorted(shared.items())) + ")" if shared else ""), "",
              "| seed | samples | Algorithm 2 beyond those | tasks | MIER-wR | own data only | "
              "relabeled | own data − MIER-wR | relabeled − own data | tasks where relabeled "
              "is ahead |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    gains: Dict[int, List[float]] = {}
    ahead_of: Dict[int, List[tuple]] = {}  # env steps -> (tasks ahead, tasks) per seed
    for pair, bindings in zip(group, effective):
      relabeled = [r for r, _ in pair["tasks"]]
      own = [o for _, o in pair["tasks"]]
      mier_wr = mean([r["mier_wr"] for r in relabeled])
      own_mean, relabeled_mean = mean([o["mier"] for o in own]), mean(
          [r["mier"] for r in relabeled])
      ahead = sum(r["mier"] > o["mier"] for r, o in pair["tasks"])
      extra = ", ".join(f"{k} = {v}" for k, v in sorted(bindings.items()) if k not in shared)
      gains.setdefault(pair["env_steps"], []).append(relabeled_mean - own_mean)
      ahead_of.setdefault(pair["env_steps"], []).append((ahead, len(own)))
      lines.append(
          f"| s{pair['seed']} | {pair['env_steps']:,} | {extra or '–'} | "
          f"{', '.join(str(r['task']) for r in relabeled)} | {mier_wr:.1f} | {own_mean:.1f} | "
          f"{relabeled_mean:.1f} | {own_mean - mier_wr:+.1f} | "
          f"**{relabeled_mean - own_mean:+.1f}** | {ahead} of {len(own)} |")
    lines += ["", "| samples | seeds | relabeled − own data, mean ± population sd over seeds "
              "| tasks where relabeled is ahead |", "| --- | --- | --- | --- |"]
    for steps in sorted(gains):
      values = gains[steps]
      ahead, total = (sum(column) for column in zip(*ahead_of[steps]))
      spread = f" ± {np.std(values):.1f}" if len(values) > 1 else ""
      lines.append(f"| {steps:,} | {len(values)} | {mean(values):+.1f}{spread} | "
                   f"{ahead} of {total} |")
    lines.append("")
  return "\n".join(lines)


def load_references(family_dir: str) -> Dict[int, dict]:
  """test task index -> its references (FAMILY_DIR/references/task_<i>.json, written by
  `scripts/references.py`); empty if there are none."""
  refs = {}
  for path in glob.glob(os.path.join(family_dir, "references", "task_*.json")):
    entry = files.read_json(path)
    refs[int(entry["index"])] = entry
  return refs


def _reference(references: Dict[int, dict], index: int, task: str) -> dict:
  """The references of test task `index`, checked to be of the same task (families share
  references between configs whose test tasks are the same)."""
  ref = references.get(index, {})
  if ref.get("task") not in (None, task):
    raise ValueError(f"references/task_{index}.json is of task {ref['task']!r}, but the "
                     f"runs' test task {index} is {task!r}")
  return ref


def _long_oracle(ref: dict) -> tuple:
  """The long oracle's return at its last checkpoint and that checkpoint's steps, or
  (None, None) without one."""
  returns = ref.get("oracle_long", {}).get("returns", {})
  if not returns:
    return None, None
  last = max(returns, key=int)
  return returns[last], int(last)


def comparison(runs: Dict[str, dict], references: Optional[Dict[int, dict]] = None) -> dict:
  """Per relabeled test task and per seed: standing still, MIER-wR, MIER (and the oracles).

  Returns {"tasks": [{"index", "task", "standing_still", "mier_wr": [per seed],
  "mier": [per seed], "oracle_same_data", "oracle_long", "oracle_long_steps"}], "seeds": [...],
  "per_seed": [{"seed", "mier_wr", "mier", "wins", "verdicts", "tasks", "identification_r2",
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
    ref = _reference(references, int(i), entries[0]["task"])
    tasks[-1]["oracle_same_data"] = ref.get("oracle_same_data", {}).get("greedy_return")
    tasks[-1]["oracle_long"], tasks[-1]["oracle_long_steps"] = _long_oracle(ref)
  per_seed = []
  for k, seed in enumerate(seeds):
    wr = np.array([t["mier_wr"][k] for t in tasks])
    mier = np.array([t["mier"][k] for t in tasks])
    per_seed.append({"seed": seed, "mier_wr": float(wr.mean()) if tasks else None,
                     "mier": float(mier.mean()) if tasks else None,
                     "wins": int((mier > wr).sum()), "tasks": len(tasks),
                     "verdicts": paired_verdicts([runs[seed]["test_tasks"][str(t["index"])]
                                                  for t in tasks]),
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
  won, cell = _won_column(table["per_seed"])
  lines += ["", f"| seed | env steps | identification R² | MIER-wR | MIER | {won} |",
            "| --- | --- | --- | --- | --- | --- |"]
  for s in table["per_seed"]:
    r2 = "–" if s["identification_r2"] is None else f"{s['identification_r2']:.3f}"
    count = cell([s["verdicts"]], s["wins"], s["tasks"])
    lines.append(f"| {s['seed']} | {s['env_steps']:,} | {r2} | {s['mier_wr']:.1f} | "
                 f"{s['mier']:.1f} | {count} |")
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
