"""Experience relabeling: rows carry the adapted model's predictions; the batch mix."""
import numpy as np
import pytest
import tensorflow as tf

from mier_tf import relabel
from mier_tf.agents import sac
from mier_tf.model import ContextualDynamicsModel

OBS, ACT, CTX = 3, 2, 2


def _hand_set_model(delta_and_reward):
  """A model whose mean output is the constant `delta_and_reward`, with ~zero variance."""
  model = ContextualDynamicsModel(OBS, ACT, context_dim=CTX, hidden_sizes=(8,))
  out_kernel, out_bias = model.variables[2], model.variables[3]
  out_kernel.assign(tf.zeros_like(out_kernel))
  out_bias.assign(np.concatenate([delta_and_reward, np.full(OBS + 1, -60.0)]))
  model.min_logvar.assign(tf.fill(model.min_logvar.shape, -60.0))
  return model


@pytest.fixture(scope="module")
def actor():
  agent = sac.create_sac_agent(OBS, ACT, CTX, actor_fc_layers=(16,), critic_fc_layers=(16,))
  return agent.policy._actor_network  # pylint: disable=protected-access


def _stored(n=50, seed=0):
  rng = np.random.default_rng(seed)
  return dict(observation=rng.normal(size=(n, OBS)).astype(np.float32),
              action=rng.uniform(-1, 1, (n, ACT)).astype(np.float32),
              reward=rng.normal(size=n).astype(np.float32),
              next_observation=rng.normal(size=(n, OBS)).astype(np.float32),
              discount=(rng.uniform(size=n) > 0.2).astype(np.float32))


def test_policy_action_relabeling_uses_the_models_predictions(actor):
  target = np.array([0.5, -1.0, 2.0, 3.25], np.float32)  # delta s (3) and reward
  model = _hand_set_model(target)
  stored = _stored()
  out = relabel.relabel_transitions(model, actor, np.array([0.3, -0.7], np.float32), stored)
  np.testing.assert_array_equal(out["observation"], stored["observation"])
  np.testing.assert_allclose(out["next_observation"], stored["observation"] + target[:OBS],
                             atol=1e-5)
  np.testing.assert_allclose(out["reward"], np.full(50, 3.25), atol=1e-5)
  assert np.all(np.abs(out["action"]) <= 1.0)
  assert not np.allclose(out["action"], stored["action"])  # new actions from the policy
  np.testing.assert_array_equal(out["discount"], np.ones(50))


def test_the_adapted_context_reaches_policy_and_model(actor):
  model = ContextualDynamicsModel(OBS, ACT, context_dim=CTX, hidden_sizes=(8,))
  model.min_logvar.assign(tf.fill(model.min_logvar.shape, -60.0))
  model.max_logvar.assign(tf.fill(model.max_logvar.shape, -59.0))
  stored = _stored()
  a = relabel.relabel_transitions(model, actor, np.array([1.0, 0.0], np.float32), stored, seed=3)
  b = relabel.relabel_transitions(model, actor, np.array([1.0, 0.0], np.float32), stored, seed=3)
  c = relabel.relabel_transitions(model, actor, np.array([-2.0, 4.0], np.float32), stored, seed=3)
  np.testing.assert_array_equal(a["action"], b["action"])  # seeded
  assert not np.allclose(a["action"], c["action"])
  expected, _ = model.predict(a["observation"], a["action"], np.tile([1.0, 0.0], (50, 1)))
  np.testing.assert_allclose(a["next_observation"], expected.numpy(), atol=1e-5)


def test_a_policy_context_of_its_own_moves_the_actions_not_the_model(actor):
  """adapt_ood.policy_context = 'mier_wr': the policy acts on its context, the model predicts
  on phi_T. Same seeds: the actions are those of a relabeling on the policy's context, and
  next states and rewards are the model's at phi_T for those actions."""
  model = ContextualDynamicsModel(OBS, ACT, context_dim=CTX, hidden_sizes=(8,))
  model.min_logvar.assign(tf.fill(model.min_logvar.shape, -60.0))
  model.max_logvar.assign(tf.fill(model.max_logvar.shape, -59.0))
  stored = _stored()
  phi, acting = np.array([1.0, 0.0], np.float32), np.array([-2.0, 4.0], np.float32)
  split = relabel.relabel_transitions(model, actor, phi, stored, seed=3, policy_context=acting)
  on_acting = relabel.relabel_transitions(model, actor, acting, stored, seed=3)
  on_phi = relabel.relabel_transitions(model, actor, phi, stored, seed=3)
  np.testing.assert_array_equal(split["action"], on_acting["action"])
  assert not np.allclose(split["action"], on_phi["action"])
  expected, _ = model.predict(split["observation"], split["action"], np.tile(phi, (50, 1)))
  np.testing.assert_allclose(split["next_observation"], expected.numpy(), atol=1e-5)
  wrong, _ = model.predict(split["observation"], split["action"], np.tile(acting, (50, 1)))
  assert not np.allclose(split["next_observation"], wrong.numpy(), atol=1e-3)


