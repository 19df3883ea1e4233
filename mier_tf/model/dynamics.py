"""The context-conditioned dynamics and reward model p(s', r | s, a; theta, phi).

The network reads concat(normalised s, normalised a, phi) and outputs a diagonal Gaussian
over the target y = concat(s' - s, r) in *normalised target space*
(y_n = (y - target_mean) / target_std). Training losses (`sample_nll`, `nll`) are computed
in that normalised space, which keeps every output dimension on the same scale whatever the
robot; `distribution`, `predict` and `sample` convert back to raw units. The two NLLs differ
only by the constant sum(log target_std), so they have the same gradients. (Normalising the
targets is our addition to the release, which normalised inputs only: the state deltas and
rewards of different robots differ in scale by orders of magnitude, and one inner step size
and one pair of log-variance bound initialisations must suit them all.)

Normalisation statistics are non-trainable variables on the model: they are saved with it by
tf.train.Checkpoint, never touched by an optimiser, and set from replay data with
`update_normalizer`.
"""
import logging
import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import gin
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

Batch = Mapping[str, Any]

# Standard deviations below this are treated as 1 (a constant input or target dimension).
_MIN_STD = 1e-6

# How the NLL weighs the target dimensions (see `ContextualDynamicsModel.sample_nll`).
LOSS_WEIGHTINGS = ("blocks", "dimensions")
# Where the context enters the network (see `ContextualDynamicsModel.__init__`).
ARCHITECTURES = ("joint", "split")


