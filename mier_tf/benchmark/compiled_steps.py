"""Stage "compiled steps": traces of every compiled step over repeated calls."""
from typing import List

import numpy as np
import tensorflow as tf

from mier_tf import actors
from mier_tf import model as model_lib
from mier_tf import relabel
from mier_tf.agents import sac
from mier_tf.benchmark.fixtures import ACT, CTX, OBS, random_transitions, tensors
from mier_tf.benchmark.harness import Row, Sizes, make_row, stage, time_ms


@stage("compiled steps")
def bench_compiled_steps(sizes: Sizes) -> List[Row]:
  """Traces of every compiled step over repeated calls (issue item 2: no retracing).

  Each step is called several times with fresh inputs of the same shapes (as a run does) and
  then with the other shapes a run uses; the goal is one trace per distinct input shape.
  (The row "traces policy_action_fn" keeps its name: it counts the traces of
  `CompiledActor.compiled`, the compiled policy call that replaced `sac.policy_action_fn`.)
  Also times `adapt_context` eagerly against a tf.function copy (MetaTrainingRun.adapt_contexts
  runs it compiled).
  """
  rng = np.random.default_rng(0)
  calls = sizes.pick(5, 2)
  tasks, per_task = sizes.pick(10, 2), sizes.pick(200, 8)
  model = model_lib.ContextualDynamicsModel(OBS, ACT, context_dim=CTX)
  trainer = model_lib.MetaTrainer(model, model_lib.InnerLoop(steps=2, lr=0.01))
  agent = sac.create_sac_agent(OBS, ACT, CTX)
  learner = sac.ContextSacLearner(agent)
  compiled_actor = actors.CompiledActor(agent.collect_policy, seed=0)
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
    return lambda: compiled_actor(rng.normal(size=(size, OBS + CTX)).astype(np.float32))

  functions = {
      "MetaTrainer.step": trainer._step,  # pylint: disable=protected-access
      "ContextSacLearner.train_tagged": learner.train_tagged,
      "ContextSacLearner.train": learner.train,
      "policy_action_fn": compiled_actor.compiled,
      # Module-level: count only what this stage adds.
      "relabel _relabel_chunk": relabel._relabel_chunk,  # pylint: disable=protected-access
  }
  # Per function, the input shapes a run uses: for each, a call that makes fresh inputs.
  shapes = {
      "MetaTrainer.step": {f"[{tasks}, {per_task}] batches": train_step},
      "ContextSacLearner.train_tagged": {},  # Called by train_step.
      "ContextSacLearner.train": {},  # Called by train_tagged.
      # Collection: full groups of 10 slots, and the 5 tasks of an epoch.
      "policy_action_fn": {f"batch {n}": act_call(n) for n in (sizes.pick(10, 2),
                                                                sizes.pick(5, 1))},
      # reduce_retracing: the second row count generalises the trace to [None] rows.
      "relabel _relabel_chunk": {f"{n} rows": relabel_call(n)
                                 for n in (sizes.pick(1000, 50), sizes.pick(700, 30),
                                           sizes.pick(1300, 70))},
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

  # adapt_context is differentiable Python; MetaTrainingRun.adapt_contexts calls it inside a
  # tf.function (`_adapt_fn`), once per collection group (5 tasks x 400 prior transitions).
  # Timed eagerly against a tf.function copy, it shows what compiling gains.
  adapt_data = tensors(random_transitions(rng, sizes.pick(400, 8), leading=(sizes.pick(5, 1),)))
  compiled_adapt = tf.function(
      lambda batch: model_lib.adapt_context(model, batch, 2, 0.01))
  eager_ms, compiled_ms = time_ms(
      sizes,
      lambda: model_lib.adapt_context(model, adapt_data, 2, 0.01).numpy(),
      lambda: compiled_adapt(adapt_data).numpy(), warmup=2, repeats=sizes.pick(20, 2))
  rows.append(make_row("adaptation eager vs tf.function", eager_ms, compiled_ms, detail=(
      f"ms per adapt_context (2 steps, {sizes.pick(5, 1)} tasks x {sizes.pick(400, 8)} rows): "
      "eager / the same in a tf.function (MetaTrainingRun.adapt_contexts runs it compiled)")))
  return rows
