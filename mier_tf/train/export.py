"""SavedModel export of the policy (TF-Agents PolicySaver) and of the model.

`export/policy` is the deterministic policy, `export/collect_policy` the stochastic one used
to gather adaptation data; both take observations concat(state, context). `export/model`
has the signatures `adapt`, `context_step`, `predict`, `sample` and `prior_context`, and loads with
`tf.saved_model.load` without mier_tf.
"""
import os
import shutil
import warnings

import tensorflow as tf
from tf_agents.policies import greedy_policy
from tf_agents.policies import policy_saver

from mier_tf import logs
from mier_tf.model import adapt_context


class _ModelExport(tf.Module):
  """The model's adaptation and prediction as SavedModel signatures."""

  def __init__(self, model, inner):
    super().__init__(name="mier_model")
    self.model = model
    # The inner loop's settings, readable from the loaded SavedModel (`loaded.inner_lr`).
    self.inner_steps = tf.Variable(int(inner.steps), trainable=False, name="inner_steps")
    self.inner_lr = tf.Variable(float(inner.lr), trainable=False, name="inner_lr")
    self.inner_clip_norm = tf.Variable(float(inner.clip_norm), trainable=False,
                                       name="inner_clip_norm")
    obs_dim, act_dim, ctx_dim = model.observation_dim, model.action_dim, model.context_dim
    obs = tf.TensorSpec([None, obs_dim], tf.float32, name="observation")
    act = tf.TensorSpec([None, act_dim], tf.float32, name="action")
    ctx = tf.TensorSpec([None, ctx_dim], tf.float32, name="context")

    next_obs = tf.TensorSpec([None, obs_dim], tf.float32, name="next_observation")
    reward = tf.TensorSpec([None], tf.float32, name="reward")

    @tf.function(input_signature=[obs, act, next_obs, reward])
    def adapt(observation, action, next_observation, reward):
      batch = dict(observation=observation, action=action,
                   next_observation=next_observation, reward=reward)
      return {"context": inner.adapt(self.model, batch)}

    one_ctx = tf.TensorSpec([ctx_dim], tf.float32, name="context")
    lr = tf.TensorSpec([], tf.float32, name="learning_rate")

    @tf.function(input_signature=[obs, act, next_obs, reward, one_ctx, lr])
    def context_step(observation, action, next_observation, reward, context, learning_rate):
      # One inner step from a given context at a given rate: Algorithm 2's longer context
      # adaptation (N_fast steps, the rate cut tenfold after the first ones) from an export.
      batch = dict(observation=observation, action=action,
                   next_observation=next_observation, reward=reward)
      return {"context": adapt_context(self.model, batch, 1, learning_rate, context=context,
                                       clip_norm=inner.clip_norm)}

    @tf.function(input_signature=[obs, act, ctx])
    def predict(observation, action, context):
      next_observation, reward = self.model.predict(observation, action, context)
      return {"next_observation": next_observation, "reward": reward}

    @tf.function(input_signature=[obs, act, ctx])
    def sample(observation, action, context):
      next_observation, reward = self.model.sample(observation, action, context)
      return {"next_observation": next_observation, "reward": reward}

    @tf.function(input_signature=[])
    def prior_context():
      return {"context": tf.identity(self.model.context)}

    self.adapt, self.context_step, self.predict, self.sample, self.prior_context = (
        adapt, context_step, predict, sample, prior_context)


def _replace_dir(write, path: str) -> None:
  """Writes through `write(tmp)` then swaps tmp into place, so `path` is never half-written."""
  tmp = path + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  with logs.levels_kept():
    write(tmp)
  old = path + ".old"
  if os.path.exists(path):
    shutil.rmtree(old, ignore_errors=True)
    os.replace(path, old)
  os.replace(tmp, path)
  shutil.rmtree(old, ignore_errors=True)


def export_policy(agent, export_dir: str) -> None:
  """Writes `export_dir/policy` (greedy) and `export_dir/collect_policy` (stochastic)."""
  # TF warns that loading needs the distribution specs registered: importing tf_agents
  # does that, as the README says.
  warnings.filterwarnings("ignore", message="Encoding a StructuredValue")
  for name, policy in (("policy", greedy_policy.GreedyPolicy(agent.policy)),
                       ("collect_policy", agent.collect_policy)):
    saver = policy_saver.PolicySaver(policy, batch_size=None)
    _replace_dir(saver.save, os.path.join(export_dir, name))


