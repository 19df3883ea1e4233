"""Tests of mier_tf.model.adaptation: inner loop, meta-gradient, meta-training, Algorithm 2."""
import numpy as np
import pytest
import tensorflow as tf

from mier_tf.model import (ContextualDynamicsModel, InnerLoop, MetaTrainer, adapt_context,
                           continue_adaptation, meta_loss)


def _linear_tasks(rng, ks, samples, obs_dim=1, noise=0.05, dtype=np.float32):
  """Synthetic family: s' = s + k * a, r = k * s_0 (+ noise); the task is k. Batch [T, N]."""
  ks = np.asarray(ks, np.float64)
  obs = rng.normal(size=(len(ks), samples, obs_dim))
  act = rng.uniform(-1., 1., size=(len(ks), samples, obs_dim))
  next_obs = obs + ks[:, None, None] * act + noise * rng.normal(size=obs.shape)
  reward = ks[:, None] * obs[..., 0] + noise * rng.normal(size=obs.shape[:2])
  return {key: value.astype(dtype) for key, value in dict(
      observation=obs, action=act, next_observation=next_obs, reward=reward).items()}


def _task(batch, t):
  return {key: value[t] for key, value in batch.items()}


# ------------------------------------------------------------------------------------------
# The meta-gradient.

def _flat(tensors):
  return np.concatenate([np.asarray(t).ravel() for t in tensors])


def test_meta_gradient_matches_finite_differences_and_is_second_order():
  tf.keras.utils.set_random_seed(0)
  rng = np.random.default_rng(1)
  model = ContextualDynamicsModel(2, 1, context_dim=2, hidden_sizes=(8, 8), dtype=tf.float64)
  ks = [-1., 0.3, 1.5]
  adapt_batch = _linear_tasks(rng, ks, 6, obs_dim=2, noise=0.1, dtype=np.float64)
  eval_batch = _linear_tasks(rng, ks, 6, obs_dim=2, noise=0.1, dtype=np.float64)
  # The action has one dimension here: keep the first column.
  for batch in (adapt_batch, eval_batch):
    batch["action"] = batch["action"][..., :1]
  model.update_normalizer(adapt_batch)
  model.context.assign([0.3, -0.2])
  lr, clip_norm = 0.5, 0.2

  # The clip is active for one task and not for the others at the first inner step, so the
  # check covers the derivative of the clipped and of the plain step.
  first_step = adapt_context(model, adapt_batch, 1, 1., clip_norm=1e9)
  norms = np.linalg.norm(first_step.numpy() - model.context.numpy(), axis=-1)
  assert norms.max() > 1.1 * clip_norm and norms.min() < 0.9 * clip_norm

  variables = model.trainable_variables
  def gradient(first_order):
    with tf.GradientTape() as tape:
      loss = meta_loss(model, adapt_batch, eval_batch, 2, lr, clip_norm=clip_norm,
                       first_order=first_order)
    return _flat(tape.gradient(loss, variables))
  second_order, first_order = gradient(False), gradient(True)

  loss_fn = tf.function(
      lambda: meta_loss(model, adapt_batch, eval_batch, 2, lr, clip_norm=clip_norm))
  eps, numeric = 1e-6, []
  for var in variables:
    value = var.numpy()
    for index in np.ndindex(value.shape):
      shifted = value.copy()
      shifted[index] += eps
      var.assign(shifted)
      up = float(loss_fn())
      shifted[index] -= 2 * eps
      var.assign(shifted)
      down = float(loss_fn())
      numeric.append((up - down) / (2 * eps))
    var.assign(value)
  numeric = np.array(numeric)

  scale = np.abs(numeric).max()
  assert np.abs(second_order - numeric).max() < 1e-6 * scale
  # Every group receives gradient: weights, log-variance bounds and the initial context.
  assert np.abs(second_order[-2:]).max() > 1e-3 * scale  # model.context is last
  # The first-order approximation is measurably different.
  assert np.linalg.norm(first_order - numeric) > 0.05 * np.linalg.norm(numeric)


