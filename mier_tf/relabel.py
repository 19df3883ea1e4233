"""Experience relabeling (the `Relabel` step of Algorithm 2).

States from the replay tables of many meta-training tasks become transitions of the new
task: with the adapted context phi_T and the adapted model theta',

    on-policy ("policy_actions"):  a ~ pi(a | s, phi_T),   (s', r) ~ p(. | s, a; theta', phi_T)
    off-policy ("reward_only"):    keep the stored a and s', r ~ p(r | s, a; theta', phi_T)

The original release used the second form for the reward-varying families (velocity,
direction), where the dynamics are shared and only the reward must change.

Terminations: the model predicts no episode end, so an on-policy row is terminal (discount 0)
when the family's healthy-state rule (`TaskFamily.termination`, e.g. Ant's torso height in
[0.2, 1]) says the predicted next state ends the episode; families that never terminate
(HalfCheetah) pass None. Off-policy rows keep the stored next state and its discount.

Rows whose predictions are not finite are dropped, counted and logged: the result's
`stats` (see `RelabeledTransitions`) say how many, for results files.
"""
import logging
from typing import Any, Dict, Iterable, Optional, Sequence

import numpy as np
import tensorflow as tf

RELABEL_MODES = ("policy_actions", "reward_only")

# `termination` left out: on-policy rows then never terminate, with a warning (once).
_UNSET: Any = object()
_warned_no_termination = False


class RelabeledTransitions(dict):
  """What `relabel_transitions` returns: the flat arrays (a dict, as before) and `stats`.

  `stats` is a dict of plain numbers (JSON-ready):
    rows: rows relabeled (before any was dropped).
    nonfinite_dropped: rows dropped because a prediction was not finite.
    nonfinite_share: nonfinite_dropped / rows (0.0 for no rows).
    terminal: kept on-policy rows whose predicted next state ends the episode (discount 0
      by the family's rule; 0 in "reward_only" mode, which keeps the stored discounts).
  Several relabelings add up with `combine_stats`.
  """

  stats: Dict[str, float]


def combine_stats(stats: Iterable[Dict[str, float]]) -> Dict[str, float]:
  """Totals of several relabelings' `stats` (the share recomputed from the totals)."""
  stats = list(stats)
  rows = int(sum(s["rows"] for s in stats))
  dropped = int(sum(s["nonfinite_dropped"] for s in stats))
  return {"rows": rows, "nonfinite_dropped": dropped,
          "nonfinite_share": dropped / rows if rows else 0.0,
          "terminal": int(sum(s["terminal"] for s in stats))}


def relabel_transitions(model, actor_network, context: tf.Tensor, batch: Dict[str, np.ndarray],
                        mode: str = "policy_actions", seed: int = 0,
                        chunk: int = 100_000, termination: Any = _UNSET,
                        policy_context: Optional[tf.Tensor] = None) -> RelabeledTransitions:
  """Relabels stored transitions as transitions of the task whose context is `context`.

  Args:
    model: the adapted `ContextualDynamicsModel` (theta').
    actor_network: the SAC actor network (its input is concat(state, context)).
    context: [context_dim] adapted context phi_T of the new task.
    batch: flat arrays [N, ...] with observation, action, next_observation, discount.
    mode: "policy_actions" (new actions from the policy, next state and reward from the
      model) or "reward_only" (stored actions and next states, reward from the model).
    seed: seed of the policy and model samples.
    chunk: rows per compiled call.
    termination: the family's rule on next observations (`TaskFamily.termination`: an
      object whose `terminated(next_obs [N, d])` is bool [N]), or None for a family whose
      episodes never terminate. In "policy_actions" mode a row whose predicted next state
      it calls terminal gets discount 0. Left out: no row terminates, and a warning says so.
    policy_context: the context the policy acts on in "policy_actions" mode, when it is
      not the model's (`adapt_ood.policy_context`); None: `context`.

  Returns:
    A `RelabeledTransitions`: flat arrays with observation, action, reward,
    next_observation, discount, the rows with non-finite predictions removed (a warning
    gives their count and share); its `stats` count them.
  """
  global _warned_no_termination  # pylint: disable=global-statement
  if mode not in RELABEL_MODES:
    raise ValueError(f"unknown relabel mode {mode!r}; valid modes: {', '.join(RELABEL_MODES)}")
  if termination is _UNSET:
    termination = None
    if mode == "policy_actions" and not _warned_no_termination:
      _warned_no_termination = True
      logging.warning("relabel_transitions: no termination rule given, so no relabeled row "
                      "ends its episode; pass termination=family.termination (None for a "
                      "family that never terminates).")
  context = tf.convert_to_tensor(context, tf.float32)
  policy_context = (context if policy_context is None
                    else tf.convert_to_tensor(policy_context, tf.float32))
  outputs = []
  n = batch["observation"].shape[0]
  for i, start in enumerate(range(0, n, chunk)):
    part = {k: tf.convert_to_tensor(v[start:start + chunk]) for k, v in batch.items()}
    seeds = tf.constant([seed, i], tf.int32)
    outputs.append({k: v.numpy() for k, v in _relabel_chunk(
        model, actor_network, context, policy_context, part, mode == "policy_actions",
        seeds).items()})
  out = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
  if mode == "policy_actions" and termination is not None:
    terminated = np.asarray(termination.terminated(out["next_observation"]), bool)
    out["discount"] = np.where(terminated, 0.0, out["discount"]).astype(
        out["discount"].dtype)
  finite = np.ones(n, bool)
  for value in out.values():
    finite &= np.all(np.isfinite(value.reshape(value.shape[0], -1)), axis=1)
  dropped = int(n - np.count_nonzero(finite))
  result = RelabeledTransitions({k: v[finite] for k, v in out.items()})
  result.stats = {
      "rows": int(n), "nonfinite_dropped": dropped,
      "nonfinite_share": dropped / n if n else 0.0,
      "terminal": (int(np.count_nonzero(result["discount"] == 0))
                   if mode == "policy_actions" else 0)}
  if dropped:
    logging.warning("Relabeling dropped %d of %d rows (%.2f%%): their predictions were not "
                    "finite.", dropped, n, 100.0 * dropped / n)
  return result