def export_model(model, export_dir: str, inner) -> None:
  """Writes `export_dir/model`: signatures `adapt`, `context_step`, `predict`, `sample`, `prior_context`.

  Args:
    model: a `ContextualDynamicsModel`.
    export_dir: parent directory of the export.
    inner: the `InnerLoop` the `adapt` signature runs (the one training used).
  """
  module = _ModelExport(model, inner)
  signatures = {"adapt": module.adapt, "context_step": module.context_step,
                "predict": module.predict, "sample": module.sample,
                "prior_context": module.prior_context}
  _replace_dir(lambda d: tf.saved_model.save(module, d, signatures=signatures),
               os.path.join(export_dir, "model"))


def _checked_shapes(fn_name: str, specs, tensors) -> list:
  """`tensors` after one in-graph check of their shapes, for `fn_name`.

  specs: (name, dims) per tensor: the tensor must be [n, *dims] (dims empty or one size),
  every tensor with the same n. A wrong shape fails before anything reads the tensors, with
  TF's InvalidArgumentError "assertion failed: [identify takes observation [n, 17], action
  [n, 6], next_observation [n, 17], reward [n] (the same n); got shapes:] [observation] [17]
  [action] [200 6] [next_observation] [200 17] [reward] [200]".
  """
  ok, got, first_rows = tf.constant(True), [], None
  for (name, dims), x in zip(specs, tensors):
    shape = tf.shape(x)
    ok = tf.logical_and(ok, tf.equal(tf.size(shape), 1 + len(dims)))
    if dims:  # shape[-1:] is [] for a scalar: the rank check above catches that
      ok = tf.logical_and(ok, tf.reduce_all(tf.equal(shape[-1:], dims)))
    rows = shape[:1]
    first_rows = rows if first_rows is None else first_rows
    ok = tf.logical_and(ok, tf.reduce_all(tf.equal(rows, first_rows)))
    got += [name, shape]
  expected = ", ".join(f"{name} [{', '.join(['n'] + [str(d) for d in dims])}]"
                       for name, dims in specs)
  check = tf.debugging.Assert(
      ok, [f"{fn_name} takes {expected} (the same n); got shapes:"] + got, summarize=8)
  with tf.control_dependencies([check]):
    return [tf.ensure_shape(x, [None] + list(dims)) for (_, dims), x in zip(specs, tensors)]