# ------------------------------------------------------------------------------------------
# The inner loop.

def test_vectorised_adaptation_equals_each_task_alone_with_per_task_clipping():
  tf.keras.utils.set_random_seed(2)
  rng = np.random.default_rng(2)
  model = ContextualDynamicsModel(1, 1, context_dim=3, hidden_sizes=(16, 16))
  batch = _linear_tasks(rng, [-1., -0.2, 0.4, 1.], 20)
  model.update_normalizer(batch)
  model.context.assign([0.1, -0.3, 0.2])
  lr = 0.1

  # One step without clipping gives each task's gradient norm.
  free = adapt_context(model, batch, 1, lr, clip_norm=1e9).numpy()
  grad_norms = np.linalg.norm(free - model.context.numpy(), axis=-1) / lr
  clip_norm = float(np.median(grad_norms))
  assert grad_norms.min() < clip_norm < grad_norms.max()
  clipped = adapt_context(model, batch, 1, lr, clip_norm=clip_norm).numpy()
  steps = np.linalg.norm(clipped - model.context.numpy(), axis=-1)
  np.testing.assert_allclose(steps, lr * np.minimum(grad_norms, clip_norm), rtol=1e-4)

  # Several steps over all tasks at once == each task alone.
  together = adapt_context(model, batch, 3, lr, clip_norm=clip_norm).numpy()
  assert together.shape == (4, 3)
  for t in range(4):
    alone = adapt_context(model, _task(batch, t), 3, lr, clip_norm=clip_norm).numpy()
    assert alone.shape == (3,)
    np.testing.assert_allclose(together[t], alone, rtol=1e-5, atol=1e-6)

  # A reward of shape [..., 1] is the same as [...].
  with_axis = dict(batch, reward=batch["reward"][..., None])
  np.testing.assert_array_equal(adapt_context(model, with_axis, 3, lr, clip_norm=clip_norm),
                                together)
  # A given starting context is used instead of model.context; zero steps return it.
  start = rng.normal(size=(4, 3)).astype(np.float32)
  np.testing.assert_array_equal(adapt_context(model, batch, 0, lr, context=start), start)


# ------------------------------------------------------------------------------------------
# Meta-training on the synthetic family.

TRAIN_KS = (-1., 1.)
OOD_K = 2.5


@pytest.fixture(scope="module")
def meta_trained():
  """A small model meta-trained for 300 steps on k ~ U(-1, 1); about 10 s on 2 cores."""
  tf.keras.utils.set_random_seed(3)
  rng = np.random.default_rng(3)
  model = ContextualDynamicsModel(1, 1, context_dim=2, hidden_sizes=(32, 32))
  model.update_normalizer(_linear_tasks(rng, rng.uniform(*TRAIN_KS, 50), 40))
  trainer = MetaTrainer(model, InnerLoop(steps=2, lr=0.1), learning_rate=3e-3)
  for _ in range(300):
    ks = rng.uniform(*TRAIN_KS, 8)
    info = trainer.step(_linear_tasks(rng, ks, 32), _linear_tasks(rng, ks, 32))
  return model, trainer, info


def test_meta_training_makes_adaptation_work_in_and_out_of_distribution(meta_trained):
  model, trainer, info = meta_trained
  assert info.contexts.shape == (8, 2)
  assert float(info.nll_after_adapt) < float(info.nll_before_adapt)
  rng = np.random.default_rng(4)

  # Held-out tasks from the training range: adaptation lowers the NLL on fresh data a lot.
  ks = rng.uniform(*TRAIN_KS, 20)
  adapt_batch, eval_batch = _linear_tasks(rng, ks, 64), _linear_tasks(rng, ks, 64)
  before = float(model.nll(eval_batch))
  after = float(meta_loss(model, adapt_batch, eval_batch, trainer.inner.steps,
                          trainer.inner.lr))
  assert after < before - 1.0, (before, after)

  # Outside the training range, more steps keep lowering the loss (consistency).
  adapt_batch, eval_batch = _linear_tasks(rng, [OOD_K], 64), _linear_tasks(rng, [OOD_K], 64)
  losses = [float(meta_loss(model, adapt_batch, eval_batch, steps, trainer.inner.lr))
            for steps in (0, 2, 10, 50)]
  assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses


