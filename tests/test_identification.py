"""Tests of mier_tf.identification: the score on hand-made contexts, and what it measures."""
import numpy as np
import pytest
import tensorflow as tf

from mier_tf import envs
from mier_tf import identification
from mier_tf.model import ContextualDynamicsModel, MetaTrainer, adapt_context


# ------------------------------------------------------------------------------------------
# The score itself, on contexts made by hand.

def test_loo_r2_is_one_for_a_perfectly_linear_code():
  rng = np.random.default_rng(0)
  params = rng.uniform(0, 3, size=(30, 2))
  mix = np.array([[0.3, -1.0, 0.2], [2.0, 0.5, -0.1]])
  contexts = params @ mix + np.array([0.1, -0.2, 0.05])
  assert identification.loo_r2(contexts, params, ridge=0.0) == pytest.approx(1.0, abs=1e-9)
  # The default ridge barely moves a well-determined fit.
  assert identification.loo_r2(contexts, params) > 0.999


def test_loo_r2_is_about_zero_for_contexts_unrelated_to_the_task():
  rng = np.random.default_rng(1)
  scores = [identification.loo_r2(rng.normal(size=(100, 5)), rng.uniform(0, 1.5, 100))
            for _ in range(20)]
  assert -0.15 < np.mean(scores) < 0.05  # LOO of noise is slightly below zero on average
  assert max(scores) < 0.15


def test_loo_r2_matches_a_fold_by_fold_least_squares_fit():
  # One context dimension, ridge 0: each fold is np.polyfit of degree 1 on the other rows.
  x = np.array([0., 1., 2., 4., 5.5])
  y = np.array([0., 1.2, 1.9, 3.0, 4.4])
  errors = 0.0
  for i in range(len(x)):
    keep = np.arange(len(x)) != i
    slope, intercept = np.polyfit(x[keep], y[keep], 1)
    errors += (slope * x[i] + intercept - y[i]) ** 2
  expected = 1 - errors / np.sum((y - y.mean()) ** 2)
  assert identification.loo_r2(x[:, None], y, ridge=0.0) == pytest.approx(expected, rel=1e-10)
  # Leaving out groups: rows 0 and 1 are one task; its fold is fitted on rows 2..4 only.
  groups = np.array([0, 0, 1, 2, 3])
  slope, intercept = np.polyfit(x[2:], y[2:], 1)
  fold = np.sum((slope * x[:2] + intercept - y[:2]) ** 2)
  for i in range(2, 5):
    keep = np.arange(5) != i
    s, c = np.polyfit(x[keep], y[keep], 1)
    fold += (s * x[i] + c - y[i]) ** 2
  assert identification.loo_r2(x[:, None], y, groups, ridge=0.0) == pytest.approx(
      1 - fold / np.sum((y - y.mean()) ** 2), rel=1e-10)


def test_loo_r2_is_nan_when_the_task_does_not_vary():
  assert np.isnan(identification.loo_r2(np.ones((5, 2)), np.zeros(5)))


def test_spread_ratio_by_hand():
  a = np.array([[0.0, 0.0], [2.0, 0.0]])
  b = np.array([[0.1, 0.0], [2.1, 0.0]])
  ratio, between, within = identification.spread_ratio(a, b)
  # Centres 0.05 and 2.05, one unit from their mean; adaptations 0.1 apart -> 0.1/sqrt(2).
  assert between == pytest.approx(1.0)
  assert within == pytest.approx(0.1 / np.sqrt(2))
  assert ratio == pytest.approx(10 * np.sqrt(2))


def test_every_family_has_task_features_the_score_can_use():
  for name in envs.task_family_names():
    family = envs.get_task_family(name)
    train = family.task_features(family.train_tasks)
    test = family.task_features(family.test_tasks)
    assert train.shape[0] == len(family.train_tasks) and test.shape[1] == train.shape[1]
    assert np.all(np.isfinite(train)) and np.all(np.isfinite(test))
  vel = envs.get_task_family("cheetah_vel_hard")
  np.testing.assert_array_equal(vel.task_features(vel.train_tasks[:2])[:, 0],
                                vel.train_tasks[:2])
  ant = envs.get_task_family("ant_dir_ood")
  theta = ant.test_tasks[-1]  # 2 pi
  np.testing.assert_allclose(ant.task_features([theta])[0], [1.0, 0.0], atol=1e-12)
  joints = envs.get_task_family("cheetah_negjoints")
  np.testing.assert_array_equal(joints.task_features(joints.test_tasks)[:, 5], -1.0)
  walker = envs.get_task_family("walker_rand_params_ood")
  # Out-of-distribution walkers: scale factors well outside the training ones on average.
  assert (np.abs(walker.task_features(walker.test_tasks)).mean() >
          np.abs(walker.task_features(walker.train_tasks)).mean())


# ------------------------------------------------------------------------------------------
# What the score measures: the loss weighting decides whether the context learns the task.

def _reward_varying_tasks(rng, ks, samples):
  """16-d state whose dynamics ignore the task (and are noisy); reward k * s_0 + noise."""
  ks = np.asarray(ks)
  obs = rng.normal(size=(len(ks), samples, 16))
  act = rng.uniform(-1, 1, size=(len(ks), samples, 4))
  mixing = np.linspace(-1, 1, 64).reshape(4, 16)
  next_obs = obs + 0.5 * np.tanh(obs) + act @ mixing + 0.3 * rng.normal(size=obs.shape)
  reward = ks[:, None] * obs[..., 0] + 0.3 * rng.normal(size=obs.shape[:2])
  return {key: value.astype(np.float32) for key, value in dict(
      observation=obs, action=act, next_observation=next_obs, reward=reward).items()}


def _meta_train_and_score(loss_weighting, seed=0, steps=600):
  tf.keras.utils.set_random_seed(seed)
  rng = np.random.default_rng(seed)
  model = ContextualDynamicsModel(16, 4, context_dim=2, hidden_sizes=(64, 64),
                                  loss_weighting=loss_weighting)
  model.update_normalizer(_reward_varying_tasks(rng, rng.uniform(0, 2, 50), 40))
  trainer = MetaTrainer(model)
  for _ in range(steps):
    ks = rng.uniform(0, 2, 8)
    trainer.step(_reward_varying_tasks(rng, ks, 64), _reward_varying_tasks(rng, ks, 64))
  adapt = tf.function(lambda b: adapt_context(model, b, 2, 0.01))
  ks = np.linspace(0, 2, 30)
  batches = [{k: tf.constant(v) for k, v in _reward_varying_tasks(rng, ks, 64).items()}
             for _ in range(3)]
  return identification.identify(model, lambda b: adapt(b).numpy(), batches[:2], batches[2],
                                 ks[:, None])


def test_block_weighting_identifies_a_reward_varying_task_and_equal_weighting_does_not():
  blocks = _meta_train_and_score("blocks")
  dimensions = _meta_train_and_score("dimensions")
  # Measured: blocks R^2 0.983-0.988 over 4 seeds, dimensions 0.36-0.58.
  assert blocks.r2 >= 0.95
  assert dimensions.r2 < 0.8
  # The mechanism: with blocks, adaptation lowers the reward NLL; with equal weights the
  # context's step is spent on the (task-independent) state and the reward NLL barely moves.
  assert blocks.nll_reward_after < blocks.nll_reward_before - 0.2
  assert dimensions.nll_reward_after > dimensions.nll_reward_before - 0.1
  assert blocks.spread_ratio > 3 * dimensions.spread_ratio
