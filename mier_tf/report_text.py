"""The human summaries the scripts end with: what was measured, against what, which way is
better. (The numbers come from results.json or a script's JSON report; no TensorFlow here.)
"""
import json
import math
import os
import textwrap
from typing import List, Sequence

WIDTH = 100


def _wrap(text: str, indent: str = "  ") -> List[str]:
  # Paths stay whole (copy-pasteable) however long they are.
  return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent + "  ",
                       break_long_words=False, break_on_hyphens=False)


def _returns_note(episodes) -> str:
  return (f"Returns are means of K={episodes} deterministic episodes per task; higher is "
          "better. Standing still (zero actions) starts from the same K states.")


R2 = "1: the context is a linear code of the task, 0: chance"
SPREAD = ("between tasks over within one task; below about 1 the context follows the data, "
          "not the task")
DIFFERENCE = ("Paired on the same start states: difference = MIER - MIER-wR, mean +- "
              "standard error; won or lost only beyond twice the error, else tie.")


def _read_json(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def _mean(values: Sequence[float]) -> float:
  return sum(values) / len(values) if values else float("nan")


def _signed(value: float) -> str:
  return f"{value:+.1f}"


def run_summary(root_dir: str, results: dict, max_tasks: int = 12) -> str:
  """The end of train.py and adapt.py, from a run's eval/results.json."""
  tasks = results.get("test_tasks", {})
  # A milestone checkpoint's results hold only what Algorithm 2 wrote: its tasks say from
  # how many env steps and under which protocol, ROOT/run.json which family.
  family = results.get("family") or _read_json(os.path.join(root_dir, "run.json")).get(
      "family", "?")
  env_steps = results.get("env_steps") or max(
      (int(t.get("mier_env_steps", 0)) for t in tasks.values()), default=0)
  protocol = results.get("protocol") or next(
      (t["protocol"] for t in tasks.values() if "protocol" in t), {})
  lines = [f"Results of {root_dir} ({family}, {env_steps:,} meta-training env steps)"]
  lines += _wrap(_returns_note(protocol.get("episodes", "?")))
  if "train_return_mier_wr" in results:
    lines.append(f"  MIER-wR on training tasks {results['train_return_mier_wr']:.1f} "
                 f"(standing still {results.get('train_standing_still', float('nan')):.1f})")
  wr = [t["mier_wr"] for t in tasks.values() if "mier_wr" in t]
  still = [t["standing_still"] for t in tasks.values() if "standing_still" in t]
  if wr:
    lines.append(f"  MIER-wR on {len(wr)} test tasks {_mean(wr):.1f}" +
                 (f" (standing still {_mean(still):.1f})" if still else ""))
  ident = results.get("identification")
  if ident:
    lines += _wrap(f"identification on {int(ident['num_tasks'])} training tasks: R^2 "
                   f"{ident['r2']:.3f} ({R2}), spread ratio {ident['spread_ratio']:.1f} "
                   f"({SPREAD}); higher is better for both.")
  adapted = sorted((int(i), t) for i, t in tasks.items() if "mier" in t)
  if adapted:
    lines += _wrap(f"MIER (Algorithm 2) on {len(adapted)} test tasks. {DIFFERENCE}")
  for index, task in adapted[:max_tasks]:
    line = (f"test task {index} ({task.get('task', '')}): MIER {task['mier']:.1f}, "
            f"MIER-wR {task['mier_wr']:.1f}")
    if "standing_still" in task:
      line += f" (standing still {task['standing_still']:.1f})"
    difference = task.get("difference")
    if difference:
      line += (f"; difference {_signed(difference['mean'])} +- {difference['se']:.1f}, "
               f"{difference['verdict']}")
    lines.append("    " + line)
  if len(adapted) > max_tasks:
    lines.append(f"    ... and {len(adapted) - max_tasks} more test tasks with MIER")
  differences = [t["difference"] for _, t in adapted if t.get("difference")]
  if len(differences) > 1:
    verdicts = [d["verdict"] for d in differences]
    lines.append(f"    over the {len(differences)} tasks: difference "
                 f"{_signed(_mean([d['mean'] for d in differences]))} on average; won "
                 f"{verdicts.count('won')}, tie {verdicts.count('tie')}, lost "
                 f"{verdicts.count('lost')}")
  export = os.path.join(root_dir, "export")
  lines.append(f"Files: {os.path.join(root_dir, 'eval', 'results.json')}" +
               (f", {export}/" if os.path.isdir(export) else ""))
  lines.append(f"TensorBoard: tensorboard --logdir {root_dir} (Custom Scalars: MIER vs "
               "MIER-wR vs standing still)")
  return "\n".join(lines)


def evaluation_summary(report: dict, export_dir: str) -> str:
  """The end of evaluate.py, from `evaluation.evaluate_export`'s report on export_dir."""
  protocol = report.get("protocol", {})
  tasks = report.get("tasks", [])
  lines = _wrap(f"MIER-wR of {export_dir} on {len(tasks)} {report['split']} tasks of "
                f"{report['family']}: per task, the context identified from "
                f"N={protocol.get('adapt_steps', '?')} prior-context steps, then "
                f"K={protocol.get('episodes', '?')} deterministic episodes (seed "
                f"{protocol.get('seed', '?')}).", "")
  lines += _wrap(_returns_note(protocol.get("episodes", "?")))
  lines += _wrap("task: MIER-wR, standing still, MIER-wR - standing still (positive: better "
                 "than doing nothing)")
  for entry in tasks:
    lines.append(f"  {entry['index']} ({entry['task']}): {entry['return']:.1f}, "
                 f"{entry['standing_still']:.1f}, "
                 f"{_signed(entry['return'] - entry['standing_still'])}")
  if tasks:
    lines.append(f"  mean over {len(tasks)}: {report['mean_return']:.1f}, "
                 f"{report['mean_standing_still']:.1f}, "
                 f"{_signed(report['mean_return'] - report['mean_standing_still'])}")
  for entry in tasks:
    if "reward_parts" in entry:
      parts = entry["reward_parts"]
      named = ", ".join(f"{key} {value:.1f}" for key, value in parts.items()
                        if key not in ("return", "length"))
      lines.append(f"  {entry['index']} reward parts (mean over the episodes): {named}; "
                   f"return {parts['return']:.1f}, length {parts['length']:.0f}")
  videos = [e["video"] for e in tasks if "video" in e]
  if videos:
    lines.append(f"  videos: {os.path.dirname(videos[0])}/ ({len(videos)} GIFs)")
  return "\n".join(lines)


def _distance(row: dict, key: str) -> float:
  return math.sqrt(sum((a - b) ** 2 for a, b in zip(row[key], row["parameter"])))


def _reading(rows: List[dict], key: str) -> str:
  """Mean distance between the task parameter read from the context and the true one."""
  errors = [_distance(r, key) for r in rows if key in r]
  return f"{_mean(errors):.3g}" if errors else "n/a"


def _vector(values: Sequence[float]) -> str:
  return f"{values[0]:.2f}" if len(values) == 1 else "(" + ", ".join(f"{v:.2f}" for v in values) + ")"


def identification_summary(report: dict, max_rows: int = 10) -> str:
  """The end of identify.py, from `identification.score_export`'s report."""
  test = report.get("test_tasks", [])
  train = report.get("train_tasks", [])
  longer = next((k for k in (test[0] if test else {}) if k.startswith("read_after_")
                 and k != "read_after_adapt"), None)
  lines = _wrap(f"Identification by {report['export']} ({report['family']}; "
                f"{report['data']}). Higher is better for both scores:", "")
  lines += _wrap(f"R^2 {report['r2']:.3f}: {R2}.")
  lines += _wrap(f"spread ratio {report['spread_ratio']:.2f}: {SPREAD}.")
  if not math.isfinite(report["r2"]):
    lines.append("  R^2 is not finite: the contexts do not vary with the task.")
  if train and test:
    scalar = len(train[0]["parameter"]) == 1
    where = ""
    if scalar:
      lo, hi = min(r["parameter"][0] for r in train), max(r["parameter"][0] for r in train)
      outside = sum(not lo <= r["parameter"][0] <= hi for r in test)
      where = (f" ({outside} of {len(test)} outside the scored training tasks' range "
               f"{lo:.2f}..{hi:.2f})")
    steps = longer[len("read_after_"):].replace("_", " ") if longer else None
    lines += _wrap(f"Where the {len(test)} test tasks land{where}: the task parameter read "
                   "from the context through the map fitted on training tasks; distance to the "
                   f"true one {_reading(test, 'read_after_adapt')} after the export's adapt" +
                   (f", {_reading(test, longer)} after Algorithm 2's {steps}" if longer else "")
                   + f" (training tasks: {_reading(train, 'read')}; lower is better).")
    count = min(max_rows, len(test))  # evenly spaced rows, first and last included
    shown = sorted({round(i * (len(test) - 1) / max(1, count - 1)) for i in range(count)})
    header = "    task: true -> read after adapt" + (f", after {steps}" if longer else "")
    lines.append(header)
    for i in shown:
      row = test[i]
      lines.append(f"    {row['index']} ({row['task']}): {_vector(row['parameter'])} -> "
                   f"{_vector(row['read_after_adapt'])}" +
                   (f", {_vector(row[longer])}" if longer and longer in row else ""))
  return "\n".join(lines)