class _AgentExport(tf.Module):
  """One artifact that identifies a task and acts: plain tensors in and out (ROOT/export/agent).

  The policy is the SAC actor (ReLU layers, then the tanh-squashed Gaussian of TF-Agents'
  TanhNormalProjectionNetwork: mean and log-std, action = scale * tanh(x) + shift for the
  action bounds) written with plain TF ops from the actor's own variables, so loading needs
  TensorFlow alone (no tf_agents, no mier_tf). A context is [c] (one for every row) or [N, c].

  The SavedModel signatures (`loaded.signatures[name]`: saved_model_cli, TensorFlow Serving)
  take float32 tensors of the shapes above. The attribute functions (`loaded.act(...)`) have
  input signatures too (the signatures' own, except `identify`'s), so besides float32 tensors
  they take numpy arrays and lists of any float dtype, float64 included, each input its own
  (gymnasium's observations are float64, the policy's actions float32), converted to float32
  as they are bound. A tf.Tensor of another dtype is refused there by TF's TypeError "Binding
  inputs to tf.function failed due to `Can not cast TensorSpec(shape=(200, 17),
  dtype=tf.float64, name='observation') to TensorSpec(shape=<unknown>, dtype=tf.float32,
  name='observation')`" (cast it first: `tf.cast(x, tf.float32)`). `loaded.identify` takes
  inputs of any rank and checks their shapes in the graph (`_checked_shapes`: the error
  names every expected shape and the shapes given); the other attribute functions refuse a
  wrong shape with TF's binding TypeError, which names the expected shape the same way.

  Accepting float64 tensors too would take a trace per combination of input dtypes (16 for
  identify, each capturing the model's variables): tried, it about doubled the time
  tf.saved_model.load takes on this export and added seconds to writing it, for what one
  `tf.cast` by the caller does.
  """

  def __init__(self, model, agent, inner):
    super().__init__(name="mier_agent")
    self.model = model
    actor = agent.policy._actor_network  # pylint: disable=protected-access
    self.actor_variables = list(actor.trainable_variables)
    if len(self.actor_variables) % 2:
      raise ValueError("the agent export expects an actor of Dense layers (kernel, bias)")
    low = tf.constant(agent.action_spec.minimum, tf.float32)
    high = tf.constant(agent.action_spec.maximum, tf.float32)
    scale, shift = (high - low) / 2.0, (high + low) / 2.0
    obs_dim, act_dim, ctx_dim = model.observation_dim, model.action_dim, model.context_dim
    self.inner_steps = tf.Variable(int(inner.steps), trainable=False, name="inner_steps")
    self.inner_lr = tf.Variable(float(inner.lr), trainable=False, name="inner_lr")
    obs = tf.TensorSpec([None, obs_dim], tf.float32, name="observation")
    act_spec = tf.TensorSpec([None, act_dim], tf.float32, name="action")
    next_obs = tf.TensorSpec([None, obs_dim], tf.float32, name="next_observation")
    reward = tf.TensorSpec([None], tf.float32, name="reward")
    ctx = tf.TensorSpec(None, tf.float32, name="context")  # [c] or [N, c]
    pairs = list(zip(self.actor_variables[0::2], self.actor_variables[1::2]))

    def rows(context, n):
      context = tf.reshape(context, [-1, ctx_dim])
      tf.debugging.assert_equal(
          tf.logical_or(tf.equal(tf.shape(context)[0], 1), tf.equal(tf.shape(context)[0], n)),
          True, message=f"context must be [{ctx_dim}] or [N, {ctx_dim}] for N observations")
      return tf.broadcast_to(context, [n, ctx_dim])

    def mean_log_std(observation, context):
      h = tf.concat([observation, rows(context, tf.shape(observation)[0])], axis=-1)
      for kernel, bias in pairs[:-1]:
        h = tf.nn.relu(tf.matmul(h, kernel) + bias)
      kernel, bias = pairs[-1]
      return tf.split(tf.matmul(h, kernel) + bias, 2, axis=-1)

    @tf.function(input_signature=[obs, act_spec, next_obs, reward])
    def identify(observation, action, next_observation, reward):
      batch = dict(observation=observation, action=action,
                   next_observation=next_observation, reward=reward)
      return {"context": inner.adapt(self.model, batch)}

    @tf.function(input_signature=[obs, ctx])
    def act(observation, context):
      mean, _ = mean_log_std(observation, context)
      return {"action": scale * tf.tanh(mean) + shift}

    noise_spec = tf.TensorSpec([None, act_dim], tf.float32, name="noise")

    @tf.function(input_signature=[obs, ctx, noise_spec])
    def act_with_noise(observation, context, noise):
      # The stochastic policy for given standard-normal noise: the evaluation protocol draws
      # the noise per task, so a task's data do not depend on which tasks run beside it.
      mean, log_std = mean_log_std(observation, context)
      return {"action": scale * tf.tanh(mean + tf.exp(log_std) * noise) + shift}

    @tf.function(input_signature=[obs, ctx, tf.TensorSpec([], tf.int64, name="seed")])
    def act_sampled(observation, context, seed):
      mean, log_std = mean_log_std(observation, context)
      noise = tf.random.stateless_normal(tf.shape(mean), seed=tf.stack([seed, seed * 0]))
      return {"action": scale * tf.tanh(mean + tf.exp(log_std) * noise) + shift}

    @tf.function(input_signature=[])
    def prior_context():
      return {"context": tf.identity(self.model.context)}

    @tf.function(input_signature=[obs, act_spec, ctx])
    def predict(observation, action, context):
      next_observation, reward_ = self.model.predict(
          observation, action, rows(context, tf.shape(observation)[0]))
      return {"next_observation": next_observation, "reward": reward_}

    # The SavedModel signatures: float32, the shapes above; attributes, so that they are saved.
    self.act, self.act_with_noise, self.act_sampled = act, act_with_noise, act_sampled
    self.prior_context, self.predict = prior_context, predict
    self.functions = {"identify": identify, "act": act, "act_with_noise": act_with_noise,
                       "act_sampled": act_sampled, "prior_context": prior_context,
                       "predict": predict}

    identify_specs = (("observation", [obs_dim]), ("action", [act_dim]),
                      ("next_observation", [obs_dim]), ("reward", []))

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32, name=name)
                                  for name, _ in identify_specs], autograph=False)
    def identify_checked(observation, action, next_observation, reward):
      # The shapes checked with an error a person can read, then the signature's function.
      return identify(*_checked_shapes("identify", identify_specs,
                                        (observation, action, next_observation, reward)))

    self.identify = identify_checked


def export_agent(model, agent, inner, export_dir: str) -> None:
  """Writes `export_dir/agent`: one SavedModel with the signatures `identify`, `act`,
  `act_sampled`, `act_with_noise`, `prior_context` and `predict` (TensorFlow alone loads it;
  `_AgentExport` says which inputs the attribute functions take besides)."""
  module = _AgentExport(model, agent, inner)
  _replace_dir(lambda d: tf.saved_model.save(module, d, signatures=dict(module.functions)),
               os.path.join(export_dir, "agent"))
