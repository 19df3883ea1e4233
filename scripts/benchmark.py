"""Benchmarks of mier_tf's stages: prints a table and writes bench.json.

  python scripts/benchmark.py                       # every stage (`make bench`)
  python scripts/benchmark.py --only "model meta-step" --out bench.json
  python scripts/benchmark.py --only replay --quick --out /tmp/b.json   # tiny sizes (tests)

Each stage is a function registered with `@stage(name)` that returns rows
{stage, measured, reference, ratio, goal, met, detail} (some rows add keys of their own):
`measured` and `reference` in the units the detail names, `ratio` = measured / reference,
`goal` a short statement of what the ratio should satisfy ("report" when it is only reported;
`met` is then None). Both sides of a ratio are measured in the same run, interleaved, so that
load from other processes on a shared machine falls on both alike; medians are reported.
"""
import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

import mier_tf  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import  (quiets gym's notice before tf_agents loads it)

Row = Dict[str, object]
STAGES: Dict[str, Callable[[], List[Row]]] = {}
# --quick: tiny sizes and few repeats, so that a test can run a stage in seconds. The numbers
# are then meaningless; only the shape of the output is.
QUICK = False

# HalfCheetah sizes (cheetah_vel_hard) and base.gin's context size.
OBS, ACT, CTX = 17, 6, 5


def stage(name: str):
  """Registers a benchmark stage under `name` (stages run in registration order)."""
  def register(fn):
    STAGES[name] = fn
    return fn
  return register


def pick(full, quick):
  """`full` normally, `quick` under --quick."""
  return quick if QUICK else full


def time_ms(*fns: Callable[[], object], warmup: int = 3, repeats: int = 30) -> List[float]:
  """Median wall time in milliseconds of each fn(), after `warmup` untimed calls of each.

  The functions are timed in turn within each repeat, so that load from other processes on a
  shared machine falls on all of them alike and their ratio stays meaningful.
  """
  if QUICK:
    warmup, repeats = min(warmup, 1), min(repeats, 2)
  for fn in fns:
    for _ in range(warmup):
      fn()
  times = [[] for _ in fns]
  for _ in range(repeats):
    for fn, fn_times in zip(fns, times):
      start = time.perf_counter()
      fn()
      fn_times.append((time.perf_counter() - start) * 1e3)
  return [statistics.median(fn_times) for fn_times in times]


def make_row(name: str, measured: float, reference: float, goal: str = "report",
             met=None, detail: str = "", **extra) -> Row:
  return dict(stage=name, measured=round(float(measured), 3),
              reference=round(float(reference), 3),
              ratio=round(float(measured) / float(reference), 3), goal=goal,
              met=None if met is None else bool(met), detail=detail, **extra)


def at_most(name: str, measured: float, reference: float, limit: float, detail: str = "",
            **extra) -> Row:
  """A row whose goal is ratio <= limit."""
  return make_row(name, measured, reference, f"ratio <= {limit:g}",
                  measured / reference <= limit, detail, **extra)


def at_least(name: str, measured: float, reference: float, limit: float, detail: str = "",
             **extra) -> Row:
  """A row whose goal is ratio >= limit."""
  return make_row(name, measured, reference, f"ratio >= {limit:g}",
                  measured / reference >= limit, detail, **extra)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
  """Sends file descriptor 2 to /dev/null (Reverb's C++ writer logs a line per flush)."""
  sys.stderr.flush()
  saved = os.dup(2)
  with open(os.devnull, "w") as devnull:
    os.dup2(devnull.fileno(), 2)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


def random_transitions(rng: np.random.Generator, n: int, obs_dim: int = OBS,
                       act_dim: int = ACT, leading: Sequence[int] = ()) -> Dict[str, np.ndarray]:
  """Random float32 transitions [*leading, n, ...] with the five replay fields."""
  shape = tuple(leading) + (n,)
  obs = rng.normal(size=shape + (obs_dim,)).astype(np.float32)
  return dict(observation=obs,
              action=rng.uniform(-1, 1, shape + (act_dim,)).astype(np.float32),
              reward=rng.normal(size=shape).astype(np.float32),
              next_observation=(obs + 0.1 * rng.normal(size=obs.shape)).astype(np.float32),
              discount=np.ones(shape, np.float32))


def tensors(batch: Dict[str, np.ndarray]) -> Dict[str, tf.Tensor]:
  return {key: tf.convert_to_tensor(value) for key, value in batch.items()}


def step_envs_randomly(envs: Sequence, steps: int, rng: np.random.Generator) -> None:
  """MuJoCo alone: each env reset, then `steps` random actions, restarting ended episodes."""
  actions = rng.uniform(-1, 1, (steps, len(envs)) + envs[0].action_space.shape)
  for env in envs:
    env.reset(seed=int(rng.integers(2**31 - 1)))
  for t in range(steps):
    for i, env in enumerate(envs):
      _, _, terminated, truncated, _ = env.step(actions[t, i])
      if terminated or truncated:
        env.reset(seed=int(rng.integers(2**31 - 1)))


# ------------------------------------------------------------------------------------------
# Stages.

@stage("collection")
def bench_collection() -> List[Row]:
  """Env steps/s of batched collection with the SAC policy vs MuJoCo alone and vs PyDriver.

  10 tasks in lock-step (`MultiTaskCollector` + the run's `NumpyActor`, one policy call
  per step for all 10); the same 10 envs stepped with random actions and no policy; and TF-Agents'
  PyDriver with a PyTFEagerPolicy over the same agent's collect policy, on one env whose
  observation carries a fixed context (a small PyEnvironment wrapper).
  """
  from tf_agents.drivers import py_driver  # pylint: disable=g-import-not-at-top
  from tf_agents.environments import wrappers  # pylint: disable=g-import-not-at-top
  from tf_agents.policies import py_tf_eager_policy  # pylint: disable=g-import-not-at-top
  from tf_agents.specs import array_spec  # pylint: disable=g-import-not-at-top
  from tf_agents.trajectories import time_step as ts  # pylint: disable=g-import-not-at-top

  from mier_tf import envs  # pylint: disable=g-import-not-at-top
  from mier_tf.agents import sac  # pylint: disable=g-import-not-at-top
  from mier_tf.collect import MultiTaskCollector  # pylint: disable=g-import-not-at-top

  class WithContext(wrappers.PyEnvironmentBaseWrapper):
    """Appends a fixed context to every observation."""

    def __init__(self, env, context):
      super().__init__(env)
      self._context = np.asarray(context, np.float32)
      size = env.observation_spec().shape[0] + self._context.shape[0]
      self._spec = array_spec.ArraySpec([size], np.float32, name="observation")

    def observation_spec(self):
      return self._spec

    def time_step_spec(self):
      return ts.time_step_spec(self._spec)

    def _augment(self, time_step):
      return time_step._replace(
          observation=np.concatenate([time_step.observation, self._context]))

    def _reset(self):
      return self._augment(self._env.reset())

    def _step(self, action):
      return self._augment(self._env.step(action))

  rows = []
  num_tasks = pick(10, 2)
  for name, steps, driver_steps in (("cheetah_vel_hard", pick(100, 5), pick(300, 5)),
                                    ("ant_negjoints", pick(50, 5), pick(200, 5))):
    family = envs.get_task_family(name)
    tasks = list(family.train_tasks[:num_tasks])
    agent = sac.create_sac_agent(family.observation_dim, family.action_dim, CTX)
    action_fn = sac.NumpyActor(agent.policy._actor_network, agent.action_spec, seed=0)  # pylint: disable=protected-access
    rng = np.random.default_rng(0)
    contexts = rng.normal(size=(num_tasks, CTX)).astype(np.float32)
    collector = MultiTaskCollector(family, num_tasks, seed=0)
    raw_envs = [family.make_env(task) for task in tasks]
    driver_env = WithContext(envs.GymnasiumPyEnvironment(family.make_env(tasks[0]), seed=0),
                             contexts[0])
    driver = py_driver.PyDriver(
        driver_env, py_tf_eager_policy.PyTFEagerPolicy(agent.collect_policy,
                                                       use_tf_function=True),
        observers=[], max_steps=driver_steps)
    random_fn = lambda obs: rng.uniform(-1, 1, (obs.shape[0], family.action_dim))
    ours_ms, raw_ms, driver_ms, random_ms = time_ms(
        lambda: collector.collect(tasks, contexts, steps, action_fn),
        lambda: step_envs_randomly(raw_envs, steps, rng),
        lambda: driver.run(driver_env.reset()),
        lambda: collector.collect(tasks, contexts, steps, random_fn),
        warmup=1, repeats=pick(5, 1))
    ours = num_tasks * steps / ours_ms * 1e3
    raw = num_tasks * steps / raw_ms * 1e3
    driven = driver_steps / driver_ms * 1e3
    no_policy = num_tasks * steps / random_ms * 1e3
    policy_call_ms = (ours_ms - random_ms) / steps
    rows.append(at_least(f"collection {name} vs MuJoCo", ours, raw, 0.4, (
        f"env steps/s: {num_tasks} tasks x {steps} steps collected in lock-step with the SAC "
        f"policy / the same {num_tasks} envs stepped with random actions, no policy. The "
        f"collector with random actions instead of the policy: {no_policy:.0f} steps/s "
        f"({no_policy / raw:.2f} of MuJoCo alone); the policy call costs "
        f"{policy_call_ms:.2f} ms per lock-step step"),
        collector_random_steps_per_s=round(no_policy, 1),
        policy_call_ms=round(policy_call_ms, 3)))
    rows.append(at_least(f"collection {name} vs PyDriver", ours, driven, 3, (
        f"env steps/s: ours ({num_tasks} tasks batched) / TF-Agents PyDriver + "
        f"PyTFEagerPolicy (same collect policy, 1 env, context appended), {driver_steps} "
        "steps")))
    collector.close()
    for env in raw_envs:
      env.close()
    driver_env.close()
  return rows


@stage("SAC update")
def bench_sac_update() -> List[Row]:
  """ContextSacLearner.train_tagged vs a stock TF-Agents SacAgent, and an XLA copy of ours.

  The stock agent has the same networks and optimisers on a plain observation of size
  obs + context; its `train` is wrapped in `tf_agents.utils.common.function` and fed a
  `Transition` of flat tensors. HalfCheetah sizes, 256-256 networks (base.gin).
  """
  from tf_agents.agents.ddpg import critic_network  # pylint: disable=g-import-not-at-top
  from tf_agents.agents.sac import sac_agent  # pylint: disable=g-import-not-at-top
  from tf_agents.agents.sac import tanh_normal_projection_network as tanh_net  # pylint: disable=g-import-not-at-top
  from tf_agents.networks import actor_distribution_network  # pylint: disable=g-import-not-at-top
  from tf_agents.specs import tensor_spec  # pylint: disable=g-import-not-at-top
  from tf_agents.trajectories import policy_step  # pylint: disable=g-import-not-at-top
  from tf_agents.trajectories import time_step as ts  # pylint: disable=g-import-not-at-top
  from tf_agents.trajectories import trajectory  # pylint: disable=g-import-not-at-top
  from tf_agents.utils import common  # pylint: disable=g-import-not-at-top

  from mier_tf.agents import sac  # pylint: disable=g-import-not-at-top

  learner = sac.ContextSacLearner(sac.create_sac_agent(OBS, ACT, CTX))
  xla_step = tf.function(lambda batch, contexts: learner.train_tagged(batch, contexts),
                         jit_compile=True)

  time_step_spec = ts.time_step_spec(tf.TensorSpec([OBS + CTX], tf.float32))
  action_spec = tensor_spec.BoundedTensorSpec([ACT], tf.float32, -1., 1.)
  stock = sac_agent.SacAgent(
      time_step_spec, action_spec,
      actor_network=actor_distribution_network.ActorDistributionNetwork(
          time_step_spec.observation, action_spec, fc_layer_params=(256, 256),
          continuous_projection_net=tanh_net.TanhNormalProjectionNetwork),
      critic_network=critic_network.CriticNetwork(
          (time_step_spec.observation, action_spec), joint_fc_layer_params=(256, 256),
          kernel_initializer="glorot_uniform", last_kernel_initializer="glorot_uniform"),
      actor_optimizer=tf.keras.optimizers.Adam(3e-4),
      critic_optimizer=tf.keras.optimizers.Adam(3e-4),
      alpha_optimizer=tf.keras.optimizers.Adam(3e-4),
      target_update_tau=0.005, target_update_period=1,
      td_errors_loss_fn=tf.math.squared_difference, gamma=0.99, initial_log_alpha=-1.0,
      target_entropy=-1.0)
  stock.initialize()
  stock_train = common.function(stock.train)

  rng = np.random.default_rng(0)
  rows = []
  for tasks, per_task in pick(((1, 256), (10, 200)), ((2, 8),)):
    batch = tensors(random_transitions(rng, per_task, leading=(tasks,)))
    contexts = tf.constant(rng.normal(size=(tasks, CTX)), tf.float32)
    # The stock agent's input: the same rows, context already appended.
    flat = {key: tf.reshape(value, [tasks * per_task, -1]) for key, value in batch.items()}
    tiled = tf.repeat(contexts, per_task, axis=0)
    reward, discount = tf.reshape(flat["reward"], [-1]), tf.reshape(flat["discount"], [-1])
    mid = tf.fill([tasks * per_task], ts.StepType.MID)
    transition = trajectory.Transition(
        ts.TimeStep(mid, tf.zeros_like(reward), tf.ones_like(discount),
                    tf.concat([flat["observation"], tiled], -1)),
        policy_step.PolicyStep(flat["action"], (), ()),
        ts.TimeStep(mid, reward, discount, tf.concat([flat["next_observation"], tiled], -1)))
    ours_ms, stock_ms, xla_ms = time_ms(
        lambda: learner.train_tagged(batch, contexts).critic_loss.numpy(),
        lambda: stock_train(transition).loss.numpy(),
        lambda: xla_step(batch, contexts).critic_loss.numpy(),
        warmup=3, repeats=pick(20, 2))
    size = f"{tasks}x{per_task}"
    rows.append(at_most(f"SAC update {size}", ours_ms, stock_ms, 1.05, (
        f"ms per step: ContextSacLearner.train_tagged on {tasks} task(s) x {per_task} rows / "
        f"stock SacAgent.train (common.function) on the same {tasks * per_task} rows")))
    rows.append(make_row(f"SAC update {size} XLA", xla_ms, ours_ms, detail=(
        f"ms per step: train_tagged compiled with jit_compile=True / as shipped (plain "
        f"tf.function); below 1 means XLA is faster here")))
  return rows


def _operation_ratio(trainer, supervised_step, adapt_batch, eval_batch, both) -> float:
  """Floating-point operations of one meta-step / one supervised step, from the graphs."""
  from tensorflow.python.profiler import model_analyzer  # pylint: disable=g-import-not-at-top
  from tensorflow.python.profiler import option_builder  # pylint: disable=g-import-not-at-top
  tf.get_logger().setLevel("ERROR")  # The v1 profiler warns about its own deprecated calls.
  options = option_builder.ProfileOptionBuilder(
      option_builder.ProfileOptionBuilder.float_operation()).with_empty_output().build()

  def flops(concrete):
    return model_analyzer.profile(concrete.graph, options=options).total_float_ops

  return (flops(trainer._step.get_concrete_function(adapt_batch, eval_batch)) /  # pylint: disable=protected-access
          flops(supervised_step.get_concrete_function(both)))


@stage("model meta-step")
def bench_model_meta_step() -> List[Row]:
  """One MIER model meta-step vs one supervised NLL step, at the paper's sizes.

  10 tasks x (200 adapt + 200 eval) transitions, 2 inner steps, HalfCheetah sizes
  (obs 17, act 6, context 5), 4 x 200 network. The supervised step is one Adam step on the
  plain NLL of the same model on the same 4,000 transitions (prior context, no adaptation).
  A copy of the meta-step compiled with XLA (jit_compile=True) is timed beside them.
  """
  from mier_tf import model as model_lib  # pylint: disable=g-import-not-at-top
  tasks, samples, obs_dim, act_dim = pick(10, 2), pick(200, 8), OBS, ACT
  rng = np.random.default_rng(0)

  def batch():
    obs = rng.normal(size=(tasks, samples, obs_dim)).astype(np.float32)
    return dict(observation=tf.constant(obs),
                action=tf.constant(rng.uniform(-1, 1, (tasks, samples, act_dim)),
                                   tf.float32),
                next_observation=tf.constant(obs + 0.1 * rng.normal(size=obs.shape),
                                             tf.float32),
                reward=tf.constant(rng.normal(size=(tasks, samples)), tf.float32))

  adapt_batch, eval_batch = batch(), batch()
  model = model_lib.ContextualDynamicsModel(obs_dim, act_dim, context_dim=CTX)
  model.update_normalizer(adapt_batch)
  trainer = model_lib.MetaTrainer(model, model_lib.InnerLoop(steps=2, lr=0.01))
  xla_step = tf.function(trainer._train_step, jit_compile=True)  # pylint: disable=protected-access

  both = {key: tf.concat([adapt_batch[key], eval_batch[key]], axis=1) for key in adapt_batch}
  optimizer = tf.keras.optimizers.Adam(1e-3)
  variables = model.trainable_variables
  optimizer.build(variables)

  @tf.function
  def supervised_step(data):
    with tf.GradientTape() as tape:
      loss = model.nll(data) + 0.01 * model.logvar_bound_penalty()
    grads = tape.gradient(loss, variables)
    grads, _ = tf.clip_by_global_norm(grads, 10.)
    optimizer.apply_gradients(zip(grads, variables))
    return loss

  # .numpy() waits for the result (on a GPU the calls would otherwise return early).
  meta_ms, supervised_ms, xla_ms = time_ms(
      lambda: trainer.step(adapt_batch, eval_batch).meta_loss.numpy(),
      lambda: supervised_step(both).numpy(),
      lambda: xla_step(adapt_batch, eval_batch).meta_loss.numpy())
  flop_ratio = _operation_ratio(trainer, supervised_step, adapt_batch, eval_batch, both)
  return [
      make_row("model meta-step", meta_ms, supervised_ms, flop_ratio=round(flop_ratio, 3),
               detail=(
                   f"ms per meta-step ({tasks} tasks x {samples}+{samples}, 2 inner steps, "
                   f"4x200) / ms per supervised NLL step on the same {2 * tasks * samples} "
                   f"transitions. Operation count (TF profiler, float ops of the two graphs): "
                   f"{flop_ratio:.2f}x; the meta-step runs a forward pass for the NLL before "
                   "adaptation, two inner forward+backward passes, the outer forward, and a "
                   "second-order backward through both inner steps, all on half the rows")),
      make_row("model meta-step XLA", xla_ms, meta_ms, detail=(
          "ms per meta-step: compiled with jit_compile=True / as shipped (plain "
          "tf.function); below 1 means XLA is faster here")),
  ]


@stage("relabeling")
def bench_relabeling() -> List[Row]:
  """relabel_transitions (policy sample + model sample) vs one forward pass of both nets.

  100,000 rows, mode policy_actions, HalfCheetah sizes. The reference is one compiled call of
  the actor network (its distribution's mode) followed by `model.predict` on the same rows,
  with the outputs brought back to numpy as relabel_transitions does.
  """
  from mier_tf import model as model_lib  # pylint: disable=g-import-not-at-top
  from mier_tf.agents import sac  # pylint: disable=g-import-not-at-top
  from mier_tf.relabel import relabel_transitions  # pylint: disable=g-import-not-at-top

  rows = pick(100_000, 500)
  rng = np.random.default_rng(0)
  data = random_transitions(rng, rows)
  model = model_lib.ContextualDynamicsModel(OBS, ACT, context_dim=CTX)
  model.update_normalizer(data)
  actor = sac.create_sac_agent(OBS, ACT, CTX).policy._actor_network  # pylint: disable=protected-access
  context = tf.constant(rng.normal(size=CTX), tf.float32)

  @tf.function
  def actor_mode(observation):
    x = tf.concat([observation, tf.tile(context[None], [tf.shape(observation)[0], 1])], -1)
    distribution, _ = actor(x, step_type=(), network_state=(), training=False)
    return distribution.mode()

  def forward():
    observation = tf.convert_to_tensor(data["observation"])
    action = actor_mode(observation)
    next_obs, reward = model.predict(observation, action, context)
    return action.numpy(), next_obs.numpy(), reward.numpy()

  relabel_ms, forward_ms = time_ms(
      lambda: relabel_transitions(model, actor, context, data, "policy_actions", seed=0),
      forward, warmup=1, repeats=pick(7, 1))
  return [at_most("relabeling", relabel_ms, forward_ms, 1.5, (
      f"ms: relabel_transitions(policy_actions) on {rows:,} rows / actor forward + "
      "model.predict on the same rows"))]


@stage("replay")
def bench_replay() -> List[Row]:
  """Meta-batch sampling from both backends vs numpy, and the train step with and without it.

  10 tasks x 200 rows per table from tables of HalfCheetah rows (in-process: 20,000 rows per
  task; Reverb: 2,000, as filling Reverb costs a Python call per row) vs numpy fancy indexing
  of the same data held as [tasks, rows, ...] arrays. Then one training step (model
  meta-step + SAC step on 10 x (200 + 200)) fed from each backend vs fed a batch already in
  memory: the difference is the time the trainer waits on replay. A third variant samples
  the next Reverb batch in a background thread while the step runs (the overlap the library
  does not do yet).
  """
  from mier_tf import model as model_lib  # pylint: disable=g-import-not-at-top
  from mier_tf import replay  # pylint: disable=g-import-not-at-top
  from mier_tf.agents import sac  # pylint: disable=g-import-not-at-top

  tasks, per_task = pick(10, 2), pick(200, 8)
  rng = np.random.default_rng(0)
  ids = np.arange(tasks)
  sizes = {"in_process": pick(20_000, 100), "reverb": pick(2_000, 50)}
  stored = {backend: random_transitions(rng, n, leading=(tasks,))
            for backend, n in sizes.items()}
  tables = {}
  # Reverb's C++ code logs each flush of its writer and each new sampler to stderr.
  with quiet_stderr():
    for backend, data in stored.items():
      tables[backend] = replay.make_task_tables(
          backend, num_tasks=tasks, observation_dim=OBS, action_dim=ACT)
      for task in range(tasks):
        tables[backend].add(task, ("adapt", "full"), {k: v[task] for k, v in data.items()})
    # Opens every Reverb sampler once, so that their log lines fall in here too.
    tables["reverb"].sample(ids, "adapt", per_task)
    tables["reverb"].sample(ids, "full", per_task)
  try:
    def numpy_sample(data):
      n = data["reward"].shape[1]
      index = rng.integers(0, n, size=(tasks, per_task))
      return {key: value[ids[:, None], index] for key, value in data.items()}

    rows = []
    for backend, table in tables.items():
      table_ms, numpy_ms = time_ms(lambda: table.sample(ids, "full", per_task),  # pylint: disable=cell-var-from-loop
                                   lambda: numpy_sample(stored[backend]),  # pylint: disable=cell-var-from-loop
                                   warmup=5, repeats=pick(40, 2))
      detail = (f"ms per meta-batch ({tasks} tasks x {per_task}, {sizes[backend]:,} rows per "
                f"table): {backend} tables / numpy fancy indexing of the same arrays")
      if backend == "in_process":
        rows.append(at_most(f"replay sample {backend}", table_ms, numpy_ms, 2, detail))
      else:
        rows.append(make_row(f"replay sample {backend}", table_ms, numpy_ms, detail=detail))

    model = model_lib.ContextualDynamicsModel(OBS, ACT, context_dim=CTX)
    model.update_normalizer({k: v.reshape((-1,) + v.shape[2:])
                             for k, v in stored["in_process"].items()})
    trainer = model_lib.MetaTrainer(model, model_lib.InnerLoop(steps=2, lr=0.01))
    learner = sac.ContextSacLearner(sac.create_sac_agent(OBS, ACT, CTX))

    def train(adapt_batch, eval_batch):
      info = trainer.step(adapt_batch, eval_batch)
      return learner.train_tagged(eval_batch, info.contexts).critic_loss.numpy()

    def sample(table):
      return (tensors(table.sample(ids, "adapt", per_task)),
              tensors(table.sample(ids, "full", per_task)))

    fixed = sample(tables["in_process"])
    pending = {}

    def prefetched_reverb():
      # Sample the next batch in a thread while this step trains (TF and Reverb release the
      # GIL), then wait for it: the trainer waits only for what the step did not hide.
      batches = pending.pop("next", None) or sample(tables["reverb"])
      worker = threading.Thread(target=lambda: pending.update(next=sample(tables["reverb"])))
      worker.start()
      loss = train(*batches)
      worker.join()
      return loss

    no_replay_ms, in_process_ms, reverb_ms, prefetched_ms = time_ms(
        lambda: train(*fixed),
        lambda: train(*sample(tables["in_process"])),
        lambda: train(*sample(tables["reverb"])),
        prefetched_reverb, warmup=2, repeats=pick(10, 2))
    for backend, step_ms in (("in_process", in_process_ms), ("reverb", reverb_ms),
                             ("reverb prefetched", prefetched_ms)):
      share = 1 - no_replay_ms / step_ms
      rows.append(at_most(f"replay train step {backend}", step_ms, no_replay_ms, 1.05, (
          f"ms per training step (meta-step + SAC step) sampling its batches from "
          f"{backend} / the same step on a batch already in memory; the trainer waits on "
          f"replay for {100 * share:.1f}% of the step"), replay_share=round(share, 4)))
    return rows
  finally:
    for table in tables.values():
      table.close()


@stage("compiled steps")
def bench_compiled_steps() -> List[Row]:
  """Traces of every compiled step over repeated calls (issue item 2: no retracing).

  Each step is called several times with fresh inputs of the same shapes (as a run does) and
  then with the other shapes a run uses; the goal is one trace per distinct input shape.
  Also times `adapt_context` as MetaTrainingRun.adapt_contexts calls it (eagerly) against a
  tf.function copy.
  """
  from mier_tf import model as model_lib  # pylint: disable=g-import-not-at-top
  from mier_tf import relabel  # pylint: disable=g-import-not-at-top
  from mier_tf.agents import sac  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  calls = pick(5, 2)
  tasks, per_task = pick(10, 2), pick(200, 8)
  model = model_lib.ContextualDynamicsModel(OBS, ACT, context_dim=CTX)
  trainer = model_lib.MetaTrainer(model, model_lib.InnerLoop(steps=2, lr=0.01))
  agent = sac.create_sac_agent(OBS, ACT, CTX)
  learner = sac.ContextSacLearner(agent)
  action_call = sac.policy_action_fn(agent.collect_policy, seed=0)
  # policy_action_fn returns a plain function around its tf.function: find it in the closure.
  action_fn = next(cell.cell_contents for cell in action_call.__closure__
                   if hasattr(cell.cell_contents, "experimental_get_tracing_count"))
  actor = agent.policy._actor_network  # pylint: disable=protected-access

  def batches():
    return (tensors(random_transitions(rng, per_task, leading=(tasks,))),
            tensors(random_transitions(rng, per_task, leading=(tasks,))))

  def train_step():
    adapt_batch, eval_batch = batches()
    learner.train_tagged(eval_batch, trainer.step(adapt_batch, eval_batch).contexts)

  context = tf.constant(rng.normal(size=CTX), tf.float32)

  def relabel_call(size):
    return lambda: relabel.relabel_transitions(model, actor, context,
                                               random_transitions(rng, size),
                                               "policy_actions", seed=0)

  def act_call(size):
    return lambda: action_call(rng.normal(size=(size, OBS + CTX)).astype(np.float32))

  functions = {
      "MetaTrainer.step": trainer._step,  # pylint: disable=protected-access
      "ContextSacLearner.train_tagged": learner.train_tagged,
      "ContextSacLearner.train": learner.train,
      "policy_action_fn": action_fn,
      # Module-level: count only what this stage adds.
      "relabel _relabel_chunk": relabel._relabel_chunk,  # pylint: disable=protected-access
  }
  # Per function, the input shapes a run uses: for each, a call that makes fresh inputs.
  shapes = {
      "MetaTrainer.step": {f"[{tasks}, {per_task}] batches": train_step},
      "ContextSacLearner.train_tagged": {},  # Called by train_step.
      "ContextSacLearner.train": {},  # Called by train_tagged.
      # Collection: full groups of 10 slots, and the 5 tasks of an epoch.
      "policy_action_fn": {f"batch {n}": act_call(n) for n in (pick(10, 2), pick(5, 1))},
      # reduce_retracing: the second row count generalises the trace to [None] rows.
      "relabel _relabel_chunk": {f"{n} rows": relabel_call(n)
                                 for n in (pick(1000, 50), pick(700, 30), pick(1300, 70))},
  }
  first = {name: fn.experimental_get_tracing_count() for name, fn in functions.items()}
  retraces = {name: 0 for name in functions}
  for calls_by_shape in shapes.values():
    for call in calls_by_shape.values():
      call()  # The first call at this shape may trace.
      after_first = {name: fn.experimental_get_tracing_count()
                     for name, fn in functions.items()}
      for _ in range(calls - 1):
        call()
      for name, fn in functions.items():
        retraces[name] += fn.experimental_get_tracing_count() - after_first[name]

  rows = []
  for name, fn in functions.items():
    traces = fn.experimental_get_tracing_count() - first[name]
    own = shapes[name] or shapes["MetaTrainer.step"]
    note = (" The first trace creates the SAC optimisers' slot variables, so tf.function "
            "traces once more (once per process, not per call)."
            if name == "ContextSacLearner.train" and traces == 2 * len(own) else "")
    rows.append(make_row(
        f"traces {name}", traces, len(own), "no retrace on repeated shapes",
        retraces[name] == 0, (
            f"traces / distinct input shapes ({', '.join(own)}), {calls} calls each; "
            f"traces added by repeated calls: {retraces[name]}.{note}"),
        retraces=retraces[name]))

  # adapt_context is differentiable Python; the run calls it eagerly once per collection
  # group (5 tasks x 400 prior transitions). A tf.function copy shows what compiling gains.
  adapt_data = tensors(random_transitions(rng, pick(400, 8), leading=(pick(5, 1),)))
  compiled_adapt = tf.function(
      lambda batch: model_lib.adapt_context(model, batch, 2, 0.01))
  eager_ms, compiled_ms = time_ms(
      lambda: model_lib.adapt_context(model, adapt_data, 2, 0.01).numpy(),
      lambda: compiled_adapt(adapt_data).numpy(), warmup=2, repeats=pick(20, 2))
  rows.append(make_row("adaptation eager vs tf.function", eager_ms, compiled_ms, detail=(
      f"ms per adapt_context (2 steps, {pick(5, 1)} tasks x {pick(400, 8)} rows): eager, as "
      "MetaTrainingRun.adapt_contexts calls it / the same in a tf.function")))
  return rows


def _fill_tables_from(run, data: List[Dict[str, np.ndarray]]) -> None:
  """Puts real collected transitions into every training task's tables (cycling the data)."""
  for task in range(len(run.family.train_tasks)):
    run.tables.add(task, ("adapt", "full"), data[task % len(data)])


def _run_with_real_tables(config: str, root: str, bindings: List[str]):
  """A MetaTrainingRun built under gin from gin/<config>.gin, every table filled with real
  transitions (one short prior-context collection, cycled) and the normaliser set.

  Returns (run, the collected per-task transitions).
  """
  from mier_tf import cli  # pylint: disable=g-import-not-at-top
  from mier_tf.train import job  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  from mier_tf.train import meta_train  # pylint: disable=g-import-not-at-top
  cli.parse_gin([os.path.join(cli.REPO_GIN_DIR, f"{config}.gin")], bindings, root_dir=root)
  run = meta_train.MetaTrainingRun(root_dir=root)
  data, _ = run.collector.collect(run.family.train_tasks[:run.collect_slots],
                                  run.prior_contexts(run.collect_slots),  # pylint: disable=protected-access
                                  pick(200, 10), run.explore_fn)
  _fill_tables_from(run, data)
  run.refresh_normalizer()
  return run, data


@stage("epoch")
def bench_epoch() -> List[Row]:
  """One meta-training epoch vs the sum of its compute parts timed alone.

  MetaTrainingRun built under gin from each family's config (base.gin sizes, in-process
  replay): collect_epoch (5 tasks x (400 + 600) steps) + refresh_normalizer + train_epoch.
  The paper's epoch has 1,000 train steps (~0.1 s each here): too long for the benchmark's
  budget, so the epoch runs fewer and both sides are also extrapolated linearly to 1,000
  (`full_epoch_s`, `full_parts_s`). The parts: the same envs stepped with random actions
  (5 x 1,000 steps), 1,000 batched policy calls at batch 5, one adaptation, the normaliser
  update, and the train steps (meta-step + SAC step) on a batch already in memory.
  """
  import gin  # pylint: disable=g-import-not-at-top

  train_steps = pick(40, 2)
  rows = []
  for name in ("cheetah_vel_hard", "ant_negjoints"):
    gin.clear_config()
    with tempfile.TemporaryDirectory() as root:
      bindings = [f"MetaTrainingRun.train_steps_per_epoch = {train_steps}",
                  "make_task_tables.backend = 'in_process'"]
      if QUICK:
        bindings += ["MetaTrainingRun.prior_steps = 4", "MetaTrainingRun.posterior_steps = 6"]
      run, seed_data = _run_with_real_tables(name, root, bindings)
      k = run.tasks_per_epoch
      collect_steps = run.prior_steps + run.posterior_steps
      ids = np.arange(run.meta_batch_size)
      fixed = (tensors(run.tables.sample(ids, "adapt", run.adapt_batch_size)),
               tensors(run.tables.sample(ids, "full", run.eval_batch_size)))
      rows_of = np.arange(run.prior_steps) % seed_data[0]["reward"].shape[0]
      prior = {key: np.stack([d[key][rows_of] for d in seed_data[:k]]) for key in seed_data[0]}
      raw_envs = [run.family.make_env(task) for task in run.family.train_tasks[:k]]
      rng = np.random.default_rng(0)
      policy_inputs = rng.normal(size=(k, run.family.observation_dim + CTX)).astype(np.float32)

      def train_parts():
        for _ in range(train_steps):
          info = run.model_trainer.step(*fixed)
          run.learner.train_tagged(fixed[1], info.contexts).critic_loss.numpy()

      def epoch():
        times = {}
        start = time.perf_counter()
        run.collect_epoch()
        times["collect"] = time.perf_counter() - start
        run.refresh_normalizer()
        times["refresh"] = time.perf_counter() - start - times["collect"]
        run.train_epoch()
        times["train"] = time.perf_counter() - start - times["collect"] - times["refresh"]
        return times

      def parts():
        times = {}
        for part, fn in (
            ("env", lambda: step_envs_randomly(raw_envs, collect_steps, rng)),
            ("policy", lambda: [run.explore_fn(policy_inputs) for _ in range(collect_steps)]),
            ("adapt", lambda: run.adapt_contexts(prior)),  # pylint: disable=protected-access
            ("normalizer", lambda: run.model.update_normalizer(fixed[1])),
            ("train", train_parts)):
          start = time.perf_counter()
          fn()
          times[part] = time.perf_counter() - start
        return times

      # Warm-up: traces every compiled function at the shapes of the epoch.
      run.explore_fn(policy_inputs)
      run.adapt_contexts(prior)  # pylint: disable=protected-access
      run.train_steps_per_epoch, saved = 1, run.train_steps_per_epoch
      run.train_epoch()
      run.train_steps_per_epoch = saved
      epochs, part_times = [], []
      for _ in range(pick(2, 1)):  # Interleaved; the median of 2 is their mean.
        epochs.append(epoch())
        part_times.append(parts())
      median = lambda runs, key: statistics.median(r[key] for r in runs)
      epoch_t = {key: median(epochs, key) for key in epochs[0]}
      parts_t = {key: median(part_times, key) for key in part_times[0]}
      epoch_s, parts_s = sum(epoch_t.values()), sum(parts_t.values())
      scale = 1000 / train_steps
      full_epoch_s = epoch_s + (scale - 1) * epoch_t["train"]
      full_parts_s = parts_s + (scale - 1) * parts_t["train"]
      rows.append(at_most(
          f"epoch {name}", epoch_s, parts_s, 1.3, (
              f"s per epoch with {train_steps} train steps (not 1,000: see the stage doc) / "
              f"sum of its parts alone; extrapolated to 1,000 steps: {full_epoch_s:.1f} s vs "
              f"{full_parts_s:.1f} s = {full_epoch_s / full_parts_s:.3f}. Epoch: " +
              ", ".join(f"{k_} {v:.2f}" for k_, v in epoch_t.items()) + " s; parts: " +
              ", ".join(f"{k_} {v:.2f}" for k_, v in parts_t.items()) + " s"),
          train_steps=train_steps, full_epoch_s=round(full_epoch_s, 2),
          full_parts_s=round(full_parts_s, 2),
          full_ratio=round(full_epoch_s / full_parts_s, 3),
          epoch_parts_s={k_: round(v, 3) for k_, v in epoch_t.items()},
          compute_parts_s={k_: round(v, 3) for k_, v in parts_t.items()}))
      for env in raw_envs:
        env.close()
      run.collector.close()
    gin.clear_config()
  return rows


def _graph_gflop(concrete_fn) -> float:
  """Floating-point operations of a concrete function's graph, by TensorFlow's profiler."""
  from tensorflow.python.profiler import model_analyzer, option_builder  # pylint: disable=g-import-not-at-top
  options = option_builder.ProfileOptionBuilder.float_operation()
  options["output"] = "none"
  with quiet_stderr():
    return model_analyzer.profile(concrete_fn.graph, options=options).total_float_ops / 1e9


def _matmul_gflops(dtype, m: int = 4000, k: int = 200, n: int = 200, repeats: int = 50) -> float:
  """GFLOP/s of a [m, k] x [k, n] matmul, 20 per call: the CPU's practical limit at MIER's shapes."""
  a = tf.random.normal([m, k], dtype=tf.float32)
  b = tf.random.normal([k, n], dtype=tf.float32)
  a, b = tf.cast(a, dtype), tf.cast(b, dtype)

  @tf.function
  def twenty():
    out = a
    for _ in range(20):
      out = tf.matmul(out[:, :k], b)
    return out

  (ms,) = time_ms(lambda: twenty().numpy(), repeats=pick(repeats, 2))
  return 20 * 2 * m * k * n / (ms / 1e3) / 1e9


@stage("training step")
def bench_training_step() -> List[Row]:
  """The compiled training step (model meta-step + its SAC updates) at the paper's sizes.

  `MetaTrainingRun._train_step_fn` as a run calls it, built under gin from
  cheetah_vel_hard.gin (the release's schedule: one SAC update on 10 x 200 rows, 300-300-300
  networks) and cheetah_vel_hard_cpu.gin (four updates on 10 x 32 rows, 256-256), tables
  filled with real transitions. Its FLOPs are counted by TensorFlow's profiler on the traced
  graph (the meta-step's; the SAC updates sit in TF-Agents' nested functions, which the
  profiler does not enter, so the rate is a lower bound) and set against a float32 matmul at
  MIER's shapes timed in the same run (the CPU's practical rate). Each config is timed again
  with the SAC networks in mixed bfloat16 (goal: at most half the float32 step). The
  projected paper-budget time of cheetah_vel_hard: 260 epochs of 1,000 steps (1.5M samples
  less 200k of initial exploration, 5,000 per epoch) at the faster measured step.
  """
  import gin  # pylint: disable=g-import-not-at-top

  matmul32 = _matmul_gflops(tf.float32)
  matmul16 = _matmul_gflops(tf.bfloat16)
  rows = [make_row("matmul bfloat16 vs float32", matmul16, matmul32, detail=(
      "GFLOP/s of a [4000,200] x [200,200] matmul in bfloat16 / in float32 (the CPU's "
      "practical rate at MIER's shapes)"))]
  for config in ("cheetah_vel_hard", "cheetah_vel_hard_cpu"):
    step_ms = {}
    for mixed in (False, True):
      gin.clear_config()
      with tempfile.TemporaryDirectory() as root:
        bindings = ["make_task_tables.backend = 'in_process'",
                    f"create_sac_agent.mixed_precision = {mixed}"]
        if QUICK:
          bindings += ["MetaTrainingRun.meta_batch_size = 2",
                       "MetaTrainingRun.adapt_batch_size = 8",
                       "MetaTrainingRun.eval_batch_size = 8"]
        run, _ = _run_with_real_tables(config, root, bindings)
        ids = np.arange(run.meta_batch_size)
        batches = run._sample_step_batches(ids)  # pylint: disable=protected-access
        step = lambda: run._train_step_fn(*batches, with_summaries=False)[1].critic_loss.numpy()  # pylint: disable=protected-access
        (step_ms[mixed],) = time_ms(step, repeats=pick(20, 2))
        if not mixed:
          gflop = _graph_gflop(run._train_step_fn.get_concrete_function(  # pylint: disable=protected-access
              *batches, with_summaries=False))
          rate = gflop / (step_ms[mixed] / 1e3)
          schedule = (f"{run.sac_updates_per_step} x {run.meta_batch_size} x "
                      f"{run.sac_rows_per_task or run.eval_batch_size} SAC rows")
          rows.append(make_row(f"training step {config}", rate, matmul32, detail=(
              f"GFLOP/s of the compiled training step, a lower bound: the profiler counts the "
              f"meta-step's {gflop:.2f} GFLOP, not the SAC updates inside TF-Agents' nested "
              f"functions ({step_ms[mixed]:.1f} ms; "
              f"meta-step on {run.meta_batch_size} x {run.adapt_batch_size} + {schedule}) / "
              "float32 matmul GFLOP/s"),
              step_ms=round(step_ms[mixed], 2), gflop=round(gflop, 3)))
        run.collector.close()
      gin.clear_config()
    rows.append(at_most(
        f"training step {config} bfloat16 SAC", step_ms[True], step_ms[False], 0.5, detail=(
            f"ms of the training step with the SAC networks' hidden layers in bfloat16 "
            f"(create_sac_agent.mixed_precision; the model stays float32: its second-order "
            f"meta-gradient runs slower in bfloat16) / in float32 ({step_ms[False]:.1f} ms)"),
        step_ms=round(step_ms[True], 2)))
    if config == "cheetah_vel_hard":
      steps = 260 * 1000
      best = min(step_ms.values())
      hours = steps * best / 1e3 / 3600
      rows.append(make_row("projected paper budget cheetah_vel_hard", hours, 3.0,
                           "hours <= 3", hours <= 3.0, detail=(
                               f"hours of {steps:,} training steps at {best:.1f} ms, the "
                               "faster of the two precisions (collection and evaluation add "
                               "about 5%) / the 3-hour goal")))
  return rows


_MEMORY_PROBE = r"""
import json, resource, sys
import numpy as np
from mier_tf.replay.in_process import InProcessTaskTables

tasks, rounds, prior, posterior = (int(a) for a in sys.argv[1:5])
def vm(key):
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))
before = vm("VmRSS:")
tables = InProcessTaskTables(tasks, 17, 6)
rng = np.random.default_rng(0)
def chunk(n):
  obs = rng.normal(size=(n, 17)).astype(np.float32)
  return dict(observation=obs, action=rng.uniform(-1, 1, (n, 6)).astype(np.float32),
              reward=rng.normal(size=n).astype(np.float32), next_observation=obs,
              discount=np.ones(n, np.float32))
prior_rows, posterior_rows = chunk(prior), chunk(posterior)
# As meta-training adds them: per epoch and task, prior-context data into both tables,
# adapted-context data into the full table.
for _ in range(rounds):
  for task in range(tasks):
    tables.add(task, ("adapt", "full"), prior_rows)
    tables.add(task, "full", posterior_rows)
print(json.dumps(dict(before=before, peak=vm("VmHWM:"),
                      maxrss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      table_bytes=tables.nbytes, rows=int(tables.sizes().sum()),
                      data_bytes=int(tables.sizes().sum()) * tables.row_dim * 4)))
"""


@stage("memory")
def bench_memory() -> List[Row]:
  """Peak RSS of an in-process replay filled like a full cheetah_vel_hard meta-training.

  100 tasks x 20 rounds x (400 prior rows into adapt+full, 600 into full): 2,000,000
  transitions in the full tables and 800,000 in the adapt tables, HalfCheetah sizes, in a
  fresh subprocess (so nothing else of the benchmark counts). Peak = VmHWM.
  """
  tasks, rounds = pick(100, 2), pick(20, 2)
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run(
      [sys.executable, "-c", _MEMORY_PROBE, str(tasks), str(rounds), str(pick(400, 40)),
       str(pick(600, 60))],
      cwd=repo, capture_output=True, text=True, check=True,
      env=dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", "")))
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  gib = 2.0 ** 30
  peak = result["peak"] / gib
  return [make_row(
      "memory replay peak RSS", peak, 4.0, "under 4 GiB", peak < 4.0, (
          f"GiB: peak RSS of a process holding {result['rows']:,} transitions in "
          f"{tasks} tasks' in-process tables / the 4 GiB goal; packed data "
          f"{result['data_bytes'] / gib:.2f} GiB, arrays allocated "
          f"{result['table_bytes'] / gib:.2f} GiB, process before filling "
          f"{result['before'] / gib:.2f} GiB"),
      peak_bytes=result["peak"], data_bytes=result["data_bytes"],
      allocated_bytes=result["table_bytes"], baseline_bytes=result["before"])]


# ------------------------------------------------------------------------------------------

def print_table(rows: List[Row]) -> None:
  header = ("stage", "measured", "reference", "ratio", "goal", "met")
  lines = [header] + [tuple(str("-" if row[k] is None else row[k]) for k in header)
                      for row in rows]
  widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
  for i, line in enumerate(lines):
    print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)))
    if i == 0:
      print("  ".join("-" * width for width in widths))
  for row in rows:
    if row.get("detail"):
      print(f"* {row['stage']}: {row['detail']}")


