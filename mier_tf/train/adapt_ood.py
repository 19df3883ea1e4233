"""Out-of-distribution adaptation with experience relabeling (Algorithm 2 of the paper).

For one test task, starting from the last meta-training checkpoint (read, never written):

    D_adapt <- collect on the new task with the prior context phi   (the evaluation protocol's
               adaptation data: N steps, seeded by the task alone)
    MIER-wR: phi_T <- A(theta, phi, D_adapt); K protocol episodes of pi(. | s, phi_T)
    phi_T, theta' <- N_fast context steps (alpha, then alpha / 10), then whole-model steps
    for each epoch:
        every `relabel_every` SAC steps:
            states of `relabel_tasks` random meta-training tasks -> Relabel(theta', phi_T, pi)
        SAC steps on batches of 5% D_adapt, 95% relabeled data (policy starts meta-trained)
        evaluate pi(. | s, phi_T) on the new task: the same K protocol episodes (paired)
"""
import inspect
import logging
import os
from typing import Dict, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf
import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from mier_tf import model as model_lib
from mier_tf import relabel
from mier_tf import results as results_lib
from mier_tf import summaries
from mier_tf.agents import sac
from mier_tf.collect import flatten_tasks
from mier_tf.train import checkpoints
from mier_tf.train import evaluation
from mier_tf.train import export
from mier_tf.train import meta_train as meta_train_lib

# The context the policy acts on during Algorithm 2 (`adapt_ood.policy_context`).
POLICY_CONTEXTS = ("adapted", "mier_wr")


# --- The steps of Algorithm 2, in its order ------------------------------------------------


def restored_run(root_dir: str, run: Optional[meta_train_lib.MetaTrainingRun] = None
                 ) -> meta_train_lib.MetaTrainingRun:
  """The run at its last meta-training checkpoint, random states included.

  Every task starts from the checkpoint's random state, so its result does not depend on
  which tasks ran before it in this process (a resumed job gets what an uninterrupted got).
  """
  run = run or meta_train_lib.MetaTrainingRun(root_dir)
  if not run.checkpointer.restore():
    raise checkpoints.CheckpointError(
        f"{os.path.join(root_dir, 'checkpoints')}: no meta-training checkpoint to adapt from")
  run.rng = run.checkpointer.restored_rng
  run.set_host_state(run.checkpointer.restored_extra_state)
  return run


def evaluate(run, evaluator: evaluation.Evaluator, task_index: int,
             context: np.ndarray) -> np.ndarray:
  """The protocol's K deterministic episodes of the current policy on `context`: [K]."""
  returns, _ = evaluator.episodes(run.eval_agent().greedy_actor(), "test", task_index,
                                  np.asarray(context, np.float32))
  return returns


def identify_task(run, real: Dict[str, np.ndarray], context_steps: int, fast_steps: int,
                  model_steps: int, model_lr: float, heldout_fraction: float, patience: int,
                  context_lr: Optional[float] = None, context_clip: Optional[float] = None):
  """Continued model identification on D_adapt (on a copy: the meta-trained model stays),
  stopped on its held-out tail (`model_lib.continue_adaptation`).

  Returns (adapted model theta', its context phi_T, the AdaptationReport).
  """
  adapted_model, context, report = model_lib.continue_adaptation(
      run.model, {k: tf.convert_to_tensor(v) for k, v in real.items()},
      context_steps=context_steps,
      context_lr=run.inner.lr if context_lr is None else context_lr, fast_steps=fast_steps,
      model_steps=model_steps, model_lr=model_lr,
      clip_norm=run.inner.clip_norm if context_clip is None else context_clip,
      heldout_fraction=heldout_fraction, patience=patience, inner=run.inner)
  return adapted_model, tf.convert_to_tensor(context), report


