"""Reading TensorBoard event files back, and the plots of `scripts/plot.py`."""
import glob
import json
import os
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from mier_tf import results as results_lib
from mier_tf import tags

Series = Tuple[np.ndarray, np.ndarray]


def read_scalars(logdir: str) -> Dict[str, Series]:
  """All scalar summaries in the event files directly under `logdir`: tag -> (steps, values)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  points: Dict[str, Dict[int, float]] = {}
  for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
    for record in tf.data.TFRecordDataset(path):
      event = tf.compat.v1.Event.FromString(record.numpy())
      for value in event.summary.value:
        if value.HasField("simple_value"):
          number = value.simple_value
        elif value.HasField("tensor") and value.tensor.dtype in (1, 2):  # float, double
          array = tf.make_ndarray(value.tensor)
          if array.size != 1:
            continue  # not a scalar (ROOT's HParams hold other tensors)
          number = float(array)
        else:
          continue
        points.setdefault(value.tag, {})[event.step] = number  # a resumed run rewrites steps
  return {tag: (np.array(sorted(d)), np.array([d[s] for s in sorted(d)]))
          for tag, d in points.items()}


SAVED_SCALARS = "scalars.json"


def run_scalars(root_dir: str, writer: str) -> Dict[str, Series]:
  """A run's scalars of one writer ("train", "eval", "adapt/task_3"...), from its event files
  or, for a run saved by `save_run`, from its scalars.json."""
  saved = os.path.join(root_dir, SAVED_SCALARS)
  if os.path.exists(saved):
    with open(saved) as f:
      tags = json.load(f).get(writer, {})
    return {tag: (np.array(v["steps"]), np.array(v["values"])) for tag, v in tags.items()}
  return read_scalars(os.path.join(root_dir, writer))


def save_run(root_dir: str, out_dir: str, train_points: int = 200) -> List[str]:
  """Copies what a run's plots and tables need into out_dir, small enough to commit.

  Writes eval/results.json, operative_config.gin, and scalars.json: every scalar of eval/,
  eval/standing_still/, eval/mier/ and each adapt/task_<i>/, and those of train/ at up to
  `train_points` evenly spaced steps; and for each milestone whose evaluation completed,
  milestones/step_<N>/eval/results.json and evaluated.json.
  `plot_runs` reads such a directory as it reads the run.

  A campaign's run still training is saved too, once a milestone's evaluation completed (a
  machine lost mid-campaign then loses no evaluated milestone): its milestones, scalars and
  config, no eval/results.json. Raises FileNotFoundError if root_dir has neither an end nor an
  evaluated milestone, and ValueError if it has no end but out_dir holds one (another run's).
  """
  evaluated = sorted(m for m in glob.glob(os.path.join(root_dir, results_lib.MILESTONES,
                                                        "step_*"))
                     if os.path.exists(os.path.join(m, "evaluated.json")))
  if not os.path.exists(os.path.join(root_dir, "eval", "results.json")):
    if not evaluated:
      raise FileNotFoundError(f"{root_dir} has no eval/results.json and no evaluated "
                              "milestone: neither a finished run of scripts/train.py nor a "
                              "campaign's run with a milestone evaluated")
    if os.path.exists(os.path.join(out_dir, "eval", "results.json")):
      raise ValueError(f"{out_dir} holds a finished run's eval/results.json, and {root_dir} "
                       "has not finished: save it there at its end, or choose another out_dir")
  os.makedirs(os.path.join(out_dir, "eval"), exist_ok=True)
  written = []
  for name in ("eval/results.json", "operative_config.gin"):
    if os.path.exists(os.path.join(root_dir, name)):
      shutil.copyfile(os.path.join(root_dir, name), os.path.join(out_dir, name))
      written.append(os.path.join(out_dir, name))
  writers = ["eval", "train"] + [
      w for w in (tags.STANDING_STILL_WRITER, tags.MIER_WRITER)
      if os.path.isdir(os.path.join(root_dir, w))] + sorted(
          os.path.relpath(d, root_dir) for d in glob.glob(os.path.join(root_dir, "adapt", "task_*")))
  scalars = {}
  for writer in writers:
    series = {}
    for tag, (steps, values) in read_scalars(os.path.join(root_dir, writer)).items():
      if writer == "train" and len(steps) > train_points:
        keep = np.unique(np.linspace(0, len(steps) - 1, train_points).round().astype(int))
        steps, values = steps[keep], values[keep]
      series[tag] = {"steps": [int(x) for x in steps], "values": [float(x) for x in values]}
    scalars[writer] = series
  with open(os.path.join(out_dir, SAVED_SCALARS), "w") as f:
    json.dump(scalars, f)
  written.append(os.path.join(out_dir, SAVED_SCALARS))
  # A campaign's milestones whose evaluation completed (evaluated.json, written by the
  # supervisor): their results and the Algorithm 2 settings they were evaluated with.
  for milestone in evaluated:
    target = os.path.join(out_dir, os.path.relpath(milestone, root_dir))
    os.makedirs(os.path.join(target, "eval"), exist_ok=True)
    for name in ("eval/results.json", "evaluated.json"):
      shutil.copyfile(os.path.join(milestone, name), os.path.join(target, name))
      written.append(os.path.join(target, name))
  return written


def _mean_and_spread(curves: List[Series]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Mean and standard deviation over runs, on the steps that every run has."""
  common = sorted(set.intersection(*(set(c[0].tolist()) for c in curves)))
  values = np.array([[dict(zip(*c))[s] for s in common] for c in curves])
  return np.array(common), values.mean(0), values.std(0)


def plot_runs(root_dirs: Sequence[str], out_dir: str) -> List[str]:
  """Writes learning_curves.png, training_losses.png and (if adapted) mier_vs_mier_wr.png."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  os.makedirs(out_dir, exist_ok=True)
  evals = [run_scalars(d, "eval") for d in root_dirs]
  trains = [run_scalars(d, "train") for d in root_dirs]
  label = f"{len(root_dirs)} run{'s' if len(root_dirs) > 1 else ''}"
  written = []

  def save(fig, name):
    fig.tight_layout()
    written.append(os.path.join(out_dir, name))
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

  def band(ax, series, name):
    series = [s for s in series if s is not None and len(s[0])]
    if not series:
      return
    x, mean, std = _mean_and_spread(series)
    # Few evaluations (a campaign's run evaluates at its end): markers, or nothing shows.
    ax.plot(x, mean, label=name, marker="o" if len(x) <= 20 else None)
    if len(series) > 1:
      ax.fill_between(x, mean - std, mean + std, alpha=0.25)

  # Returns above standing still on the same tasks: 0 is doing nothing, and training and
  # test tasks (whose still returns differ by hundreds) share one scale.
  fig, ax = plt.subplots(figsize=(6, 4))
  band(ax, [e.get(tags.TRAIN_RETURN_ABOVE_STILL) for e in evals], "training tasks (MIER-wR)")
  band(ax, [e.get(tags.TEST_RETURN_MIER_WR_ABOVE_STILL) for e in evals],
       "test tasks (MIER-wR)")
  ax.axhline(0.0, color="grey", lw=0.8, ls="--", label="standing still")
  ax.set_xlabel("meta-training environment steps")
  ax.set_ylabel("return minus standing still's")
  ax.set_title(f"Meta-training ({label}; mean and std)")
  ax.legend()
  save(fig, "learning_curves.png")

  # The model: NLL with the prior and with the adapted context on one axis (the gap is
  # what identification buys), then the SAC critic and temperature.
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
  band(axes[0], [t.get(tags.NLL_BEFORE_ADAPT) for t in trains], "prior context")
  band(axes[0], [t.get(tags.NLL_AFTER_ADAPT) for t in trains], "adapted context")
  axes[0].set_title("Model NLL on the evaluation batch")
  axes[0].set_ylabel("negative log-likelihood")
  axes[0].legend()
  for ax, tag, ylabel in ((axes[1], tags.CRITIC_LOSS, "critic loss"),
                          (axes[2], tags.ALPHA, "entropy temperature alpha")):
    band(ax, [t.get(tag) for t in trains], tag)
    ax.set_title(tag)
    ax.set_ylabel(ylabel)
  axes[1].set_yscale("log")
  for ax in axes:
    ax.set_xlabel("training step")
  save(fig, "training_losses.png")

  results = []
  for d in root_dirs:
    path = os.path.join(d, "eval", "results.json")
    if os.path.exists(path):
      with open(path) as f:
        results.append(json.load(f).get("test_tasks", {}))
  indices = sorted({int(i) for r in results for i, e in r.items() if "mier" in e})
  if indices:
    # Per test task: both methods above standing still, and MIER's gain over MIER-wR. Bars
    # from 0 on raw returns near -500 would hide differences of tens.
    def per_task(value):
      return [[value(r[str(i)]) for r in results if str(i) in r and "mier" in r[str(i)]]
              for i in indices]
    x = np.arange(len(indices))
    fig, axes = plt.subplots(2, 1, figsize=(max(6, 0.6 * len(indices) + 2), 6.5), sharex=True)
    width = 0.38
    for offset, key, name in ((-width / 2, "mier_wr", "MIER-wR"), (width / 2, "mier", "MIER")):
      values = per_task(lambda e, key=key: e[key] - e["standing_still"])
      axes[0].bar(x + offset, [np.mean(v) for v in values], width, label=name, capsize=3,
                  yerr=[np.std(v) if len(v) > 1 else 0 for v in values])
    # The references of scripts/references.py, kept beside the runs (FAMILY/references/).
    refs = results_lib.load_references(os.path.dirname(os.path.abspath(root_dirs[0])))
    for part, marker, size, color, name in (
        ("oracle_same_data", "x", 40, "dimgrey", "oracle, MIER's data"),
        ("oracle_long", "_", 300, "black", "oracle, {}k steps")):
      points = []
      for k, i in enumerate(indices):
        ref = refs.get(i, {})
        if part in ref and "standing_still" in ref:
          value = ref[part].get("greedy_return")
          if part == "oracle_long":
            last = max(ref[part]["returns"], key=int)
            value, name = ref[part]["returns"][last], name.format(int(last) // 1000)
          points.append((k, value - ref["standing_still"]))
      if points:
        axes[0].scatter(*zip(*points), marker=marker, s=size, color=color, zorder=3,
                        label=name, linewidths=2)
    axes[0].axhline(0.0, color="grey", lw=0.8, ls="--")
    axes[0].set_ylabel("return minus standing still's")
    axes[0].set_title(f"Out-of-distribution test tasks ({label})")
    low, high = axes[0].get_ylim()
    axes[0].set_ylim(low, high + 0.25 * (high - low))  # room for the legend above the bars
    axes[0].legend(loc="upper left", ncol=2)
    gains = per_task(lambda e: e["mier"] - e["mier_wr"])
    axes[1].bar(x, [np.mean(v) for v in gains], 0.6, color="tab:green", capsize=3,
                yerr=[np.std(v) if len(v) > 1 else 0 for v in gains])
    axes[1].axhline(0.0, color="grey", lw=0.8)
    axes[1].set_ylabel("MIER minus MIER-wR")
    axes[1].set_xticks(x)
    # "negated=[0, 1, 5]" on two lines: ten of them side by side would overlap.
    axes[1].set_xticklabels([f"{i}\n" + results[0].get(str(i), {}).get("task", "").replace(
        "=", "=\n") for i in indices], fontsize=8)
    axes[1].set_xlabel("test task")
    save(fig, "mier_vs_mier_wr.png")
  return written


def mean_points(table: dict, key: str, count) -> List[tuple]:
  """(env steps, mean over seeds, seeds there, seeds of the line) per checkpoint of
  `results.budget`'s table evaluated with `count` context steps."""
  at = [s for s in table["steps"] if s["context_steps"] == count]
  n = len({seed for s in at for seed in s["seeds"]})
  return [(s["env_steps"], float(np.mean(s[key])), len(s["seeds"]), n) for s in at]


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
  """Mean of each point and the up to window - 1 points before it (a trailing mean: the
  first points average fewer)."""
  sums = np.cumsum(np.concatenate([[0.0], np.asarray(values, float)]))
  ends = np.arange(1, len(values) + 1)
  starts = np.maximum(0, ends - window)
  return (sums[ends] - sums[starts]) / (ends - starts)


def training_standing_still(eval_scalars: Dict[str, Series]) -> Optional[float]:
  """Standing still on the training tasks at a run's last evaluation (its MIER-wR return
  minus the same return above standing still), or None if it has not evaluated."""
  returns, above = (eval_scalars.get(t) for t in (tags.TRAIN_RETURN,
                                                  tags.TRAIN_RETURN_ABOVE_STILL))
  if returns is None or above is None or not len(returns[1]) or not len(above[1]):
    return None
  return float(returns[1][-1] - above[1][-1])


def plot_collection(family_dir: str, out_dir: Optional[str] = None,
                    window: int = 10) -> List[str]:
  """collection.png: each seed's meta-training collection returns on its training tasks
  (`Collect/return_*_context`, one point per epoch, sampled actions) against environment
  steps, a trailing mean over `window` epochs drawn over the raw points; with the training
  tasks' standing still where the seed's own last evaluation measured it. Seeds saved while
  training are drawn too: the learning curve of a campaign's run between its milestones.
  Nothing is written if no seed's scalars hold the collection returns (runs made before
  2026-12-05)."""
  curves = {}
  for seed_dir in sorted(glob.glob(os.path.join(family_dir, "s*", SAVED_SCALARS))):
    seed = os.path.basename(os.path.dirname(seed_dir))
    scalars = run_scalars(os.path.dirname(seed_dir), "eval")
    if tags.COLLECT_RETURN["adapted"] in scalars:
      curves[seed] = scalars
  if not curves:
    return []
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  import matplotlib.ticker  # pylint: disable=import-outside-toplevel
  fig, ax = plt.subplots(figsize=(6.5, 4))
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for (seed, scalars), color in zip(sorted(curves.items()), colors):
    for kind, style in (("adapted", "-"), ("prior", ":")):
      steps, values = scalars.get(tags.COLLECT_RETURN[kind], (np.array([]), np.array([])))
      if not len(steps):
        continue
      if kind == "adapted":
        ax.plot(steps, values, color=color, alpha=0.25, lw=0.8)
      ax.plot(steps, rolling_mean(values, window), color=color, ls=style, lw=1.8,
              label=f"{seed}, {kind} context")
    still = training_standing_still(scalars)
    if still is not None:
      ax.axhline(still, color=color, ls="--", lw=1,
                 label=f"{seed}, standing still (its last evaluation's training tasks)")
  ax.set_xlabel("meta-training environment steps")
  ax.set_ylabel("return per episode")
  ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x / 1e3:,.0f}k"))
  ax.set_title(f"{os.path.basename(os.path.abspath(family_dir))}: collection on the training "
               f"tasks\n(sampled actions; thick: mean of {window} epochs, thin: each epoch)",
               fontsize=10)
  ax.legend(fontsize=8, loc="lower right")
  fig.tight_layout()
  path = os.path.join(out_dir or family_dir, "collection.png")
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return [path]


