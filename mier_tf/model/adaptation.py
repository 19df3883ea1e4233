"""Model identification: context adaptation (the inner loop), the meta-loss and its trainer.

Algorithm 1 of the paper, model part:
  phi_T = phi - alpha * clip(grad_phi NLL(D_adapt; theta, phi))      (repeated `steps` times)
  minimise over theta, phi:  NLL(D_eval; theta, phi_T)                (second order)
and the model part of Algorithm 2 (`continue_adaptation`): more context steps, then steps on
all weights of a copy of the model, on the new task's data.

All tasks of a meta-batch are adapted in one vectorised pass: the batch has leading dims
[tasks, samples], the context [tasks, ctx]; the loss summed over tasks of each task's mean
NLL has, as its gradient with respect to row t of the context, exactly task t's gradient.
"""
import collections
import logging
from typing import Optional, Tuple

import gin
import tensorflow as tf

from mier_tf.model.dynamics import Batch, ContextualDynamicsModel, clone_model

MetaTrainInfo = collections.namedtuple(
    "MetaTrainInfo",
    ["meta_loss",         # the minimised objective: nll_after_adapt + logvar-bound penalty
     "nll_before_adapt",  # NLL(D_eval; prior context), mean over tasks (NaN if not computed)
     "nll_after_adapt",   # NLL(D_eval; adapted context), mean over tasks
     "grad_norm",         # global norm of the outer gradient before clipping
     "contexts"])         # adapted contexts [tasks, ctx] (to tag the SAC batch)


@gin.configurable
class InnerLoop:
  """Model identification's inner loop: the one home of its settings.

  Meta-training, collection with the adapted context, evaluation, the exported `adapt`
  signature and Algorithm 2's context steps all read them from here (bind `InnerLoop.*`).

  Args:
    steps: context gradient steps per task (release: 2).
    lr: context step size alpha (release: 0.01).
    clip_norm: each task's context gradient is clipped to this L2 norm (release: 10).
  """

  def __init__(self, steps: int = 2, lr: float = 0.01, clip_norm: float = 10.0):
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
      raise ValueError(f"InnerLoop.steps must be an integer >= 0; got {steps!r}")
    for name, value in (("lr", lr), ("clip_norm", clip_norm)):
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"InnerLoop.{name} must be a number > 0; got {value!r}")
    self.steps, self.lr, self.clip_norm = steps, float(lr), float(clip_norm)

  def adapt(self, model: ContextualDynamicsModel, batch: Batch,
            first_order: bool = False) -> tf.Tensor:
    """Adapted contexts [tasks, c] of a batch [tasks, n, ...] (see `adapt_context`)."""
    return adapt_context(model, batch, self.steps, self.lr, clip_norm=self.clip_norm,
                         first_order=first_order)

  def __repr__(self) -> str:
    return f"InnerLoop(steps={self.steps}, lr={self.lr}, clip_norm={self.clip_norm})"


def adapt_context(model: ContextualDynamicsModel,
                  batch: Batch,
                  steps: int,
                  lr: float,
                  context: Optional[tf.Tensor] = None,
                  clip_norm: float = 10.,
                  first_order: bool = False) -> tf.Tensor:
  """Gradient steps on the context only: c <- c - lr * clip_by_norm(grad_c NLL(batch; c)).

  Differentiable: when called under a GradientTape, the returned context carries the second
  order dependence on the weights and on the initial context (unless `first_order`).

  Args:
    model: the dynamics model (its weights are not changed).
    batch: dict with observation, action, next_observation, reward; leading dims
      [tasks, samples] (one context row per task) or [samples].
    steps: number of gradient steps (a Python int; the loop is unrolled).
    lr: step size alpha.
    context: starting context, [ctx] (shared) or [tasks, ctx]; None uses `model.context`.
    clip_norm: each task's gradient is clipped to this L2 norm (the release used 10).
    first_order: stop gradients through the inner gradients (first-order MAML
      approximation; used by tests and for cheap adaptation when no meta-gradient is needed).

  Returns:
    The adapted context, [tasks, ctx] or [ctx] (batch's leading dims without the samples).
  """
  obs = tf.convert_to_tensor(batch["observation"])
  task_shape = tf.shape(obs)[:-2]
  start = model.context if context is None else tf.cast(context, model.dtype)
  context = tf.broadcast_to(start, tf.concat([task_shape, [model.context_dim]], axis=0))
  for _ in range(steps):
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(context)
      # Sum over tasks of each task's mean NLL: row t of the gradient is task t's gradient.
      loss = tf.reduce_sum(tf.reduce_mean(model.sample_nll(batch, context), axis=-1))
    grad = tape.gradient(loss, context)
    if first_order:
      grad = tf.stop_gradient(grad)
    grad = tf.clip_by_norm(grad, clip_norm, axes=[-1])
    context = context - lr * grad
  return context