def main(argv: Optional[Sequence[str]] = None) -> int:
  global QUICK
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--only", action="append", choices=list(STAGES), metavar="STAGE",
                      help=f"run only this stage (repeatable); stages: {list(STAGES)}")
  parser.add_argument("--out", default="bench.json", help="JSON file for the rows")
  parser.add_argument("--quick", action="store_true",
                      help="tiny sizes and 1-2 repeats: checks that the stages run, the "
                      "numbers mean nothing")
  args = parser.parse_args(argv)
  QUICK = args.quick
  rows: List[Row] = []
  start = time.perf_counter()
  for name in args.only or list(STAGES):
    stage_start = time.perf_counter()
    rows.extend(STAGES[name]())
    print(f"[{name}: {time.perf_counter() - stage_start:.0f} s]", file=sys.stderr, flush=True)
  print_table(rows)
  machine = dict(platform=platform.platform(), processor=platform.processor(),
                 cpus=os.cpu_count(), tensorflow=tf.__version__,
                 gpus=[d.name for d in tf.config.list_physical_devices("GPU")])
  with open(args.out, "w") as f:
    json.dump(dict(machine=machine, quick=QUICK, seconds=round(time.perf_counter() - start, 1),
                   rows=rows), f, indent=2)
  print(f"wrote {args.out} ({time.perf_counter() - start:.0f} s)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