def test_continue_adaptation_improves_a_copy_and_leaves_the_model_alone(meta_trained):
  model, trainer, _ = meta_trained
  rng = np.random.default_rng(5)
  train = _task(_linear_tasks(rng, [OOD_K], 200), 0)
  held_out = _task(_linear_tasks(rng, [OOD_K], 200), 0)
  original = [v.numpy().copy() for v in model.variables]

  adapted, context, report = continue_adaptation(model, train, context_steps=10,
                                                 context_lr=trainer.inner.lr, fast_steps=2,
                                                 model_steps=100, model_lr=1e-3)
  assert (report.context_steps, report.model_steps, report.heldout_rows) == (10, 100, 0)

  for old, var in zip(original, model.variables):
    np.testing.assert_array_equal(old, var.numpy())
  np.testing.assert_array_equal(adapted.context.numpy(), context.numpy())
  context_only = float(model.nll(held_out, context))
  assert context_only < float(model.nll(held_out))
  assert float(adapted.nll(held_out, context)) < context_only - 0.1


def test_continue_adaptation_context_schedule():
  # With a tiny clip every context step has norm lr * clip in a (nearly) fixed direction, so
  # the distance travelled is clip * (fast_steps * lr + (steps - fast_steps) * lr / 10).
  tf.keras.utils.set_random_seed(6)
  rng = np.random.default_rng(6)
  model = ContextualDynamicsModel(1, 1, context_dim=2, hidden_sizes=(8,))
  batch = _task(_linear_tasks(rng, [0.5], 50), 0)
  _, context, _ = continue_adaptation(model, batch, context_steps=10, context_lr=1.,
                                      fast_steps=2, model_steps=0, clip_norm=1e-4)
  assert np.linalg.norm(context.numpy()) == pytest.approx(1e-4 * (2 + 8 / 10), rel=1e-3)


def _concat(a, b):
  return {k: np.concatenate([a[k], b[k]]) for k in a}


def test_continue_adaptation_stops_on_held_out_data(meta_trained):
  """The held-out curve worked out independently (Adam by hand on the adaptation rows
  alone, the loss written out here, each step scored on the held-out rows): the phase must
  stop `patience` steps after that curve's minimum and keep the weights of the minimum."""
  from mier_tf.model.dynamics import clone_model  # pylint: disable=import-outside-toplevel
  model, trainer, _ = meta_trained
  rng = np.random.default_rng(8)
  train = _task(_linear_tasks(rng, [OOD_K], 160), 0)
  other = _task(_linear_tasks(rng, [-OOD_K], 40), 0)  # held out: another task's rows
  patience, cap, lr = 3, 40, 1e-2
  start = float(model.nll(other, model.context))
  by_hand = clone_model(model)
  weights = [v for v in by_hand.trainable_variables if v is not by_hand.context]
  adam, curve = tf.keras.optimizers.Adam(lr), []
  for _ in range(cap):
    with tf.GradientTape() as tape:
      loss = by_hand.nll(train, by_hand.context) + 0.01 * (
          tf.reduce_sum(by_hand.max_logvar) - tf.reduce_sum(by_hand.min_logvar))
    adam.apply_gradients(zip(tape.gradient(loss, weights), weights))
    curve.append(float(by_hand.nll(other, by_hand.context)))
  best, best_step, since, expected_steps = start, 0, 0, cap
  for step, nll in enumerate(curve, 1):
    if nll < best:
      best, best_step, since = nll, step, 0
    else:
      since += 1
      if since >= patience:
        expected_steps = step
        break
  assert expected_steps < cap, "the curve must turn up within the cap for this test"

  adapted, context, report = continue_adaptation(
      model, _concat(train, other), context_steps=0, model_steps=cap, model_lr=lr,
      heldout_fraction=0.2, patience=patience, inner=trainer.inner)
  assert (report.adapt_rows, report.heldout_rows) == (160, 40)
  assert report.model_steps == expected_steps
  assert report.heldout_nll_model == pytest.approx(best, rel=1e-4)
  assert float(adapted.nll(other, context)) == pytest.approx(best, rel=1e-4)
  assert report.heldout_nll_context == pytest.approx(start, rel=1e-5)
  assert np.isfinite(report.heldout_nll_meta)

  # Held-out rows of the task itself: the steps lower their NLL.
  same = _task(_linear_tasks(rng, [OOD_K], 40), 0)
  _, _, report = continue_adaptation(
      model, _concat(train, same), context_steps=10, context_lr=trainer.inner.lr,
      model_steps=200, model_lr=1e-3, heldout_fraction=0.2, patience=5)
  assert report.context_steps >= 1
  assert report.heldout_nll_model < report.heldout_nll_context - 0.1


