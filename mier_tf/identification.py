"""Model identification, measured: does the adapted context carry the task?

MIER's claim is that a few gradient steps on the context identify the task. This module
measures it, the same way for training (TensorBoard at every evaluation) and for any export
(`scripts/identify.py`):

* identification R^2: leave-one-task-out R^2 of a linear map (ridge, with intercept) from
  adapted contexts to the task parameter (`TaskFamily.task_features`: velocity; direction
  as cos/sin; the +-1 joint mask; walker log scale factors). 1 means the context is a
  linear code of the task; 0 is chance; negative is worse than predicting the mean.
* spread ratio: how far contexts of different tasks lie apart (RMS distance to their mean)
  against how far two adaptations of one task on different data lie apart (RMS distance
  between the two, over sqrt(2): the spread of one adaptation). Below ~1 the context
  mostly reflects which data it was adapted on, not which task.
* the state and reward NLL before and after adaptation, separately: a joint NLL hides which
  of the two the context learned.
"""
import collections
import os
from typing import Callable, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from mier_tf import actors
from mier_tf import envs
from mier_tf.collect import MultiTaskCollector, in_groups
from mier_tf.train.evaluation import load_saved_model

IdentificationReport = collections.namedtuple(
    "IdentificationReport",
    ["r2",                  # leave-one-task-out R^2 of the task parameter from the context
     "spread_ratio",        # between-task spread / within-task spread of adapted contexts
     "between_spread",      # RMS distance of tasks' contexts to their mean
     "within_spread",       # RMS spread of one task's adaptations on different data
     "nll_state_before",    # state-block NLL (nats per transition) with the prior context
     "nll_state_after",     # ... with the adapted context
     "nll_reward_before",   # reward NLL (nats per transition) with the prior context
     "nll_reward_after",    # ... with the adapted context
     "num_tasks"])

# Ridge strength relative to the number of fitted rows, on standardised contexts. Small
# enough to change nothing where the map is well determined (tens of tasks, 5 context
# dimensions); it keeps the fit defined where the tasks are fewer than the context
# dimensions plus one (cheetah negated joints: 10 tasks, 10 dimensions).
DEFAULT_RIDGE = 1e-3


def fit_linear_map(contexts: np.ndarray, targets: np.ndarray, ridge: float = DEFAULT_RIDGE
                   ) -> Callable[[np.ndarray], np.ndarray]:
  """Ridge regression with intercept from contexts [n, c] to targets [n, k]; returns predict.

  The contexts are standardised per dimension (on these rows) before the fit, so `ridge`
  does not depend on the context's scale; the intercept is not penalised.
  """
  x = np.asarray(contexts, np.float64)
  y = np.asarray(targets, np.float64).reshape(len(x), -1)
  mean_x, std_x = x.mean(axis=0), x.std(axis=0)
  std_x[std_x < 1e-12] = 1.0
  mean_y = y.mean(axis=0)
  xs = (x - mean_x) / std_x
  gram = xs.T @ xs + ridge * len(x) * np.eye(x.shape[1])
  weights = np.linalg.lstsq(gram, xs.T @ (y - mean_y), rcond=None)[0]  # rank-deficient too

  def predict(new_contexts: np.ndarray) -> np.ndarray:
    new = (np.asarray(new_contexts, np.float64) - mean_x) / std_x
    return new @ weights + mean_y

  return predict


def loo_r2(contexts: np.ndarray, targets: np.ndarray, groups: Optional[np.ndarray] = None,
           ridge: float = DEFAULT_RIDGE) -> float:
  """Leave-one-group-out R^2 of a linear map from contexts to targets.

  Each group (a task: all of its adaptations) is predicted by the map fitted on the other
  groups; R^2 = 1 - sum of squared errors / sum of squared deviations from the mean, summed
  over the target dimensions (dimensions that never vary add nothing to either sum).

  Args:
    contexts: [n, c] adapted contexts.
    targets: [n] or [n, k] task parameters of the rows.
    groups: [n] group label of each row (default: every row its own group).
    ridge: ridge strength, see `fit_linear_map`.

  Returns:
    The R^2 (nan when the targets do not vary or there are fewer than 3 groups).
  """
  x = np.asarray(contexts, np.float64)
  y = np.asarray(targets, np.float64).reshape(len(x), -1)
  groups = np.arange(len(x)) if groups is None else np.asarray(groups)
  labels = np.unique(groups)
  total = np.sum(np.square(y - y.mean(axis=0)))
  if len(labels) < 3 or total <= 1e-12 * max(1.0, np.sum(np.square(y))):
    return float("nan")
  errors = 0.0
  for label in labels:
    held = groups == label
    predict = fit_linear_map(x[~held], y[~held], ridge)
    errors += np.sum(np.square(predict(x[held]) - y[held]))
  return float(1.0 - errors / total)


