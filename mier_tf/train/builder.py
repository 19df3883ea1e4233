"""The parts of a meta-training run, made in one place and passed into `MetaTrainingRun`.

As Dopamine's `create_agent_fn` and Acme's builders do: `MetaTrainingRun` does not build
its model, agent, replay or collector; it calls `make_run_parts` (or the function bound to
`MetaTrainingRun.make_parts`) after seeding, and runs Algorithm 1 on what it gets. To try
another model, agent or replay backend, write a function with this signature that returns
`RunParts` and bind it:

    MetaTrainingRun.make_parts = @my_make_parts

Each part keeps its own gin configurable (`ContextualDynamicsModel`, `InnerLoop`,
`MetaTrainer`, `create_sac_agent`, `make_task_tables`), so the usual bindings still apply.
"""
import dataclasses

import gin

from mier_tf import actors
from mier_tf import model as model_lib
from mier_tf import replay
from mier_tf.agents import sac
from mier_tf.collect import MultiTaskCollector


@dataclasses.dataclass
class RunParts:
  """What Algorithm 1 runs on.

  Attributes:
    model: the context-conditioned dynamics and reward model (`ContextualDynamicsModel`).
    inner: the inner loop (`InnerLoop`): its steps, rate and clip are the one setting of
      model identification, used by training, collection, evaluation, export and
      Algorithm 2.
    model_trainer: the meta-trainer of the model (`MetaTrainer`).
    agent: the context-augmented TF-Agents SAC agent.
    learner: its update (`ContextSacLearner`).
    tables: the per-task adapt and full replay tables (`TaskTables`).
    collector: the multi-task collector (`MultiTaskCollector`).
    explore_actor: the stochastic actor that collects (`NumpyActor`, seeded).
    greedy_actor: the deterministic actor that is evaluated.
  """
  model: object
  inner: object
  model_trainer: object
  agent: object
  learner: object
  tables: object
  collector: object
  explore_actor: actors.Actor
  greedy_actor: actors.Actor


@gin.configurable
def make_run_parts(family, context_dim: int, seed: int, collect_slots: int) -> RunParts:
  """The default parts: the paper's model and inner loop, SAC, the configured replay."""
  obs_dim, act_dim = family.observation_dim, family.action_dim
  model = model_lib.ContextualDynamicsModel(obs_dim, act_dim, context_dim=context_dim)
  inner = model_lib.InnerLoop()  # its settings: bind InnerLoop.* (base.gin)
  model_trainer = model_lib.MetaTrainer(model, inner)
  agent = sac.create_sac_agent(obs_dim, act_dim, context_dim, seed=seed)
  learner = sac.ContextSacLearner(agent)
  tables = replay.make_task_tables(num_tasks=len(family.train_tasks), observation_dim=obs_dim,
                                   action_dim=act_dim, seed=seed)
  collector = MultiTaskCollector(family, collect_slots, seed=seed)
  return RunParts(model=model, inner=inner, model_trainer=model_trainer, agent=agent,
                  learner=learner, tables=tables, collector=collector,
                  explore_actor=actors.NumpyActor.of_agent(agent, seed=seed),
                  greedy_actor=actors.NumpyActor.of_agent(agent, deterministic=True))