@gin.configurable
class ContextualDynamicsModel(tf.keras.Model):
  """Gaussian model of (s' - s, r) given (s, a) and a latent task context.

  Architecture from the original MIER release: `hidden_sizes` leaky-ReLU layers with Xavier
  (Glorot uniform) initialisation, a linear output layer for mean and log-variance, and the
  log-variance soft-bounded between learned per-dimension minimum and maximum variables.

  Attributes:
    context: tf.Variable [context_dim], the learned initial context phi (zeros at start).
    max_logvar, min_logvar: tf.Variable [observation_dim + 1], the learned soft bounds.
    obs_mean, obs_std, act_mean, act_std, target_mean, target_std: non-trainable
      normalisation statistics (see `update_normalizer`).
  """

  def __init__(self,
               observation_dim: int,
               action_dim: int,
               context_dim: int = 5,
               hidden_sizes: Sequence[int] = (200, 200, 200, 200),
               min_logvar_init: float = -10.,
               max_logvar_init: float = 0.5,
               loss_weighting: str = "blocks",
               architecture: str = "joint",
               dtype: Any = tf.float32,
               name: str = "contextual_dynamics_model"):
    """Creates the model with all of its variables built.

    Args:
      observation_dim: size of the observation s.
      action_dim: size of the action a.
      context_dim: size of the latent context phi (5 in the paper; 10 for cheetah negated
        joints).
      hidden_sizes: units of each hidden layer (paper: four layers of 200).
      min_logvar_init: initial value of the learned lower log-variance bound.
      max_logvar_init: initial value of the learned upper log-variance bound.
      loss_weighting: "blocks" (the release's, default): the state block (s' - s, its
        dimensions averaged) and the reward weigh the same in the training loss;
        "dimensions": every target dimension weighs the same (the joint log-density). See
        `sample_nll` for why this matters.
      architecture: "joint": one network reads (s, a, phi) and predicts (s' - s, r);
        "split": the release's choice for reward-varying families, a context-free state
        network for s' - s beside a context-conditioned reward network for r, so the
        context is identified from the reward alone.
      dtype: floating dtype of every variable (float64 is used by the gradient tests).
      name: Keras name of the model.
    """
    super().__init__(name=name, dtype=dtype)
    if loss_weighting not in LOSS_WEIGHTINGS:
      raise ValueError(f"ContextualDynamicsModel.loss_weighting must be one of "
                       f"{', '.join(LOSS_WEIGHTINGS)}; got {loss_weighting!r}.")
    if architecture not in ARCHITECTURES:
      raise ValueError(f"ContextualDynamicsModel.architecture must be one of "
                       f"{', '.join(ARCHITECTURES)}; got {architecture!r}.")
    self._config = dict(observation_dim=int(observation_dim), action_dim=int(action_dim),
                        context_dim=int(context_dim),
                        hidden_sizes=tuple(int(h) for h in hidden_sizes),
                        min_logvar_init=float(min_logvar_init),
                        max_logvar_init=float(max_logvar_init),
                        loss_weighting=loss_weighting, architecture=architecture,
                        dtype=tf.as_dtype(dtype).name, name=name)
    self.loss_weighting = loss_weighting
    self.architecture = architecture
    self.observation_dim = int(observation_dim)
    self.action_dim = int(action_dim)
    self.context_dim = int(context_dim)
    self.target_dim = self.observation_dim + 1

    state_action_dim = self.observation_dim + self.action_dim
    if architecture == "joint":
      self._towers = [self._tower("", state_action_dim + self.context_dim,
                                  2 * self.target_dim, dtype)]
    else:
      self._towers = [self._tower("state_", state_action_dim, 2 * self.observation_dim, dtype),
                      self._tower("reward_", state_action_dim + self.context_dim, 2, dtype)]

    const = tf.keras.initializers.Constant
    self.max_logvar = self.add_weight(
        name="max_logvar", shape=[self.target_dim], initializer=const(max_logvar_init),
        trainable=True)
    self.min_logvar = self.add_weight(
        name="min_logvar", shape=[self.target_dim], initializer=const(min_logvar_init),
        trainable=True)
    self.context = self.add_weight(
        name="context", shape=[self.context_dim], initializer="zeros", trainable=True)

    def stat(stat_name, size, init):
      return self.add_weight(name=stat_name, shape=[size], initializer=init, trainable=False)
    self.obs_mean = stat("obs_mean", self.observation_dim, "zeros")
    self.obs_std = stat("obs_std", self.observation_dim, "ones")
    self.act_mean = stat("act_mean", self.action_dim, "zeros")
    self.act_std = stat("act_std", self.action_dim, "ones")
    self.target_mean = stat("target_mean", self.target_dim, "zeros")
    self.target_std = stat("target_std", self.target_dim, "ones")

  def _tower(self, prefix: str, input_dim: int, output_dim: int, dtype: Any) -> list:
    """Built Dense layers: the hidden leaky-ReLU layers, then a linear output layer."""
    layers = []
    for i, units in enumerate(self._config["hidden_sizes"]):
      layer = tf.keras.layers.Dense(
          units, activation=tf.nn.leaky_relu,
          kernel_initializer=tf.keras.initializers.GlorotUniform(),
          dtype=dtype, name=f"{prefix}hidden_{i}")
      layer.build((None, input_dim))
      input_dim = units
      layers.append(layer)
    output = tf.keras.layers.Dense(
        output_dim, kernel_initializer=tf.keras.initializers.GlorotUniform(),
        dtype=dtype, name=f"{prefix}mean_and_logvar")
    output.build((None, input_dim))
    layers.append(output)
    return layers

  def get_config(self) -> Dict[str, Any]:
    """The constructor arguments: `ContextualDynamicsModel(**model.get_config())` rebuilds it."""
    return dict(self._config)

  # ----------------------------------------------------------------------------------------
  # Data handling.

  def _unpack(self, batch: Batch) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Returns (observation, action, target) of a batch dict; the reward may be [...] or [..., 1]."""
    obs = tf.cast(batch["observation"], self.dtype)
    act = tf.cast(batch["action"], self.dtype)
    next_obs = tf.cast(batch["next_observation"], self.dtype)
    reward = tf.cast(batch["reward"], self.dtype)
    if reward.shape.rank == obs.shape.rank - 1:
      reward = reward[..., None]
    target = tf.concat([next_obs - obs, reward], axis=-1)
    return obs, act, target

  def _broadcast_context(self, context: Optional[tf.Tensor], leading_shape: tf.Tensor
                         ) -> tf.Tensor:
    """Broadcasts a context [ctx] or [k leading dims..., ctx] to leading_shape + [ctx].

    The context's leading dims must be a prefix of leading_shape (e.g. [T, ctx] with
    leading_shape [T, N]): missing trailing axes are broadcast.
    """
    context = self.context if context is None else tf.cast(context, self.dtype)
    rank = leading_shape.shape[0]
    if rank is None or context.shape.rank is None:
      raise ValueError("ContextualDynamicsModel needs inputs of known rank.")
    while context.shape.rank < rank + 1:
      context = tf.expand_dims(context, axis=-2)
    return tf.broadcast_to(context, tf.concat([leading_shape, [self.context_dim]], axis=0))

  def update_normalizer(self, batch: Batch) -> None:
    """Sets the normalisation statistics to the mean and std of the given data.

    The statistics are replaced (not averaged with earlier ones): pass the replay contents,
    or a large sample of them. Dimensions with std below 1e-6 get std 1.

    Args:
      batch: dict with observation, action, next_observation, reward; any leading dims.
    """
    obs = np.asarray(batch["observation"], np.float64).reshape(-1, self.observation_dim)
    act = np.asarray(batch["action"], np.float64).reshape(-1, self.action_dim)
    next_obs = np.asarray(batch["next_observation"], np.float64).reshape(
        -1, self.observation_dim)
    reward = np.asarray(batch["reward"], np.float64).reshape(-1, 1)
    target = np.concatenate([next_obs - obs, reward], axis=-1)
    for data, mean_var, std_var in ((obs, self.obs_mean, self.obs_std),
                                    (act, self.act_mean, self.act_std),
                                    (target, self.target_mean, self.target_std)):
      std = data.std(axis=0)
      std[std < _MIN_STD] = 1.
      mean_var.assign(data.mean(axis=0).astype(mean_var.dtype.as_numpy_dtype))
      std_var.assign(std.astype(std_var.dtype.as_numpy_dtype))
    logging.debug("Normaliser updated from %d transitions.", obs.shape[0])

  # ----------------------------------------------------------------------------------------
  # The network.

  def call(self, inputs: Tuple[tf.Tensor, tf.Tensor, Optional[tf.Tensor]]
           ) -> Tuple[tf.Tensor, tf.Tensor]:
    """Keras entry point: (obs, act, context) -> (mean, logvar) in normalised target space."""
    obs, act, context = inputs
    return self.normalized_mean_logvar(obs, act, context)

  def normalized_mean_logvar(self, obs: tf.Tensor, act: tf.Tensor,
                             context: Optional[tf.Tensor] = None
                             ) -> Tuple[tf.Tensor, tf.Tensor]:
    """Mean and bounded log-variance of the normalised target, shape [..., obs_dim + 1].

    Args:
      obs: observations [..., obs_dim] (raw units).
      act: actions [..., act_dim] (raw units).
      context: [ctx] or [..., ctx] whose leading dims are a prefix of obs's; None uses
        `self.context`.
    """
    obs = tf.cast(obs, self.dtype)
    act = tf.cast(act, self.dtype)
    leading_shape = tf.shape(obs)[:-1]
    context = self._broadcast_context(context, leading_shape)
    state_action = tf.concat([(obs - self.obs_mean) / self.obs_std,
                              (act - self.act_mean) / self.act_std], axis=-1)
    # Dense layers on a 2-D matrix: one matmul per layer whatever the leading dims.
    state_action = tf.reshape(state_action, [-1, state_action.shape[-1]])
    with_context = tf.concat([state_action, tf.reshape(context, [-1, self.context_dim])],
                             axis=-1)
    if self.architecture == "joint":
      out = self._run_tower(self._towers[0], with_context)
      mean, raw_logvar = tf.split(out, 2, axis=-1)
    else:
      state_mean, state_logvar = tf.split(self._run_tower(self._towers[0], state_action), 2,
                                          axis=-1)
      reward_mean, reward_logvar = tf.split(self._run_tower(self._towers[1], with_context), 2,
                                            axis=-1)
      mean = tf.concat([state_mean, reward_mean], axis=-1)
      raw_logvar = tf.concat([state_logvar, reward_logvar], axis=-1)
    out_shape = tf.concat([leading_shape, [self.target_dim]], axis=0)
    mean, raw_logvar = tf.reshape(mean, out_shape), tf.reshape(raw_logvar, out_shape)
    # Soft bounds of the original release: smooth versions of min(lv, max) then max(lv, min).
    logvar = self.max_logvar - tf.nn.softplus(self.max_logvar - raw_logvar)
    logvar = self.min_logvar + tf.nn.softplus(logvar - self.min_logvar)
    return mean, logvar

  @staticmethod
  def _run_tower(layers: list, x: tf.Tensor) -> tf.Tensor:
    for layer in layers:
      x = layer(x)
    return x

  def logvar_bound_penalty(self) -> tf.Tensor:
    """sum(max_logvar) - sum(min_logvar): the release's regulariser that keeps bounds tight."""
    return tf.reduce_sum(self.max_logvar) - tf.reduce_sum(self.min_logvar)

  # ----------------------------------------------------------------------------------------
  # Losses.

  def block_nll(self, batch: Batch, context: Optional[tf.Tensor] = None
                ) -> Tuple[tf.Tensor, tf.Tensor]:
    """Per-transition Gaussian NLL of the state block and of the reward, in nats.

    -log N(y_n; mean, diag(exp(logvar))) of the normalised target (including the
    0.5 log(2 pi) terms), split into the s' - s dimensions (summed) and the reward.

    Args:
      batch: dict with observation, action, next_observation, reward.
      context: [ctx] or [..., ctx] (leading dims a prefix of the batch's); None uses
        `self.context`.

    Returns:
      (state NLL, reward NLL), each of shape = leading dims of the batch.
    """
    obs, act, target = self._unpack(batch)
    target_n = (target - self.target_mean) / self.target_std
    mean, logvar = self.normalized_mean_logvar(obs, act, context)
    per_dim = 0.5 * (tf.square(target_n - mean) * tf.exp(-logvar) + logvar +
                     math.log(2. * math.pi))
    return (tf.reduce_sum(per_dim[..., :self.observation_dim], axis=-1),
            per_dim[..., self.observation_dim])

  def sample_nll(self, batch: Batch, context: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Per-transition training loss (a weighted Gaussian NLL), shape = leading dims of batch.

    With `loss_weighting="blocks"` (default): the state block's NLL averaged over its
    dimensions, plus the reward's NLL. The reward weighs as much as all state dimensions
    together, as in the original release (which averaged the squared-error and
    log-variance terms over the state dimensions and separately over the reward, then added
    the two). Why it matters: with equal weights the reward is 1 / (obs_dim + 1) of the
    loss, the context's gradient is almost all state prediction, which in the velocity and
    direction families does not depend on the task, and the adapted context does not
    identify the task (measured on `make train`'s export: leave-one-out R^2 of the target
    velocity from the context -0.03 with equal weights, docs/IDENTIFICATION.md).

    With `loss_weighting="dimensions"`: the sum over all target dimensions, the model's
    true joint log-density (what `distribution` returns).

    Args:
      batch: dict with observation, action, next_observation, reward.
      context: [ctx] or [..., ctx] (leading dims a prefix of the batch's); None uses
        `self.context`.
    """
    state_nll, reward_nll = self.block_nll(batch, context)
    if self.loss_weighting == "blocks":
      return state_nll / self.observation_dim + reward_nll
    return state_nll + reward_nll

  def nll(self, batch: Batch, context: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Scalar mean over all transitions of `sample_nll` (the training loss).

    Args:
      batch: dict with observation, action, next_observation, reward.
      context: as in `sample_nll`.
    """
    return tf.reduce_mean(self.sample_nll(batch, context))

  # ----------------------------------------------------------------------------------------
  # Raw-unit predictions.

  def _raw_mean_scale(self, obs, act, context):
    mean, logvar = self.normalized_mean_logvar(obs, act, context)
    return (mean * self.target_std + self.target_mean,
            tf.exp(0.5 * logvar) * self.target_std)

  def distribution(self, obs: tf.Tensor, act: tf.Tensor, context: Optional[tf.Tensor] = None
                   ) -> tfd.Distribution:
    """The model's distribution over concat(next_obs - obs, reward) in raw units.

    Args:
      obs: [..., obs_dim]. act: [..., act_dim].
      context: [ctx] or [..., ctx] with leading dims a prefix of obs's; None uses
        `self.context`.

    Returns:
      A MultivariateNormalDiag with batch shape obs.shape[:-1], event shape [obs_dim + 1].
    """
    loc, scale = self._raw_mean_scale(obs, act, context)
    return tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)

  # The compiled graphs see rows [N, dim] only, so one trace serves every batch size
  # (reduce_retracing) and every leading shape (flattened here, restored on the way out).
  @tf.function(reduce_retracing=True)
  def _predict_rows(self, obs, act, context):
    loc, _ = self._raw_mean_scale(obs, act, context)
    return loc

  @tf.function(reduce_retracing=True)
  def _sample_rows(self, obs, act, context, seed):
    loc, scale = self._raw_mean_scale(obs, act, context)
    return loc + scale * tf.random.stateless_normal(tf.shape(loc), seed=seed, dtype=self.dtype)

  def _on_rows(self, rows_fn, obs, act, context, *args):
    """Runs rows_fn on flattened inputs; returns (obs + delta, reward) in the input's shape."""
    obs = tf.cast(obs, self.dtype)
    act = tf.cast(act, self.dtype)
    leading_shape = tf.shape(obs)[:-1]
    context = self._broadcast_context(context, leading_shape)
    out = rows_fn(tf.reshape(obs, [-1, self.observation_dim]),
                  tf.reshape(act, [-1, self.action_dim]),
                  tf.reshape(context, [-1, self.context_dim]), *args)
    out = tf.reshape(out, tf.concat([leading_shape, [self.target_dim]], axis=0))
    return obs + out[..., :self.observation_dim], out[..., self.observation_dim]

  def predict(self, obs: tf.Tensor, act: tf.Tensor, context: Optional[tf.Tensor] = None
              ) -> Tuple[tf.Tensor, tf.Tensor]:
    """Mean prediction: (next_observation [..., obs_dim], reward [...]) in raw units.

    Compiled with tf.function, traced once for all batch sizes; 100,000 rows run in one call.

    Args:
      obs: [..., obs_dim]. act: [..., act_dim].
      context: [ctx] or [..., ctx] with leading dims a prefix of obs's; None uses
        `self.context`.
    """
    return self._on_rows(self._predict_rows, obs, act, context)

  def sample(self, obs: tf.Tensor, act: tf.Tensor, context: Optional[tf.Tensor] = None,
             seed: Any = None) -> Tuple[tf.Tensor, tf.Tensor]:
    """One draw (next_observation [..., obs_dim], reward [...]) from the model, raw units.

    Args:
      obs: [..., obs_dim]. act: [..., act_dim].
      context: [ctx] or [..., ctx] with leading dims a prefix of obs's; None uses
        `self.context`.
      seed: None draws a fresh seed; an int, or a stateless seed (an integer tensor of shape
        [2], usable inside tf.function), makes the draw reproducible.
    """
    if seed is None:
      seed = tf.random.uniform([2], maxval=np.iinfo(np.int32).max, dtype=tf.int32)
    elif isinstance(seed, (int, np.integer)):
      seed = tf.constant([int(seed), 0], dtype=tf.int32)
    else:
      seed = tf.ensure_shape(tf.cast(seed, tf.int32), [2])
    return self._on_rows(self._sample_rows, obs, act, context, seed)


def clone_model(model: ContextualDynamicsModel,
                name: Optional[str] = None) -> ContextualDynamicsModel:
  """A new model with the same configuration and copies of every variable.

  Weights, log-variance bounds, context and normaliser are copied; the clone shares no
  variable with `model`.

  Args:
    model: the model to copy.
    name: Keras name of the copy (default: the original's name + "_copy").
  """
  config = model.get_config()
  config["name"] = name or config["name"] + "_copy"
  copy = ContextualDynamicsModel(**config)
  if len(copy.variables) != len(model.variables):
    raise ValueError("clone_model: the copy has a different set of variables.")
  for target, source in zip(copy.variables, model.variables):
    if target.shape != source.shape:
      raise ValueError(f"clone_model: shape mismatch {target.name} vs {source.name}.")
    target.assign(source)
  return copy