def meta_loss(model: ContextualDynamicsModel, adapt_batch: Batch, eval_batch: Batch,
              steps: int, lr: float, clip_norm: float = 10.,
              first_order: bool = False) -> tf.Tensor:
  """Mean over tasks of NLL(eval_batch[t]; context adapted on adapt_batch[t]).

  Args:
    model: the dynamics model.
    adapt_batch: batch with leading dims [tasks, samples] (or [samples]) to adapt on.
    eval_batch: batch of the same tasks, [tasks, samples'] (or [samples']).
    steps: inner steps. lr: inner step size. clip_norm: per-task inner gradient clip.
    first_order: see `adapt_context`.

  Returns:
    Scalar meta-loss (normalised target space, see `ContextualDynamicsModel.sample_nll`).
  """
  return meta_loss_and_contexts(model, adapt_batch, eval_batch, steps, lr, clip_norm,
                                first_order)[0]


def meta_loss_and_contexts(model: ContextualDynamicsModel, adapt_batch: Batch,
                           eval_batch: Batch, steps: int, lr: float, clip_norm: float = 10.,
                           first_order: bool = False) -> Tuple[tf.Tensor, tf.Tensor]:
  """`meta_loss`, and the adapted contexts [tasks, c] it scored (what MetaTrainer trains on)."""
  context = adapt_context(model, adapt_batch, steps, lr, clip_norm=clip_norm,
                          first_order=first_order)
  # Every task has the same number of eval samples, so the mean over all transitions is the
  # mean over tasks of each task's mean.
  return model.nll(eval_batch, context), context