def relabel_experience(run, rng: np.random.Generator, adapted_model, context: tf.Tensor,
                       mode: str, num_tasks: int, num_states: int,
                       policy_context: Optional[tf.Tensor] = None) -> Dict[str, np.ndarray]:
  """States of `num_tasks` random meta-training tasks, relabeled as the new task's (the
  policy's actions on `policy_context` if given, the model's predictions on `context`)."""
  num_train = len(run.family.train_tasks)
  ids = rng.choice(num_train, min(num_tasks, num_train), replace=False)
  per_task = max(1, num_states // min(num_tasks, num_train))
  states = flatten_tasks(run.tables.sample(ids, "full", per_task))
  actor = run.agent.policy._actor_network  # pylint: disable=protected-access
  return relabel.relabel_transitions(adapted_model, actor, context, states, mode,
                                     seed=int(rng.integers(2**30)),
                                     termination=run.family.termination,
                                     policy_context=policy_context)


def train_policy_step(run, mix: relabel.MixedBatches, context: tf.Tensor, updates: int):
  """SAC updates on batches of the new task's data mixed with relabeled data."""
  for _ in range(updates):
    batch = {k: tf.convert_to_tensor(v[None]) for k, v in mix.sample().items()}
    losses = run.learner.train_tagged(batch, context[None])
  return losses


def export_adapted(run, adapted_model, context: tf.Tensor, export_dir: str) -> None:
  """The trained policy, and the adapted model whose prior context is the task's phi_T."""
  export.export_policy(run.agent, export_dir)
  adapted_model.context.assign(context)
  export.export_model(adapted_model, export_dir, run.inner)
  export.export_agent(adapted_model, run.agent, run.inner, export_dir)


def record_result(run, root_dir: str, task_index: int, result: dict) -> None:
  """Adds the task's returns to eval/results.json."""
  task = run.family.test_tasks[task_index]
  results = results_lib.read_results(root_dir)
  entry = results.setdefault("test_tasks", {}).setdefault(str(task_index), {})
  entry.update(task=run.family.describe_task(task), **result)
  results_lib.write_results_file(root_dir, results)
  logging.info("Test task %d (%s): MIER-wR %.1f, MIER %.1f", task_index,
               run.family.describe_task(task), result["mier_wr"], result["mier"])


@gin.configurable
def adapt_ood(
    root_dir: str,
    task_index: int,
    run: Optional[meta_train_lib.MetaTrainingRun] = None,
    # Test-time model adaptation (the data: the evaluation protocol's N steps).
    context_steps: int = 10,
    fast_steps: int = 2,
    context_lr: Optional[float] = None,
    context_clip: Optional[float] = None,
    model_steps: int = 100,
    model_lr: float = 1e-3,
    heldout_fraction: float = 0.2,
    patience: int = 10,
    # Relabeling.
    relabel_mode: str = "policy_actions",
    relabel_tasks: int = 20,
    relabel_states: int = 100_000,
    relabel_every: int = 250,
    # Policy training.
    num_epochs: int = 10,
    steps_per_epoch: int = 1000,
    updates_per_step: int = 2,
    batch_size: int = 256,
    real_fraction: float = 0.05,
    reset_critic: bool = False,
    policy_context: str = "adapted",
    # The guard (beyond the paper).
    guard_episodes: int = 1,
    seed: int = 0,
) -> Dict[str, float]:
  """Runs Algorithm 2 on test task `task_index` of the run in `root_dir`.

  Args:
    root_dir: a meta-training run's directory (its checkpoint is read, never written).
    task_index: index into the family's test tasks.
    run: an already built run of root_dir's config (its checkpoint is restored again).
    context_steps: context gradient steps (N_fast in total).
    fast_steps: of which this many at the context rate, the rest at a tenth.
    context_lr: the context rate (default: the meta-training inner loop's, as the release).
    context_clip: the clip of the context gradient's norm (default: the inner loop's).
    model_steps: whole-model gradient steps after the context steps (0: context only).
    model_lr: learning rate of the whole-model steps.
    heldout_fraction: the tail of the task's data held out (the release split 80/20); the
      context and whole-model steps stop once its NLL stops improving (0: fixed counts).
    patience: steps without a better held-out NLL before a phase stops.
    relabel_mode: "policy_actions" or "reward_only" (see `mier_tf.relabel`).
    relabel_tasks: meta-training tasks whose states are relabeled.
    relabel_states: states relabeled each time.
    relabel_every: SAC steps between relabelings.
    num_epochs: epochs of policy training.
    steps_per_epoch: SAC steps per epoch.
    updates_per_step: SAC updates per step.
    batch_size: SAC batch size.
    real_fraction: share of the new task's own data in each batch.
    reset_critic: start policy training from freshly initialised critics (the actor stays
      the meta-trained one); the meta-trained critics' values are of the training tasks'
      rewards.
    policy_context: the context the policy acts on, in relabeling, training and
      evaluation: "adapted" (the model's phi_T, the paper's) or "mier_wr" (the meta-trained
      inner loop's, MIER-wR's: inside the range the policy was meta-trained on, while the
      model relabels with phi_T). Recorded in the settings only when not "adapted".
    guard_episodes: after relabeling, this many deterministic episodes on the task (from
      start states of their own, never the evaluation's) with the relabeled policy and with
      the meta-trained one (MIER-wR's policy and context); MIER keeps the better of the two.
      Their real steps count in the task's budget (`real_env_steps`). 0: no guard (the
      paper's Algorithm 2).
    seed: seed of relabeling and batch draws.

  Returns:
    {"mier_wr": mean return of the K protocol episodes before relabeling, "mier": after
     the last epoch (the same K start states), "mier_wr_returns" and "mier_returns" (each
     episode), "difference" (MIER - MIER-wR paired: mean, se, verdict), "mier_curve" (mean
     after each epoch), "mier_env_steps" (the checkpoint's), "protocol"}.
  """
  # What this call runs (every argument but the run's): recorded with the task's result, so
  # a resumed evaluation redoes a task done under other settings (`tasks_to_do`).
  arguments = dict(locals())
  settings = {name: arguments[name] for name in _setting_names()}
  if isinstance(guard_episodes, bool) or not isinstance(guard_episodes, int) or (
      guard_episodes < 0):
    raise ValueError(f"adapt_ood.guard_episodes must be an integer >= 0; got {guard_episodes!r}")
  if policy_context not in POLICY_CONTEXTS:
    raise ValueError(f"adapt_ood.policy_context must be one of {', '.join(POLICY_CONTEXTS)}; "
                     f"got {policy_context!r}")
  settings = _as_recorded(settings)
  if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
    raise ValueError(f"adapt_ood.num_epochs must be an integer >= 1 (MIER is the policy "
                     f"after relabeling); got {num_epochs!r}")
  run = restored_run(root_dir, run)
  tasks = run.family.test_tasks
  if not 0 <= task_index < len(tasks):
    raise ValueError(f"--task={task_index} out of range: {run.family.name} has {len(tasks)} "
                     f"test tasks (0..{len(tasks) - 1})")
  task = tasks[task_index]
  out_dir = os.path.join(root_dir, "adapt", f"task_{task_index}")
  # A task is relabeled from its start each time: an earlier attempt's curve would
  # otherwise be drawn under this one.
  summaries.truncate_event_files(out_dir, -1)
  writer = tf.summary.create_file_writer(out_dir)
  rng = np.random.default_rng([seed, task_index])

  evaluator = evaluation.Evaluator(run.family, evaluation.EvalProtocol())
  # MIER-wR: the meta-trained inner loop and the meta-trained policy, on the protocol's
  # adaptation data and K episodes (the same numbers meta-training's evaluation wrote).
  wr = evaluator.evaluate_task(run.eval_agent(), "test", task_index)
  real, context_wr = wr.data, wr.context
  adapted_model, context, adaptation = identify_task(
      run, real, context_steps, fast_steps, model_steps, model_lr, heldout_fraction, patience,
      context_lr, context_clip)
  adapted_context = context.numpy()
  # The model relabels on phi_T (`context`); the policy acts and learns on `acting`.
  acting = context if policy_context == "adapted" else tf.convert_to_tensor(context_wr,
                                                                            tf.float32)
  logging.info("Test task %d: held-out NLL %.3f (meta-trained inner loop) -> %.3f (%d context "
               "steps) -> %.3f (%d whole-model steps)", task_index,
               adaptation.heldout_nll_meta, adaptation.heldout_nll_context,
               adaptation.context_steps, adaptation.heldout_nll_model, adaptation.model_steps)

  # The meta-trained policy, kept for the guard (the actor's weights decide every action).
  actor_variables = run.agent.policy._actor_network.variables  # pylint: disable=protected-access
  meta_trained_actor = [v.numpy() for v in actor_variables]

  # Policy training on relabeled experience; each relabeling is scored against the
  # simulator where it can step from an observation (cheetah, ant: it is the state).
  mix = relabel.MixedBatches(real, real_fraction, batch_size, seed=seed)
  if reset_critic:
    sac.reset_critics(run.agent, seed=seed)
  scoring_env = run.family.make_env(task)
  scorable = getattr(scoring_env.unwrapped, "observation_is_state", False)
  errors, curve, step, mier_returns, relabel_stats = [], [], 0, wr.returns, []
  mier_wr = wr.mean
  with logging_redirect_tqdm(), tqdm.tqdm(
      total=num_epochs * steps_per_epoch, desc=f"adapt task {task_index}",
      unit="step", dynamic_ncols=True, leave=False) as bar:
    for epoch in range(num_epochs):
      for _ in range(steps_per_epoch):
        if step % relabel_every == 0:
          relabeled = relabel_experience(run, rng, adapted_model, context, relabel_mode,
                                         relabel_tasks, relabel_states, policy_context=acting)
          mix.set_relabeled(relabeled)
          relabel_stats.append(relabeled.stats)
          if scorable:
            errors.append(relabel.relabel_error(scoring_env, relabeled, seed=step))
        losses = train_policy_step(run, mix, acting, updates_per_step)
        step += 1
        bar.update(1)
      mier_returns = evaluate(run, evaluator, task_index, acting.numpy())
      curve.append(float(mier_returns.mean()))
      with writer.as_default(step=epoch + 1):
        summaries.write_adapt_epoch(curve[-1], mier_wr, losses,
                                    errors[-1] if errors else None)
      bar.set_postfix(mier=f"{curve[-1]:.1f}", mier_wr=f"{mier_wr:.1f}")
  scoring_env.close()
  guard = None
  if guard_episodes:
    # Both candidates on the same guard episodes; only these steps choose, so the protocol's
    # K evaluation episodes stay an unbiased measure of the choice.
    relabeled_returns = evaluator.guard_episodes(
        run.eval_agent().greedy_actor(), "test", task_index, acting.numpy(), guard_episodes)
    relabeled_weights = [v.numpy() for v in actor_variables]
    for variable, value in zip(actor_variables, meta_trained_actor):
      variable.assign(value)
    meta_returns = evaluator.guard_episodes(
        run.eval_agent().greedy_actor(), "test", task_index, context_wr, guard_episodes)
    keep = float(relabeled_returns.mean()) >= float(meta_returns.mean())
    if keep:
      for variable, value in zip(actor_variables, relabeled_weights):
        variable.assign(value)
    else:  # MIER is then MIER-wR's policy and context: its evaluation is MIER-wR's
      acting, mier_returns = tf.convert_to_tensor(context_wr), wr.returns
    guard = {"episodes": guard_episodes,
             "env_steps": int(2 * guard_episodes * run.family.max_episode_steps),
             "relabeled": float(relabeled_returns.mean()),
             "meta_trained": float(meta_returns.mean()),
             "chosen": "relabeled" if keep else "meta_trained"}
    logging.info("Test task %d: guard kept the %s policy (relabeled %.1f, meta-trained %.1f on "
                 "%d episodes of its own)", task_index, guard["chosen"], guard["relabeled"],
                 guard["meta_trained"], guard_episodes)
  writer.flush()

  evaluator.close()
  # The export pairs the policy with the context it acts on (the model's prior context).
  export_adapted(run, adapted_model, acting, os.path.join(out_dir, "export"))
  result = {"mier_wr": mier_wr, "mier_wr_returns": [float(r) for r in wr.returns],
            "mier": float(np.mean(mier_returns)),
            "mier_returns": [float(r) for r in mier_returns],
            "difference": evaluation.paired_difference(mier_returns, wr.returns),
            "mier_curve": curve, "mier_env_steps": int(run.env_steps.numpy()),
            "protocol": evaluator.protocol.describe(), "settings": settings,
            # Rows relabeled, dropped as non-finite, and ended by the family's healthy rule.
            "relabel_stats": relabel.combine_stats(relabel_stats),
            # The model's fit to the task: held-out NLL and the steps each phase took.
            "adaptation": {k: float(v) for k, v in adaptation._asdict().items()},
            # Where identification put the task: MIER-wR's context (the meta-trained inner
            # loop) and Algorithm 2's (before the guard's choice).
            "contexts": {"mier_wr": [float(x) for x in np.ravel(context_wr)],
                         "adapted": [float(x) for x in np.ravel(adapted_context)]},
            "guard": guard,
            # Real transitions of the task MIER used: the adaptation data and the guard's.
            "real_env_steps": evaluator.protocol.adapt_steps + (guard["env_steps"] if guard
                                                                 else 0)}
  if errors:  # averaged over the task's relabelings
    result["relabel_error"] = {key: float(np.mean([e[key] for e in errors]))
                               for key in errors[0]}
  record_result(run, root_dir, task_index, result)
  return result


_ADAPT_OOD = adapt_ood  # the function itself, whatever a caller patches in its place
_RUN_ARGUMENTS = ("root_dir", "task_index", "run")


def _setting_names() -> list:
  return [name for name in inspect.signature(_ADAPT_OOD).parameters
          if name not in _RUN_ARGUMENTS]


def _as_recorded(settings: dict) -> dict:
  """The settings as a task's result records them: an option added later is left out at
  its default, so results recorded before it existed stay current."""
  if settings.get("policy_context") == "adapted":
    settings = {k: v for k, v in settings.items() if k != "policy_context"}
  return settings


def algorithm2_settings() -> dict:
  """The settings `adapt_ood` runs with today: its defaults under the gin bindings in force
  (what a task's result records as "settings" when it is called through gin)."""
  params = inspect.signature(_ADAPT_OOD).parameters
  settings = {name: params[name].default for name in _setting_names()}
  settings.update({k: v for k, v in gin.get_bindings(_ADAPT_OOD).items() if k in settings})
  return _as_recorded(settings)


def tasks_to_do(root_dir: str, run, indices: Sequence[int]) -> list:
  """The tasks of `indices` that eval/results.json has no MIER result of for this very
  checkpoint, protocol and Algorithm 2 settings: a resumed evaluation keeps the tasks it
  finished and never keeps one done under other settings (a stale result)."""
  done = results_lib.read_results(root_dir)["test_tasks"]
  wanted = {"mier_env_steps": int(run.env_steps.numpy()),
            "protocol": evaluation.EvalProtocol().describe(),
            "settings": algorithm2_settings()}
  return [i for i in indices if not ("mier" in done.get(str(i), {}) and all(
      done[str(i)].get(key) == value for key, value in wanted.items()))]


@gin.configurable
def adapt_all_test_tasks(root_dir: str, task_indices: Optional[Sequence[int]] = None,
                         skip_done: bool = False) -> list:
  """Runs `adapt_ood` on the chosen test tasks (default all) of the run in root_dir.

  Args:
    root_dir: a meta-training run's directory.
    task_indices: test task indices (default all).
    skip_done: leave out tasks that eval/results.json already has a MIER result of for this
      checkpoint, protocol and settings (`tasks_to_do`: a resumed job continues where it
      was interrupted, a job with other settings redoes every task).
  """
  run = restored_run(root_dir)
  indices = (list(range(len(run.family.test_tasks))) if task_indices is None
             else list(task_indices))
  if skip_done:
    indices = tasks_to_do(root_dir, run, indices)
  returns = [adapt_ood(root_dir, i, run=run) for i in indices]
  # MIER in eval/mier/ at the checkpoint's env steps, beside MIER-wR (every task relabeled
  # from this checkpoint, as results.json has them: a resumed job writes them once, at its end).
  summaries.write_mier_at_checkpoint(root_dir, results_lib.read_results(root_dir),
                                     int(run.env_steps.numpy()))
  return returns