def spread_ratio(contexts_a: np.ndarray, contexts_b: np.ndarray) -> Tuple[float, float, float]:
  """(between / within, between, within) for two adaptations [tasks, c] of the same tasks.

  between: RMS distance of the tasks' mean contexts to their overall mean.
  within: RMS distance between a task's two adaptations divided by sqrt(2), i.e. the
  spread of a single adaptation around the task's own mean.
  """
  a = np.asarray(contexts_a, np.float64)
  b = np.asarray(contexts_b, np.float64)
  centres = 0.5 * (a + b)
  between = float(np.sqrt(np.mean(np.sum(np.square(centres - centres.mean(axis=0)), -1))))
  within = float(np.sqrt(np.mean(np.sum(np.square(a - b), -1)) / 2.0))
  return (between / within if within > 0 else float("inf")), between, within


def _mean_block_nll(model, batch: Mapping[str, tf.Tensor], context) -> Tuple[float, float]:
  state, reward = model.block_nll(batch, context)
  return float(tf.reduce_mean(state)), float(tf.reduce_mean(reward))


def identify(model, adapt_fn: Callable[[dict], np.ndarray], adapt_batches: Sequence[dict],
             eval_batch: dict, task_features: np.ndarray) -> IdentificationReport:
  """Measures identification on tasks whose data are given per task.

  Args:
    model: a `ContextualDynamicsModel` (for the per-block NLLs and the prior context).
    adapt_fn: the inner loop used in training: batch [tasks, samples] -> contexts [tasks, c].
    adapt_batches: two (or more) adaptation batches [tasks, samples, ...] of the same
      tasks, drawn independently (e.g. from the tasks' prior-context tables).
    eval_batch: batch [tasks, samples', ...] of the same tasks to score the NLLs on.
    task_features: [tasks, k] the task parameters (`TaskFamily.task_features`).

  Returns:
    An IdentificationReport.
  """
  contexts = [np.asarray(adapt_fn(batch), np.float64) for batch in adapt_batches]
  num_tasks = contexts[0].shape[0]
  stacked = np.concatenate(contexts)
  groups = np.tile(np.arange(num_tasks), len(contexts))
  features = np.tile(np.asarray(task_features, np.float64).reshape(num_tasks, -1),
                     (len(contexts), 1))
  r2 = loo_r2(stacked, features, groups)
  ratio, between, within = spread_ratio(contexts[0], contexts[1])
  eval_batch = {k: tf.convert_to_tensor(v) for k, v in eval_batch.items()}
  state_before, reward_before = _mean_block_nll(model, eval_batch, None)
  state_after, reward_after = _mean_block_nll(
      model, eval_batch, tf.constant(contexts[0], model.dtype))
  return IdentificationReport(
      r2=r2, spread_ratio=ratio, between_spread=between, within_spread=within,
      nll_state_before=state_before, nll_state_after=state_after,
      nll_reward_before=reward_before, nll_reward_after=reward_after, num_tasks=num_tasks)


# ------------------------------------------------------------------------------------------
# Scoring an export (what `scripts/identify.py` runs): the SavedModel alone, random actions.

def collect_random(family, tasks, steps: int, seed: int) -> list:
  """`steps` random-action transitions for each task: a list of per-task dicts."""
  space = family.make_env(tasks[0]).action_space
  collector = MultiTaskCollector(family, num_slots=10, seed=seed)
  actor = actors.RandomActor(space.low, space.high, seed)
  data = []
  for group in in_groups(list(tasks), 10):
    chunk, _ = collector.collect(group, np.zeros((len(group), 1), np.float32), steps, actor)
    data.extend(chunk)
  collector.close()
  return data