@gin.configurable
class MetaTrainer:
  """One meta-training step of the model (Algorithm 1): Adam on the second-order meta-loss.

  The gradient reaches the network weights, the log-variance bounds and, if
  `train_initial_context`, the initial context `model.context` (the paper optimises it;
  the original release left it out of its optimiser, so it stayed at zero). The outer gradient is clipped to
  global norm `clip_norm`; the release clipped each variable's gradient to norm 10 and kept
  all weights in one flat vector, which is the same except for the log-variance bounds.
  """

  def __init__(self,
               model: ContextualDynamicsModel,
               inner: Optional[InnerLoop] = None,
               learning_rate: float = 1e-3,
               clip_norm: float = 10.,
               logvar_bound_weight: float = 0.01,
               train_initial_context: bool = False):
    """Creates the trainer and its optimiser.

    Args:
      model: the model to train.
      inner: the inner loop (default: `InnerLoop()` as gin configures it).
      learning_rate: Adam step size of the outer update (release: 1e-3).
      clip_norm: clip of the outer gradient's global norm (release: 10).
      logvar_bound_weight: weight of sum(max_logvar) - sum(min_logvar) in the training loss
        (the release's 0.01); it keeps the learned bounds from drifting apart.
      train_initial_context: whether the outer step also moves the initial context phi.
        Default False, as the release: see docs/IDENTIFICATION.md for the
        measurement behind the choice.
    """
    self.model = model
    self.inner = inner if inner is not None else InnerLoop()
    self.clip_norm = float(clip_norm)
    self.logvar_bound_weight = float(logvar_bound_weight)
    self.train_initial_context = bool(train_initial_context)
    self.variables = [v for v in model.trainable_variables
                      if self.train_initial_context or v is not model.context]
    # The Keras 2 (non-legacy) optimiser; the lead checkpoints it.
    self.optimizer = tf.keras.optimizers.Adam(learning_rate)
    # Slot variables exist from the start: a checkpoint restores into them before any step,
    # and the step function creates no variables (so it is traced once per batch shape).
    self.optimizer.build(self.variables)
    self._step = tf.function(self._train_step)

  def step(self, adapt_batch: Batch, eval_batch: Batch) -> MetaTrainInfo:
    """One Adam step on the meta-loss; traced once per batch shape.

    Args:
      adapt_batch: batch [tasks, samples] from each task's adaptation (prior-context) table.
      eval_batch: batch [tasks, samples'] of the same tasks from their full tables.

    Returns:
      MetaTrainInfo of scalar tensors (and the adapted contexts).

    Raises:
      tf.errors.InvalidArgumentError: the meta-loss or its gradient is NaN or infinite (the
        variables are then left unchanged).
    """
    return self._step(adapt_batch, eval_batch)

  def _train_step(self, adapt_batch: Batch, eval_batch: Batch,
                  with_nll_before: bool = True) -> MetaTrainInfo:
    """The step's graph; `with_nll_before=False` skips the logging-only prior-context NLL."""
    model = self.model
    variables = self.variables
    nll_before = (model.nll(eval_batch, model.context) if with_nll_before
                  else tf.constant(float("nan"), model.dtype))
    with tf.GradientTape() as tape:
      # The meta-loss the finite-difference test checks (tests/test_adaptation.py).
      nll_after, contexts = meta_loss_and_contexts(
          model, adapt_batch, eval_batch, self.inner.steps, self.inner.lr, self.inner.clip_norm)
      loss = nll_after + self.logvar_bound_weight * model.logvar_bound_penalty()
    grads = tape.gradient(loss, variables)
    loss = tf.debugging.check_numerics(
        loss, "MetaTrainer: the model meta-loss is NaN or infinite (check the data, the "
        "normaliser and the learning rates)")
    grad_norm = tf.debugging.check_numerics(
        tf.linalg.global_norm(grads),
        "MetaTrainer: the meta-gradient is NaN or infinite")
    # use_norm=grad_norm makes the update depend on the check above.
    grads, _ = tf.clip_by_global_norm(grads, self.clip_norm, use_norm=grad_norm)
    self.optimizer.apply_gradients(zip(grads, variables))
    return MetaTrainInfo(meta_loss=loss, nll_before_adapt=nll_before,
                         nll_after_adapt=nll_after, grad_norm=grad_norm, contexts=contexts)


def _split_heldout(batch: Batch, heldout_fraction: float) -> Tuple[Batch, Optional[Batch]]:
  """The last `heldout_fraction` of the rows (in collection order) held out, the rest kept.

  A contiguous tail, not a random subset: consecutive transitions of one episode are nearly
  the same, and a random split would score the model on rows it was fitted on, in effect.
  """
  n = int(next(iter(batch.values())).shape[0])
  held = int(round(n * heldout_fraction))
  if heldout_fraction <= 0:
    return batch, None
  if held < 1 or held >= n:
    raise ValueError(f"adapt_ood.heldout_fraction {heldout_fraction} leaves no rows to "
                     f"{'hold out' if held < 1 else 'adapt on'} of {n}")
  return ({k: v[:n - held] for k, v in batch.items()},
          {k: v[n - held:] for k, v in batch.items()})


AdaptationReport = collections.namedtuple(
    "AdaptationReport",
    ["heldout_nll_meta",       # held-out NLL with the meta-trained inner loop's context
     "heldout_nll_context",    # ... after the context steps (the best one kept)
     "heldout_nll_model",      # ... after the whole-model steps (the best weights kept)
     "context_steps",          # context steps taken (up to the cap)
     "model_steps",            # whole-model steps taken (up to the cap)
     "adapt_rows", "heldout_rows"])


