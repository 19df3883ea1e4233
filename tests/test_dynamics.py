"""Tests of mier_tf.model.dynamics: likelihood, soft bounds, normaliser, predictions, saving."""
import math

import numpy as np
import pytest
import tensorflow as tf

from mier_tf.model import ContextualDynamicsModel, MetaTrainer, clone_model


def _random_batch(rng, leading, obs_dim, act_dim):
  obs = rng.normal(size=leading + (obs_dim,))
  return dict(observation=obs.astype(np.float32),
              action=rng.uniform(-1, 1, leading + (act_dim,)).astype(np.float32),
              next_observation=(obs + rng.normal(size=obs.shape)).astype(np.float32),
              reward=rng.normal(3., 2., size=leading).astype(np.float32))


def _constant_output_model(mean, raw_logvar, target_mean, target_std, **kwargs):
  """obs n, act 1, ctx 1 joint model whose output layer emits constants (zero kernels)."""
  obs_dim = len(mean) - 1
  model = ContextualDynamicsModel(obs_dim, 1, context_dim=1, hidden_sizes=(4,),
                                  dtype=tf.float64, **kwargs)
  for var in model.trainable_variables:
    if "kernel" in var.name:
      var.assign(tf.zeros_like(var))
  model._towers[0][-1].bias.assign(np.concatenate([mean, raw_logvar]))
  model.target_mean.assign(target_mean)
  model.target_std.assign(target_std)
  return model


def _softplus(x):
  return math.log1p(math.exp(x))


def test_nll_and_log_prob_match_hand_computation():
  mean, raw_logvar = [0.5, -1.0], [0.2, -0.7]
  target_mean, target_std = [1., 2.], [2., 4.]
  model = _constant_output_model(mean, raw_logvar, target_mean, target_std,
                                 loss_weighting="dimensions")
  batch = dict(observation=[[1.], [2.]], action=[[0.3], [-0.3]],
               next_observation=[[3.], [1.5]], reward=[1., 3.])
  # Targets (delta s, r) = (2, 1) and (-0.5, 3); normalised: ((2-1)/2, (1-2)/4) etc.
  targets_n = [[0.5, -0.25], [-0.75, 0.25]]
  # Soft bounds with max 0.5, min -10: lv <- 0.5 - softplus(0.5 - lv); -10 + softplus(lv + 10).
  logvar = []
  for lv in raw_logvar:
    lv = 0.5 - _softplus(0.5 - lv)
    logvar.append(-10. + _softplus(lv + 10.))
  per_sample = [0.5 * sum((y - m) ** 2 / math.exp(lv) + lv + math.log(2 * math.pi)
                          for y, m, lv in zip(row, mean, logvar)) for row in targets_n]
  assert model.sample_nll(batch).numpy() == pytest.approx(per_sample, rel=1e-12)
  assert float(model.nll(batch)) == pytest.approx(np.mean(per_sample), rel=1e-12)

  # Raw units: the same density with the Jacobian of y = y_n * std + mean.
  dist = model.distribution(np.array(batch["observation"]), np.array(batch["action"]))
  raw_targets = np.array([[2., 1.], [-0.5, 3.]])
  expected = [-nll - math.log(2.) - math.log(4.) for nll in per_sample]
  assert dist.log_prob(raw_targets).numpy() == pytest.approx(expected, rel=1e-12)
  assert dist.mean().numpy()[0] == pytest.approx([0.5 * 2 + 1, -1.0 * 4 + 2])
  assert dist.stddev().numpy()[0] == pytest.approx(
      [math.exp(lv / 2) * s for lv, s in zip(logvar, target_std)])


def _soft_bounded(raw_logvar, low=-10., high=0.5):
  lv = high - _softplus(high - raw_logvar)
  return low + _softplus(lv - low)


def test_block_weighting_weighs_the_reward_like_all_state_dimensions_together():
  # obs 2: targets (ds1, ds2, r); normaliser identity; per-dimension NLLs by hand.
  mean, raw_logvar = [0.5, -1.0, 2.0], [0.2, -0.7, 0.1]
  model = _constant_output_model(mean, raw_logvar, [0., 0., 0.], [1., 1., 1.])
  assert model.loss_weighting == "blocks"  # the default, as the release
  batch = dict(observation=[[1., 0.]], action=[[0.3]], next_observation=[[3., -1.]],
               reward=[4.])
  target = [2., -1., 4.]
  per_dim = [0.5 * ((y - m) ** 2 / math.exp(_soft_bounded(lv)) + _soft_bounded(lv) +
                    math.log(2 * math.pi)) for y, m, lv in zip(target, mean, raw_logvar)]
  state, reward = model.block_nll(batch)
  assert state.numpy() == pytest.approx([per_dim[0] + per_dim[1]], rel=1e-12)
  assert reward.numpy() == pytest.approx([per_dim[2]], rel=1e-12)
  # Blocks: mean over the state dimensions + the reward; dimensions: the plain sum.
  assert model.sample_nll(batch).numpy() == pytest.approx(
      [(per_dim[0] + per_dim[1]) / 2 + per_dim[2]], rel=1e-12)
  joint = _constant_output_model(mean, raw_logvar, [0., 0., 0.], [1., 1., 1.],
                                 loss_weighting="dimensions")
  assert joint.sample_nll(batch).numpy() == pytest.approx([sum(per_dim)], rel=1e-12)