def test_reward_only_relabeling_keeps_stored_actions_and_next_states(actor):
  model = _hand_set_model(np.array([9.0, 9.0, 9.0, -4.5], np.float32))
  stored = _stored()
  out = relabel.relabel_transitions(model, actor, np.zeros(CTX, np.float32), stored,
                                    mode="reward_only")
  for key in ("observation", "action", "next_observation", "discount"):
    np.testing.assert_array_equal(out[key], stored[key])
  np.testing.assert_allclose(out["reward"], np.full(50, -4.5), atol=1e-5)


def test_rows_with_non_finite_predictions_are_dropped(actor):
  model = _hand_set_model(np.array([0.0, 0.0, 0.0, 1.0], np.float32))
  stored = _stored()
  stored["observation"][[4, 17]] = np.nan
  out = relabel.relabel_transitions(model, actor, np.zeros(CTX, np.float32), stored,
                                    mode="reward_only", chunk=16)  # several chunks
  assert out["reward"].shape == (48,)
  assert np.all(np.isfinite(out["observation"]))


def test_non_finite_rows_are_counted_logged_and_in_the_stats(actor, caplog):
  model = _hand_set_model(np.array([0.0, 0.0, 0.0, 1.0], np.float32))
  stored = _stored()
  stored["observation"][[4, 17]] = np.nan
  with caplog.at_level("WARNING"):
    out = relabel.relabel_transitions(model, actor, np.zeros(CTX, np.float32), stored,
                                      mode="reward_only", chunk=16)
  assert out.stats == {"rows": 50, "nonfinite_dropped": 2, "nonfinite_share": 0.04,
                       "terminal": 0}
  assert "dropped 2 of 50 rows (4.00%)" in caplog.text
  # All finite: nothing dropped, nothing logged.
  caplog.clear()
  with caplog.at_level("WARNING"):
    clean = relabel.relabel_transitions(model, actor, np.zeros(CTX, np.float32), _stored(),
                                        mode="reward_only")
  assert clean.stats["nonfinite_dropped"] == 0 and clean.stats["nonfinite_share"] == 0.0
  assert "dropped" not in caplog.text
  assert relabel.combine_stats([out.stats, clean.stats]) == {
      "rows": 100, "nonfinite_dropped": 2, "nonfinite_share": 0.02, "terminal": 0}


def _at_heights(heights):
  """Stored rows whose observation's first entry (Ant's torso z) is each height."""
  stored = _stored(len(heights))
  stored["observation"][:, 0] = heights
  stored["discount"][:] = 1.0
  return stored


def test_relabeled_rows_of_a_falling_robot_end_where_the_predicted_state_is_unhealthy(actor):
  """Ant's rule (torso z = obs[0] in [0.2, 1]) on the model's next states z + 0.0:
  0.1 and 1.2 end the episode (discount 0), 0.5 does not."""
  from mier_tf import envs  # pylint: disable=import-outside-toplevel
  rule = envs.get_task_family("ant_negjoints").termination
  model = _hand_set_model(np.array([0.0, 0.0, 0.0, 1.0], np.float32))
  stored = _at_heights([0.1, 0.5, 1.2])
  out = relabel.relabel_transitions(model, actor, np.zeros(CTX, np.float32), stored,
                                    termination=rule)
  np.testing.assert_allclose(out["next_observation"][:, 0], [0.1, 0.5, 1.2], atol=1e-5)
  np.testing.assert_array_equal(out["discount"], [0.0, 1.0, 0.0])
  assert out["discount"].dtype == np.float32
  assert out.stats["terminal"] == 2
  # The rule reads the predicted next state, not the stored one: a model that lifts every
  # state by 0.6 makes 0.5 -> 1.1 terminal and 0.1 -> 0.7 healthy.
  lifted = _hand_set_model(np.array([0.6, 0.0, 0.0, 1.0], np.float32))
  out = relabel.relabel_transitions(lifted, actor, np.zeros(CTX, np.float32), stored,
                                    termination=rule)
  np.testing.assert_array_equal(out["discount"], [1.0, 0.0, 0.0])
  # A family that never terminates (None): every row goes on.
  out = relabel.relabel_transitions(model, actor, np.zeros(CTX, np.float32), stored,
                                    termination=None)
  np.testing.assert_array_equal(out["discount"], np.ones(3))
  assert out.stats["terminal"] == 0
  # Off-policy rows keep the stored next state and its discount.
  stored["discount"][:] = [1.0, 0.0, 1.0]
  out = relabel.relabel_transitions(model, actor, np.zeros(CTX, np.float32), stored,
                                    mode="reward_only", termination=rule)
  np.testing.assert_array_equal(out["discount"], [1.0, 0.0, 1.0])