def relabel_error(env, relabeled: Dict[str, np.ndarray], rows: int = 500,
                  seed: int = 0) -> Dict[str, float]:
  """How far relabeled transitions are from the simulator's on the new task.

  For `rows` of them (drawn at random), the simulator steps from the observation with the
  relabeled action (`robots.step_from_observation`) and gives the task's own next
  observation and reward.

  Args:
    env: an env of the new task whose observation is its state (cheetah, ant).
    relabeled: what `relabel_transitions` returned.
    rows: how many transitions to score.
    seed: seed of the row draw.

  Returns:
    reward_mae (mean |relabeled - true| reward), reward_bias (mean relabeled - true),
    reward_corr (their correlation), reward_true_std (the true rewards' spread, the scale
    of the error), next_state_rmse (root mean square over rows and dimensions of the
    next-observation error), rows.
  """
  from mier_tf.envs import robots  # pylint: disable=import-outside-toplevel
  n = relabeled["reward"].shape[0]
  pick = np.random.default_rng(seed).choice(n, min(rows, n), replace=False)
  env.reset(seed=seed)
  truth = [robots.step_from_observation(env, relabeled["observation"][i],
                                        relabeled["action"][i]) for i in pick]
  true_next = np.array([t[0] for t in truth])
  true_reward = np.array([t[1] for t in truth])
  error = relabeled["reward"][pick] - true_reward
  return {"reward_mae": float(np.mean(np.abs(error))), "reward_bias": float(np.mean(error)),
          "reward_corr": float(np.corrcoef(relabeled["reward"][pick], true_reward)[0, 1]),
          "reward_true_std": float(np.std(true_reward)),
          "next_state_rmse": float(np.sqrt(np.mean(
              (relabeled["next_observation"][pick] - true_next) ** 2))),
          "rows": int(len(pick))}


@tf.function(reduce_retracing=True)
def _relabel_chunk(model, actor_network, context, policy_context, batch, policy_actions: bool,
                   seeds):
  obs = batch["observation"]
  rows = tf.shape(obs)[0]
  tiled = tf.tile(context[None], tf.stack([rows, 1]))
  if policy_actions:
    policy_tiled = tf.tile(policy_context[None], tf.stack([rows, 1]))
    distribution, _ = actor_network(tf.concat([obs, policy_tiled], -1), step_type=(),
                                    network_state=(), training=False)
    action = distribution.sample(seed=seeds)
  else:
    action = batch["action"]
  next_obs, reward = model.sample(obs, action, tiled, seed=seeds + 1)
  if policy_actions:
    # The model predicts no termination: the family's rule sets it afterwards, on the host.
    discount = tf.ones_like(reward)
  else:
    next_obs, discount = batch["next_observation"], batch["discount"]
  return dict(observation=obs, action=action, reward=reward, next_observation=next_obs,
              discount=discount)


class MixedBatches:
  """SAC batches mixing real data of the new task with relabeled data, in a fixed share.

  Args:
    real: flat arrays of the new task's own transitions.
    real_fraction: share of real rows in each batch (0.05 in the original release).
    batch_size: rows per batch.
    seed: seed of the row draws.
  """

  def __init__(self, real: Dict[str, np.ndarray], real_fraction: float = 0.05,
               batch_size: int = 256, seed: int = 0):
    self.real = real
    self.relabeled: Optional[Dict[str, np.ndarray]] = None
    self.num_real = int(round(real_fraction * batch_size))
    self.batch_size = batch_size
    self._rng = np.random.default_rng(seed)

  def set_relabeled(self, relabeled: Dict[str, np.ndarray]) -> None:
    if relabeled["reward"].shape[0] == 0:
      raise FloatingPointError("relabeling produced no finite rows: the adapted model diverged")
    self.relabeled = relabeled

  def sample(self, keys: Sequence[str] = ("observation", "action", "reward",
                                          "next_observation", "discount")):
    """A batch: `num_real` real rows first, then relabeled rows."""
    n_real = self.real["reward"].shape[0]
    n_fake = self.relabeled["reward"].shape[0]
    real_idx = self._rng.integers(n_real, size=self.num_real)
    fake_idx = self._rng.integers(n_fake, size=self.batch_size - self.num_real)
    return {k: np.concatenate([self.real[k][real_idx], self.relabeled[k][fake_idx]])
            for k in keys}