def plot_budget(family_dir: str, out_dir: Optional[str] = None,
                table: Optional[dict] = None) -> List[str]:
  """mier_vs_budget.png: MIER and MIER-wR (means over the relabeled test tasks) at each
  evaluated checkpoint of each seed, with standing still and the long oracle; below, MIER's
  gain. `table` is `results.budget` of the family (read from family_dir if not given).
  Nothing is written for fewer than two evaluated checkpoints."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  import matplotlib.ticker  # pylint: disable=import-outside-toplevel
  if table is None:
    table = results_lib.budget(results_lib.load_budget(family_dir),
                               results_lib.load_references(family_dir))
  if len(table["steps"]) < 2:
    return []
  out_dir = out_dir or family_dir
  fig, axes = plt.subplots(2, 1, figsize=(6.5, 6.5), sharex=True,
                           gridspec_kw={"height_ratios": [2, 1]})
  seeds = sorted({r["seed"] for r in table["rows"]})
  # Seeds evaluated with different context steps are averaged apart (`results.budget`): one
  # mean line per count, the latest (most) solid.
  counts = sorted({s["context_steps"] for s in table["steps"]},
                  key=lambda c: -1 if c is None else c, reverse=True)

  def seeds_and_mean(ax, key, color, label=None):
    """Each seed thin, their mean thick with markers: hollow, and the seeds counted, where
    fewer seeds than the line's were evaluated (a milestone evaluated later in some)."""
    for seed in seeds:
      rows = [r for r in table["rows"] if r["seed"] == seed]
      ax.plot([r["env_steps"] for r in rows], [r[key] for r in rows], color=color,
              alpha=0.35, lw=1, marker=".")
    for k, count in enumerate(counts):
      points = mean_points(table, key, count)
      n = max(p[3] for p in points)
      partial = any(p[2] < n for p in points)
      text = None if label is None else (
          f"{label} (mean of {n} seed{'s' * (n > 1)}"
          + (f", {count} context steps" if len(counts) > 1 else "")
          + ("; hollow: fewer" if partial else "") + "; thin: each)")
      marker = "os"[min(k, 1)]
      ax.plot([p[0] for p in points], [p[1] for p in points], color=color, lw=2.2,
              ls="-" if k == 0 else "--", label=text, marker=marker,
              markevery=[i for i, p in enumerate(points) if p[2] == n])
      for x, y, m, _ in points:
        if m < n:
          ax.plot([x], [y], color=color, marker=marker, mfc="white", mew=1.5, ls="")
          ax.annotate(f"{m} seed{'s' * (m > 1)}", (x, y), textcoords="offset points",
                      xytext=(6, -10), fontsize=7, color=color)

  for key, name, color in (("mier_wr", "MIER-wR", "tab:blue"), ("mier", "MIER", "tab:orange")):
    seeds_and_mean(axes[0], key, color, name)
  stills = [v for s in table["steps"] for v in s["standing_still"] if v is not None]
  if stills:
    axes[0].axhline(np.mean(stills), color="grey", ls="--", lw=1, label="standing still")
  if table["oracle_long"] is not None:
    axes[0].axhline(table["oracle_long"], color="black", ls=":", lw=1.2,
                    label="oracle (SAC from scratch, 50k steps)")
  axes[0].set_ylabel(f"return, mean of {table['relabeled_tasks']} test tasks")
  axes[0].set_title(f"Out of distribution as meta-training grows "
                    f"({os.path.basename(os.path.abspath(family_dir))})")
  axes[0].legend(fontsize=8, loc="best")
  seeds_and_mean(axes[1], "gain", "tab:green")
  axes[1].axhline(0.0, color="grey", lw=0.8)
  axes[1].set_ylabel("MIER minus MIER-wR")
  axes[1].set_xlabel("meta-training environment steps")
  axes[1].set_xlim(0, 1.05 * max(s["env_steps"] for s in table["steps"]))
  axes[1].xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
      lambda x, _: f"{x / 1e3:,.0f}k"))
  fig.tight_layout()
  path = os.path.join(out_dir, "mier_vs_budget.png")
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return [path]