def test_a_missing_termination_rule_is_said_once(actor, caplog, monkeypatch):
  monkeypatch.setattr(relabel, "_warned_no_termination", False)
  model = _hand_set_model(np.array([0.0, 0.0, 0.0, 1.0], np.float32))
  with caplog.at_level("WARNING"):
    for _ in range(2):
      out = relabel.relabel_transitions(model, actor, np.zeros(CTX, np.float32),
                                        _at_heights([0.1, 0.5]))
  assert caplog.text.count("no termination rule given") == 1
  np.testing.assert_array_equal(out["discount"], np.ones(2))


def test_unknown_mode_names_the_valid_ones(actor):
  with pytest.raises(ValueError, match="policy_actions, reward_only"):
    relabel.relabel_transitions(None, actor, np.zeros(CTX), _stored(), mode="magic")


@pytest.mark.parametrize("fraction,batch,real_rows", [(0.05, 256, 13), (0.5, 10, 5), (0.0, 8, 0)])
def test_mixed_batches_hold_the_configured_share_of_real_data(fraction, batch, real_rows):
  real = {k: np.ones((30,) + v.shape[1:], np.float32) for k, v in _stored(30).items()}
  fake = {k: np.zeros((500,) + v.shape[1:], np.float32) for k, v in _stored(500).items()}
  mix = relabel.MixedBatches(real, real_fraction=fraction, batch_size=batch, seed=0)
  mix.set_relabeled(fake)
  for _ in range(20):
    sample = mix.sample()
    assert sample["reward"].shape == (batch,)
    assert int(sample["reward"].sum()) == real_rows
    assert sample["observation"].shape == (batch, OBS)


def test_empty_relabeling_is_an_error():
  mix = relabel.MixedBatches(_stored(5))
  with pytest.raises(FloatingPointError, match="no finite rows"):
    mix.set_relabeled({k: v[:0] for k, v in _stored(5).items()})


def test_relabel_error_scores_transitions_against_the_simulator():
  from mier_tf import envs  # pylint: disable=import-outside-toplevel
  family = envs.get_task_family("cheetah_vel_hard")
  env = family.make_env(family.test_tasks[0])
  rng = np.random.default_rng(0)
  obs, _ = env.reset(seed=0)
  rows = {k: [] for k in ("observation", "action", "reward", "next_observation")}
  for _ in range(60):
    action = rng.uniform(-1, 1, 6).astype(np.float32)
    next_obs, reward, _, _, _ = env.step(action)
    for key, value in zip(rows, (obs, action, reward, next_obs)):
      rows[key].append(value)
    obs = next_obs
  real = {k: np.array(v, np.float32) for k, v in rows.items()}
  exact = relabel.relabel_error(family.make_env(family.test_tasks[0]), real, rows=40)
  assert exact["rows"] == 40
  assert exact["reward_mae"] < 1e-5 and exact["next_state_rmse"] < 1e-5
  assert exact["reward_corr"] == pytest.approx(1.0, abs=1e-6)
  # A model 0.3 too optimistic about every reward and 0.1 off in every next-state entry.
  made_up = dict(real, reward=real["reward"] + 0.3,
                 next_observation=real["next_observation"] - 0.1)
  error = relabel.relabel_error(family.make_env(family.test_tasks[0]), made_up, rows=40)
  assert error["reward_mae"] == pytest.approx(0.3, abs=1e-5)
  assert error["reward_bias"] == pytest.approx(0.3, abs=1e-5)
  assert error["next_state_rmse"] == pytest.approx(0.1, abs=1e-5)
  assert error["reward_true_std"] == pytest.approx(exact["reward_true_std"], rel=1e-6)
  # Against another task's simulator the same transitions' rewards are off.
  other = relabel.relabel_error(family.make_env(family.train_tasks[0]), real, rows=40)
  assert other["reward_mae"] > 0.5
