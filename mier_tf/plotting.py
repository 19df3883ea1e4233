"""Reading TensorBoard event files back, and the plots of `scripts/plot.py`."""
import glob
import json
import os
import shutil
from typing import Dict, List, Sequence, Tuple

import numpy as np

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
          number = float(tf.make_ndarray(value.tensor))
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

  Writes eval/results.json, operative_config.gin, and scalars.json: every scalar of eval/ and
  of each adapt/task_<i>/, and those of train/ at up to `train_points` evenly spaced steps.
  `plot_runs` reads such a directory as it reads the run.
  """
  os.makedirs(os.path.join(out_dir, "eval"), exist_ok=True)
  written = []
  for name in ("eval/results.json", "operative_config.gin"):
    if os.path.exists(os.path.join(root_dir, name)):
      shutil.copyfile(os.path.join(root_dir, name), os.path.join(out_dir, name))
      written.append(os.path.join(out_dir, name))
  writers = ["eval", "train"] + sorted(
      os.path.relpath(d, root_dir) for d in glob.glob(os.path.join(root_dir, "adapt", "task_*")))
  scalars = {}
  for writer in writers:
    tags = {}
    for tag, (steps, values) in read_scalars(os.path.join(root_dir, writer)).items():
      if writer == "train" and len(steps) > train_points:
        keep = np.unique(np.linspace(0, len(steps) - 1, train_points).round().astype(int))
        steps, values = steps[keep], values[keep]
      tags[tag] = {"steps": [int(x) for x in steps], "values": [float(x) for x in values]}
    scalars[writer] = tags
  with open(os.path.join(out_dir, SAVED_SCALARS), "w") as f:
    json.dump(scalars, f)
  written.append(os.path.join(out_dir, SAVED_SCALARS))
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
    ax.plot(x, mean, label=name)
    if len(series) > 1:
      ax.fill_between(x, mean - std, mean + std, alpha=0.25)

  fig, ax = plt.subplots(figsize=(6, 4))
  band(ax, [e.get("Eval/train_return") for e in evals], "training tasks (MIER-wR)")
  band(ax, [e.get("Eval/test_return_mier_wr") for e in evals], "test tasks (MIER-wR)")
  ax.set_xlabel("meta-training environment steps")
  ax.set_ylabel("average return")
  ax.set_title(f"Meta-training ({label}; mean and std)")
  ax.legend()
  save(fig, "learning_curves.png")

  tags = ["Model/nll_before_adapt", "Model/nll_after_adapt", "SAC/critic_loss", "SAC/alpha"]
  fig, axes = plt.subplots(1, len(tags), figsize=(4 * len(tags), 3.2))
  for ax, tag in zip(axes, tags):
    band(ax, [t.get(tag) for t in trains], tag)
    ax.set_title(tag)
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
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(indices) + 2), 4))
    width = 0.38
    for offset, key, name in ((-width / 2, "mier_wr", "MIER-wR"), (width / 2, "mier", "MIER")):
      per_task = [[r[str(i)][key] for r in results if str(i) in r and key in r[str(i)]]
                  for i in indices]
      ax.bar(np.arange(len(indices)) + offset, [np.mean(v) for v in per_task], width,
             yerr=[np.std(v) if len(v) > 1 else 0 for v in per_task], label=name, capsize=3)
    ax.set_xticks(np.arange(len(indices)))
    ax.set_xticklabels([str(i) for i in indices])
    ax.set_xlabel("test task")
    ax.set_ylabel("return")
    ax.set_title(f"Out-of-distribution test tasks ({label})")
    ax.legend()
    save(fig, "mier_vs_mier_wr.png")
  return written