def score_export(export_dir: str, family_name: str, num_tasks: int = 40, steps: int = 200,
                 ood_context_steps: int = 10, fast_steps: int = 2, seed: int = 0) -> dict:
  """Identification of an exported model (`export/model`), from random-action data.

  For `num_tasks` training tasks spread over the family's list, two sets of `steps`
  random-action transitions each, the export's `adapt` signature, then the score of
  `identify` (R^2 and spread ratio). The linear map fitted on all training contexts then
  reads the test tasks' contexts: after the `adapt` signature (MIER-wR's identification)
  and after `ood_context_steps` context steps (Algorithm 2's: `fast_steps` at the inner
  rate, the rest at a tenth of it, through the `context_step` signature).

  Args:
    export_dir: a run's export/ directory (or its model/ SavedModel directly).
    family_name: the task family the export was trained on.
    num_tasks: training tasks scored (evenly spaced indices).
    steps: random-action transitions per adaptation.
    ood_context_steps: context steps of the longer adaptation on test tasks.
    fast_steps: of those, the steps at the full inner rate.
    seed: seed of resets and actions.

  Returns:
    A JSON-ready dict: r2, spread_ratio, per-task train/test rows with the parameter read
    from the context.
  """
  family = envs.get_task_family(family_name)
  path = export_dir if os.path.isfile(os.path.join(export_dir, "saved_model.pb")) else (
      os.path.join(export_dir, "model"))
  if not os.path.isfile(os.path.join(path, "saved_model.pb")):
    raise FileNotFoundError(f"no model SavedModel at {path} (expected a run's export/ dir)")
  model = load_saved_model(path)
  prior = model.signatures["prior_context"]()["context"].numpy()
  inputs = model.signatures["adapt"].structured_input_signature[1]
  if inputs["observation"].shape[-1] != family.observation_dim:
    raise ValueError(f"{path} was exported for observations of size "
                     f"{inputs['observation'].shape[-1]}, but {family_name} has "
                     f"{family.observation_dim}")
  adapt = model.signatures["adapt"]
  has_step = "context_step" in model.signatures

  def run_adapt(transitions):
    args = {k: tf.constant(transitions[k]) for k in
            ("observation", "action", "next_observation", "reward")}
    return adapt(**args)["context"].numpy()

  def long_adapt(transitions, inner_lr):
    args = {k: tf.constant(transitions[k]) for k in
            ("observation", "action", "next_observation", "reward")}
    context = tf.constant(prior)
    for i in range(ood_context_steps):
      rate = inner_lr if i < fast_steps else inner_lr / 10.0
      context = model.signatures["context_step"](
          context=context, learning_rate=tf.constant(rate, tf.float32), **args)["context"]
    return context.numpy()

  train_ids = np.unique(np.linspace(0, len(family.train_tasks) - 1, num_tasks).astype(int))
  train_tasks = [family.train_tasks[i] for i in train_ids]
  data = collect_random(family, train_tasks, 2 * steps, seed)
  halves = [[{k: v[h * steps:(h + 1) * steps] for k, v in d.items()} for d in data]
            for h in range(2)]
  contexts = [np.stack([run_adapt(d) for d in half]) for half in halves]
  features = family.task_features(train_tasks)
  stacked = np.concatenate(contexts)
  groups = np.tile(np.arange(len(train_tasks)), 2)
  r2 = loo_r2(stacked, np.tile(features, (2, 1)), groups)
  ratio, between, within = spread_ratio(*contexts)
  read = fit_linear_map(stacked, np.tile(features, (2, 1)))

  report = {"export": path, "family": family_name, "data": f"{steps} random-action "
            f"transitions per adaptation, {len(train_tasks)} training tasks",
            "r2": r2, "spread_ratio": ratio, "between_spread": between,
            "within_spread": within, "prior_context_norm": float(np.linalg.norm(prior)),
            "train_tasks": [], "test_tasks": []}
  for i, tid in enumerate(train_ids):
    report["train_tasks"].append({
        "index": int(tid), "task": family.describe_task(family.train_tasks[tid]),
        "parameter": features[i].tolist(), "read": read(contexts[0][i:i + 1])[0].tolist()})
  test_data = collect_random(family, list(family.test_tasks), steps, seed + 1)
  inner_lr = _inner_lr_of(model)
  test_features = family.task_features(family.test_tasks)
  for i, d in enumerate(test_data):
    row = {"index": i, "task": family.describe_task(family.test_tasks[i]),
           "parameter": test_features[i].tolist(),
           "read_after_adapt": read(run_adapt(d)[None])[0].tolist()}
    if has_step and inner_lr is not None:
      row[f"read_after_{ood_context_steps}_steps"] = read(long_adapt(d, inner_lr)[None])[0].tolist()
    report["test_tasks"].append(row)
  return report


def _inner_lr_of(model) -> Optional[float]:
  """The inner rate of the export's `adapt` (exports written before it was saved: None)."""
  if "context_step" not in model.signatures or not hasattr(model, "inner_lr"):
    return None
  return float(model.inner_lr.numpy())