def test_split_architecture_feeds_the_context_to_the_reward_network_only():
  rng = np.random.default_rng(3)
  model = ContextualDynamicsModel(3, 2, context_dim=2, hidden_sizes=(8,), dtype=tf.float64,
                                  architecture="split")
  batch = _random_batch(rng, (5,), 3, 2)
  context = tf.Variable([[0.4, -0.3]], dtype=tf.float64)
  with tf.GradientTape(persistent=True) as tape:
    state, reward = model.block_nll(batch, context)
    state, reward = tf.reduce_sum(state), tf.reduce_sum(reward)
  assert tape.gradient(state, context) is None or np.all(
      tape.gradient(state, context).numpy() == 0.)
  assert np.abs(tape.gradient(reward, context).numpy()).max() > 1e-6
  # The state prediction is the same for every context; the reward's is not.
  obs, act = batch["observation"], batch["action"]
  next_a, reward_a = model.predict(obs, act, np.array([1., 0.]))
  next_b, reward_b = model.predict(obs, act, np.array([-1., 2.]))
  np.testing.assert_array_equal(next_a.numpy(), next_b.numpy())
  assert np.abs(reward_a.numpy() - reward_b.numpy()).max() > 1e-4
  copy = clone_model(model)
  np.testing.assert_array_equal(copy.predict(obs, act)[1].numpy(), model.predict(obs, act)[1].numpy())


def test_unknown_weighting_or_architecture_names_the_valid_choices():
  with pytest.raises(ValueError, match="blocks, dimensions"):
    ContextualDynamicsModel(2, 1, loss_weighting="equal")
  with pytest.raises(ValueError, match="joint, split"):
    ContextualDynamicsModel(2, 1, architecture="two")


def test_logvar_is_soft_bounded_by_learned_min_and_max():
  model = _constant_output_model([0., 0.], [60., -60.], [0., 0.], [1., 1.])
  model.max_logvar.assign([0.5, 0.5])
  model.min_logvar.assign([-6., -6.])
  _, logvar = model.normalized_mean_logvar(np.zeros([1, 1]), np.zeros([1, 1]))
  # Far above the max -> the max (softened by the min: -6 + softplus(6.5)); far below the
  # min -> the min.
  np.testing.assert_allclose(logvar.numpy()[0], [-6. + _softplus(6.5), -6.], atol=1e-9)
  assert logvar.numpy()[0, 0] == pytest.approx(0.5, abs=2e-3)
  # The bounds are trainable and receive gradient.
  with tf.GradientTape() as tape:
    _, logvar = model.normalized_mean_logvar(np.zeros([1, 1]), np.zeros([1, 1]))
    total = tf.reduce_sum(logvar)
  grad_max, grad_min = tape.gradient(total, [model.max_logvar, model.min_logvar])
  np.testing.assert_allclose(grad_max.numpy(), [1., 0.], atol=2e-3)
  np.testing.assert_allclose(grad_min.numpy(), [0., 1.], atol=2e-3)


def test_update_normalizer_sets_data_statistics_and_is_never_trained():
  rng = np.random.default_rng(0)
  model = ContextualDynamicsModel(3, 2, context_dim=2, hidden_sizes=(8,))
  batch = _random_batch(rng, (4, 50), 3, 2)
  batch["observation"][..., 1] = 7.  # a constant dimension gets std 1
  model.update_normalizer(batch)
  obs = batch["observation"].reshape(-1, 3)
  targets = np.concatenate([batch["next_observation"].reshape(-1, 3) - obs,
                            batch["reward"].reshape(-1, 1)], axis=1)
  np.testing.assert_allclose(model.obs_mean.numpy(), obs.mean(0), rtol=1e-5)
  np.testing.assert_allclose(model.obs_std.numpy(), [obs[:, 0].std(), 1., obs[:, 2].std()],
                             rtol=1e-5)
  np.testing.assert_allclose(model.target_mean.numpy(), targets.mean(0), rtol=1e-5)
  np.testing.assert_allclose(model.target_std.numpy(), targets.std(0), rtol=1e-5)

  stats = [model.obs_mean, model.obs_std, model.act_mean, model.act_std, model.target_mean,
           model.target_std]
  trainable = {id(v) for v in model.trainable_variables}
  assert not any(id(v) in trainable for v in stats)
  before = [v.numpy().copy() for v in stats]
  MetaTrainer(model).step(batch, batch)
  for old, var in zip(before, stats):
    np.testing.assert_array_equal(old, var.numpy())