# ------------------------------------------------------------------------------------------
# The trainer.

@pytest.mark.parametrize("train_initial_context", [False, True])
def test_meta_trainer_traces_once_updates_every_variable_and_checks_numerics(
    train_initial_context):
  tf.keras.utils.set_random_seed(7)
  rng = np.random.default_rng(7)
  model = ContextualDynamicsModel(1, 1, context_dim=2, hidden_sizes=(8,))
  trainer = MetaTrainer(model, train_initial_context=train_initial_context)
  before = [v.numpy().copy() for v in model.trainable_variables]
  for _ in range(3):
    ks = rng.uniform(-1, 1, 4)
    trainer.step(_linear_tasks(rng, ks, 10), _linear_tasks(rng, ks, 10))
  assert trainer._step.experimental_get_tracing_count() == 1
  for old, var in zip(before, model.trainable_variables):
    if var is model.context and not train_initial_context:
      # The release's choice: the initial context stays at zero.
      np.testing.assert_array_equal(var.numpy(), np.zeros(2))
    else:
      assert not np.array_equal(old, var.numpy()), var.name

  bad = _linear_tasks(rng, ks, 10)
  bad["next_observation"][0, 0, 0] = np.nan
  state = [v.numpy().copy() for v in model.variables]
  with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or infinite"):
    trainer.step(bad, _linear_tasks(rng, ks, 10))
  for old, var in zip(state, model.variables):
    np.testing.assert_array_equal(old, var.numpy())


def test_the_inner_loop_is_configured_in_one_place():
  import gin  # pylint: disable=import-outside-toplevel
  model = ContextualDynamicsModel(3, 2, context_dim=2, hidden_sizes=(8,))
  gin.clear_config()
  try:
    gin.parse_config(["InnerLoop.steps = 3", "InnerLoop.lr = 0.5", "InnerLoop.clip_norm = 2.0"])
    inner = InnerLoop()
    assert (inner.steps, inner.lr, inner.clip_norm) == (3, 0.5, 2.0)
    assert MetaTrainer(model).inner.lr == 0.5  # the trainer's default is the configured one
    with pytest.raises(ValueError, match="doesn't have a parameter named 'inner_lr'"):
      gin.parse_config(["MetaTrainer.inner_lr = 0.1"])  # no longer silently ignored
  finally:
    gin.clear_config()
  for bad in (dict(steps=-1), dict(lr=0.0), dict(clip_norm="x")):
    with pytest.raises(ValueError, match="InnerLoop"):
      InnerLoop(**bad)