def continue_adaptation(model: ContextualDynamicsModel,
                        batch: Batch,
                        context_steps: int = 10,
                        context_lr: float = 0.01,
                        fast_steps: int = 2,
                        model_steps: int = 100,
                        model_lr: float = 1e-3,
                        clip_norm: float = 10.,
                        logvar_bound_weight: float = 0.01,
                        heldout_fraction: float = 0.0,
                        patience: int = 10,
                        inner: Optional["InnerLoop"] = None,
                        ) -> Tuple[ContextualDynamicsModel, tf.Tensor, AdaptationReport]:
  """Test-time model adaptation of Algorithm 2 on one new task; `model` is left unchanged.

  1. Context steps from `model.context`: the first `fast_steps` at `context_lr`, the rest at
     `context_lr / 10` (as the release did, with `fast_steps` equal to the meta-training
     inner steps).
  2. Full-batch Adam steps (lr `model_lr`) on all weights and log-variance bounds of a
     *copy* of the model, on NLL(batch; adapted context) + the bound penalty, the context
     held fixed.

  Without held-out data (`heldout_fraction` 0, the release's count) each phase takes its
  full number of steps. With it, the last `heldout_fraction` of the task's rows are held out
  and each phase stops once the held-out NLL has not improved for `patience` steps (the
  step counts are caps); the context and the weights of the best held-out NLL are kept.

  Args:
    model: the meta-trained model (not modified).
    batch: the new task's transitions, leading dims [samples], in collection order.
    context_steps: the most context steps (release: 10; 20 for ant direction).
    context_lr: alpha of the first `fast_steps` steps (release: 0.01).
    fast_steps: steps at the full `context_lr`.
    model_steps: the most whole-model steps (release: 100; 0 for ant direction and negated
      joints).
    model_lr: Adam step size of the whole-model steps (release: the model's 1e-3).
    clip_norm: clip of the context gradient.
    logvar_bound_weight: weight of the log-variance bound penalty in the model steps.
    heldout_fraction: share of the rows held out to stop on (0: none, fixed step counts).
    patience: steps without a better held-out NLL before a phase stops.
    inner: the meta-training inner loop, to report the held-out NLL of its context.

  Returns:
    (adapted copy of the model whose `context` is set to the adapted context, the adapted
    context [ctx], an AdaptationReport; its held-out fields are nan without held-out data).
  """
  batch = {key: tf.convert_to_tensor(value) for key, value in batch.items()}
  train, heldout = _split_heldout(batch, heldout_fraction)
  score = ((lambda m, c: float(m.nll(heldout, c))) if heldout is not None
           else (lambda m, c: float("nan")))
  nll_meta = (score(model, inner.adapt(model, train)) if inner is not None
              else float("nan"))

  # 1. Context steps, one at a time, the best held-out one kept.
  context = tf.identity(model.context)
  best_context, best, since, taken = context, score(model, context), 0, 0
  for step in range(context_steps):
    lr = context_lr if step < fast_steps else context_lr / 10.
    context = adapt_context(model, train, 1, lr, context=context, clip_norm=clip_norm)
    taken += 1
    if heldout is None:
      best_context = context
      continue
    nll = score(model, context)
    if nll < best:
      best_context, best, since = context, nll, 0
    else:
      since += 1
      if since >= patience:
        break
  context, context_taken = best_context, taken
  adapted = clone_model(model)
  adapted.context.assign(context)
  nll_context = score(adapted, context)
  model_taken = 0
  if model_steps > 0:
    # Weights and log-variance bounds; the context stays where the context steps left it.
    variables = [v for v in adapted.trainable_variables if v is not adapted.context]
    optimizer = tf.keras.optimizers.Adam(model_lr)

    @tf.function
    def train_step():
      with tf.GradientTape() as tape:
        nll = adapted.nll(train, context)
        loss = nll + logvar_bound_weight * adapted.logvar_bound_penalty()
      optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
      return nll

    nll_start = adapted.nll(train, context)
    best, since = nll_context, 0
    best_values = [v.numpy() for v in variables]
    for _ in range(model_steps):
      train_step()
      model_taken += 1
      if heldout is None:
        continue
      nll = score(adapted, context)
      if nll < best:
        best, since, best_values = nll, 0, [v.numpy() for v in variables]
      else:
        since += 1
        if since >= patience:
          break
    if heldout is not None:
      for variable, value in zip(variables, best_values):
        variable.assign(value)
    logging.info("continue_adaptation: NLL %.3f -> %.3f after %d whole-model steps.",
                 float(nll_start), float(adapted.nll(train, context)), model_taken)
  report = AdaptationReport(
      heldout_nll_meta=nll_meta, heldout_nll_context=nll_context,
      heldout_nll_model=score(adapted, context), context_steps=context_taken,
      model_steps=model_taken, adapt_rows=int(next(iter(train.values())).shape[0]),
      heldout_rows=0 if heldout is None else int(next(iter(heldout.values())).shape[0]))
  return adapted, context, report