def test_predict_and_sample_shapes_broadcasting_and_sample_mean():
  rng = np.random.default_rng(1)
  model = ContextualDynamicsModel(3, 2, context_dim=2, hidden_sizes=(16, 16))
  model.update_normalizer(_random_batch(rng, (500,), 3, 2))
  obs = rng.normal(size=(4, 5, 3)).astype(np.float32)
  act = rng.uniform(-1, 1, (4, 5, 2)).astype(np.float32)
  contexts = rng.normal(size=(4, 2)).astype(np.float32)

  next_obs, reward = model.predict(obs, act, contexts)
  assert next_obs.shape == (4, 5, 3) and reward.shape == (4, 5)
  draw_obs, draw_reward = model.sample(obs, act, contexts, seed=3)
  assert draw_obs.shape == (4, 5, 3) and draw_reward.shape == (4, 5)
  assert model.distribution(obs, act, contexts).batch_shape == (4, 5)
  # Context [T, ctx] broadcast over the samples == each task with its own [ctx].
  for t in range(4):
    one_obs, one_reward = model.predict(obs[t], act[t], contexts[t])
    np.testing.assert_allclose(one_obs, next_obs[t], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one_reward, reward[t], rtol=1e-5, atol=1e-6)
  # The prior context is the default.
  np.testing.assert_array_equal(model.predict(obs, act)[1],
                                model.predict(obs, act, model.context)[1])

  # Seeds: reproducible when given (an int, or a stateless [2] seed inside tf.function),
  # fresh when not.
  np.testing.assert_array_equal(model.sample(obs, act, contexts, seed=3)[1], draw_reward)
  in_graph = tf.function(lambda seed: model.sample(obs, act, contexts, seed=seed)[1])
  np.testing.assert_array_equal(in_graph(tf.constant([3, 0])), draw_reward)
  assert not np.array_equal(in_graph(tf.constant([4, 0])), draw_reward)
  assert not np.array_equal(model.sample(obs, act, contexts)[1],
                            model.sample(obs, act, contexts)[1])

  # The mean (and spread) of many draws approaches the prediction.
  n = 20000
  many_obs, many_act = np.repeat(obs[:1, 0], n, 0), np.repeat(act[:1, 0], n, 0)
  draws_obs, draws_reward = model.sample(many_obs, many_act, contexts[0], seed=7)
  mean_obs, mean_reward = model.predict(many_obs[:1], many_act[:1], contexts[0])
  std = model.distribution(many_obs[:1], many_act[:1], contexts[0]).stddev().numpy()[0]
  draws = np.concatenate([draws_obs.numpy() - many_obs, draws_reward.numpy()[:, None]], 1)
  means = np.concatenate([mean_obs.numpy()[0] - many_obs[0], mean_reward.numpy()], 0)
  assert np.all(np.abs(draws.mean(0) - means) < 5 * std / math.sqrt(n))
  np.testing.assert_allclose(draws.std(0), std, rtol=0.05)


def test_predict_handles_100k_rows_in_one_call():
  rng = np.random.default_rng(2)
  model = ContextualDynamicsModel(17, 6)
  obs = rng.normal(size=(100_000, 17)).astype(np.float32)
  act = rng.uniform(-1, 1, (100_000, 6)).astype(np.float32)
  next_obs, reward = model.predict(obs, act)
  assert next_obs.shape == (100_000, 17) and reward.shape == (100_000,)
  assert np.all(np.isfinite(next_obs)) and np.all(np.isfinite(reward))


def _perturb(model, rng):
  for var in model.trainable_variables:
    var.assign(var + rng.normal(0., 0.1, var.shape).astype(np.float32))


def test_checkpoint_restores_predictions_exactly(tmp_path):
  rng = np.random.default_rng(3)
  model = ContextualDynamicsModel(3, 2, context_dim=2, hidden_sizes=(16, 16))
  model.update_normalizer(_random_batch(rng, (300,), 3, 2))
  _perturb(model, rng)
  obs = rng.normal(size=(50, 3)).astype(np.float32)
  act = rng.uniform(-1, 1, (50, 2)).astype(np.float32)
  expected = model.predict(obs, act)
  path = tf.train.Checkpoint(model=model).save(str(tmp_path / "model"))

  restored = ContextualDynamicsModel(**model.get_config())
  assert not np.array_equal(restored.predict(obs, act)[0], expected[0])
  tf.train.Checkpoint(model=restored).restore(path).assert_existing_objects_matched()
  for got, want in zip(restored.predict(obs, act), expected):
    np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(restored.obs_std.numpy(), model.obs_std.numpy())
  np.testing.assert_array_equal(restored.target_mean.numpy(), model.target_mean.numpy())
  np.testing.assert_array_equal(restored.context.numpy(), model.context.numpy())


def test_clone_model_copies_everything_and_shares_nothing():
  rng = np.random.default_rng(4)
  model = ContextualDynamicsModel(3, 2, context_dim=2, hidden_sizes=(8,))
  model.update_normalizer(_random_batch(rng, (100,), 3, 2))
  _perturb(model, rng)
  copy = clone_model(model)
  assert copy.get_config()["hidden_sizes"] == (8,)
  for a, b in zip(model.variables, copy.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  copy.context.assign_add([1., 1.])
  copy.target_std.assign_add(np.ones(4, np.float32))
  assert not np.array_equal(model.context.numpy(), copy.context.numpy())
  assert not np.array_equal(model.target_std.numpy(), copy.target_std.numpy())
