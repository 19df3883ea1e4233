"""Meta-training of MIER (Algorithm 1 of the paper).

    initial exploration: every training task, prior-context data into both tables
    for each epoch:
        for each of `tasks_per_epoch` sampled training tasks:
            D_adapt <- collect with the prior context phi          (adapt + full tables)
            phi_T   <- A(theta, phi, D_adapt)
            D_eval  <- collect with phi_T                          (full table)
        repeat `train_steps_per_epoch` times:
            sample a meta-batch of tasks; D_adapt from adapt tables, D_eval from full tables
            model meta-step: minimise NLL(D_eval; theta, A(theta, phi, D_adapt))
            SAC step on D_eval, each row tagged with its task's phi_T
        evaluate MIER-wR on training and test tasks; checkpoint

Everything that a resumed run needs (model, optimisers, agent, counters, replay tables,
random state) is checkpointed every `checkpoint_interval` epochs; re-running on the same
root_dir continues from the last checkpoint.
"""
import logging
import math
import os
import re
import shutil
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

import gin
import numpy as np
import tensorflow as tf
import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from mier_tf import envs
from mier_tf import identification
from mier_tf import summaries
from mier_tf import tags
from mier_tf import video
from mier_tf import results as results_lib
from mier_tf.collect import MultiTaskCollector, flatten_tasks, in_groups, repeat_context
from mier_tf.collect import stack_tasks
from mier_tf.train import builder
from mier_tf.train import checkpoints
from mier_tf.train import evaluation
from mier_tf.train import export
from mier_tf.train import run_dir



ConfigMismatchError = run_dir.ConfigMismatchError  # the root_dir holds another run


def _require_int(name: str, value, minimum: int) -> None:
  """Raises ValueError naming the gin binding unless `value` is an integer >= minimum."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")


@gin.configurable
class MetaTrainingRun:
  """The state of one meta-training run, with the steps of Algorithm 1 as methods.

  Args:
    root_dir: where summaries, checkpoints and exports are written.
    family: name of the task family (see `mier_tf.envs.task_family_names()`).
    seed: seed of task sampling, collection and initialisation.
    num_initial_rounds: prior-context collections per training task before training
      (5 in the original release).
    tasks_per_epoch: training tasks collected from per epoch (5).
    prior_steps: transitions per task collected with the prior context (400).
    posterior_steps: transitions per task collected with the adapted context (600).
    train_steps_per_epoch: model meta-steps and SAC steps per epoch (1000).
    meta_batch_size: tasks per meta-step (10).
    adapt_batch_size: adaptation transitions per task per meta-step (200 or 400).
    eval_batch_size: evaluation transitions per task per meta-step (200).
    sac_updates_per_step: SAC updates after each model meta-step, all on the meta-batch's
      tasks tagged with the contexts that step adapted (the release: 1).
    sac_rows_per_task: rows of each meta-batch task in every SAC update. None: the SAC
      batch is the model's evaluation batch itself (the release: 10 x 200 = 2,000 rows);
      a number: fresh rows from the tasks' full tables for each update.
    context_dim: size of the latent context (5; 10 for cheetah negated joints).
    collect_slots: tasks stepped together by the collector.
    normalizer_rows: rows sampled from the full tables to refresh input normalisation.
    eval_train_tasks: training tasks evaluated at each evaluation: the same ones every time,
      spread evenly over the range of the task parameter (fresh draws moved the
      standing-still baseline by +-40 between evaluations).
    identification_tasks: training tasks (the first ones) on which each evaluation measures
      identification (`mier_tf.identification`), from their replay tables.
    summary_interval: training steps between scalar summaries.
    eval_video_steps: at each evaluation, render this many steps of test task 0's MIER-wR
      episode to an animated GIF in TensorBoard's Images tab (0: none).
    make_parts: makes the run's model, inner loop, agent, replay tables, collector and
      actors (`mier_tf/train/builder.py`), called after seeding.
  """

  def __init__(
      self,
      root_dir: str,
      family: str = gin.REQUIRED,
      seed: int = 0,
      # Collection (Algorithm 1).
      num_initial_rounds: int = 5,
      tasks_per_epoch: int = 5,
      prior_steps: int = 400,
      posterior_steps: int = 600,
      # Training.
      train_steps_per_epoch: int = 1000,
      meta_batch_size: int = 10,
      adapt_batch_size: int = 200,
      eval_batch_size: int = 200,
      sac_updates_per_step: int = 1,
      sac_rows_per_task: Optional[int] = None,
      # Model identification.
      context_dim: int = 5,
      # Bookkeeping.
      collect_slots: int = 10,
      normalizer_rows: int = 200,
      eval_train_tasks: int = 5,
      identification_tasks: int = 100,
      summary_interval: int = 100,
      eval_video_steps: int = 0,
      make_parts: Callable[..., builder.RunParts] = builder.make_run_parts,
  ):
    for name, value, minimum in (
        ("seed", seed, 0), ("num_initial_rounds", num_initial_rounds, 0),
        ("tasks_per_epoch", tasks_per_epoch, 1), ("prior_steps", prior_steps, 1),
        ("posterior_steps", posterior_steps, 0),
        ("train_steps_per_epoch", train_steps_per_epoch, 1),
        ("meta_batch_size", meta_batch_size, 1), ("adapt_batch_size", adapt_batch_size, 1),
        ("eval_batch_size", eval_batch_size, 1), ("context_dim", context_dim, 1),
        ("collect_slots", collect_slots, 1),
        ("normalizer_rows", normalizer_rows, 1), ("eval_train_tasks", eval_train_tasks, 1),
        ("identification_tasks", identification_tasks, 3),
        ("summary_interval", summary_interval, 1), ("eval_video_steps", eval_video_steps, 0)):
      _require_int(f"MetaTrainingRun.{name}", value, minimum)
    self.root_dir = root_dir
    self.family = envs.get_task_family(family)
    self.rng = np.random.default_rng(seed)
    # Keras' unseeded initialisers follow only this (tf.random.set_seed alone leaves them
    # drawing differently in every process). It also seeds Python's and numpy's global state.
    tf.keras.utils.set_random_seed(seed)
    self.num_initial_rounds = num_initial_rounds
    num_train = len(self.family.train_tasks)

    def capped(name: str, value: int) -> int:
      """`value`, or the family's number of training tasks if that is fewer (logged: the
      HParams show the configured value)."""
      if value > num_train:
        logging.warning("MetaTrainingRun.%s capped: configured %d, used %d (%s has %d "
                        "training tasks)", name, value, num_train, self.family.name, num_train)
      return min(value, num_train)

    self.tasks_per_epoch = capped("tasks_per_epoch", tasks_per_epoch)
    self.prior_steps, self.posterior_steps = prior_steps, posterior_steps
    self.train_steps_per_epoch = train_steps_per_epoch
    self.meta_batch_size = capped("meta_batch_size", meta_batch_size)
    self.adapt_batch_size, self.eval_batch_size = adapt_batch_size, eval_batch_size
    _require_int("MetaTrainingRun.sac_updates_per_step", sac_updates_per_step, 1)
    if sac_rows_per_task is not None:
      _require_int("MetaTrainingRun.sac_rows_per_task (or None)", sac_rows_per_task, 1)
    if sac_rows_per_task is None and sac_updates_per_step != 1:
      raise ValueError("MetaTrainingRun.sac_updates_per_step > 1 needs sac_rows_per_task "
                       "(the evaluation batch serves one update only).")
    self.sac_updates_per_step, self.sac_rows_per_task = sac_updates_per_step, sac_rows_per_task
    self.collect_slots = collect_slots
    self.normalizer_rows = normalizer_rows
    # Spread over the task parameter (its first feature), so that the evaluated tasks span
    # the training range: velocities from slow to fast, not a random handful.
    order = np.argsort(self.family.task_features(self.family.train_tasks)[:, 0], kind="stable")
    self.eval_train_ids = np.sort(order[np.unique(
        np.linspace(0, num_train - 1, capped("eval_train_tasks", eval_train_tasks)
                    ).round().astype(int))])
    self._standing_still: Optional[Dict[str, np.ndarray]] = None
    self._evaluator: Optional[evaluation.Evaluator] = None
    # The report records the number used (IdentificationReport.num_tasks, in results.json).
    self.identification_tasks = capped("identification_tasks", identification_tasks)
    self.summary_interval = summary_interval
    self.eval_video_steps = eval_video_steps

    obs_dim, act_dim = self.family.observation_dim, self.family.action_dim
    self.fingerprint = dict(family=self.family.name, observation_dim=obs_dim,
                            action_dim=act_dim, context_dim=context_dim)
    parts = make_parts(self.family, context_dim=context_dim, seed=seed,
                       collect_slots=collect_slots)
    self.model, self.inner, self.model_trainer = parts.model, parts.inner, parts.model_trainer
    self.agent, self.learner = parts.agent, parts.learner
    self.tables, self.collector = parts.tables, parts.collector
    self.explore_actor, self.greedy_actor = parts.explore_actor, parts.greedy_actor
    self._adapt_fn = tf.function(  # compiled once per batch shape (~2.5x faster than eager)
        lambda batch: self.inner.adapt(self.model, batch),
        reduce_retracing=True)
    self._train_step_fn = tf.function(self._train_step_graph, autograph=False)
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    self.env_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="env_steps")
    self.train_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="train_step")
    self.checkpointer = checkpoints.RunCheckpointer(
        os.path.join(root_dir, "checkpoints"), tables=self.tables,
        model=self.model, model_optimizer=self.model_trainer.optimizer, agent=self.agent,
        epoch=self.epoch, env_steps=self.env_steps, train_step=self.train_step)
    self._writers: Dict[str, tf.summary.SummaryWriter] = {}
    self.last_returns: Dict[str, float] = {}
    self.last_results: Optional[Dict[str, np.ndarray]] = None
    self.last_episodes: Optional[Dict[str, np.ndarray]] = None
    self.last_identification: Optional[identification.IdentificationReport] = None

  def _writer(self, name: str) -> tf.summary.SummaryWriter:
    # Created on first use, so that a run opened only to read its checkpoint (adaptation)
    # writes nothing into the meta-training directories.
    if name not in self._writers:
      self._writers[name] = tf.summary.create_file_writer(os.path.join(self.root_dir, name))
    return self._writers[name]

  @property
  def train_writer(self) -> tf.summary.SummaryWriter:
    return self._writer("train")

  @property
  def eval_writer(self) -> tf.summary.SummaryWriter:
    return self._writer("eval")

  @property
  def standing_still_writer(self) -> tf.summary.SummaryWriter:
    """A run of its own beside eval/ (TensorBoard colours lines by run)."""
    return self._writer(tags.STANDING_STILL_WRITER)

  def host_state(self) -> dict:
    """What a resumed run needs beyond TF variables (JSON; saved with every checkpoint).

    The numpy random states of collection, and the last evaluation (per-task means and,
    since the evaluation protocol, each episode's return): the final one runs before the
    final checkpoint, and a job killed after that checkpoint writes its results from it.
    """
    evaluation_state = None
    if self.last_results is not None:
      evaluation_state = {
          "results": {k: [float(x) for x in v] for k, v in self.last_results.items()},
          "identification": (
              {k: float(v) for k, v in self.last_identification._asdict().items()}
              if self.last_identification is not None else None)}
      if self.last_episodes is not None:
        evaluation_state["episodes"] = {k: v.tolist() for k, v in self.last_episodes.items()}
    return {"collector": self.collector.get_state(), "explore": self.explore_actor.get_state(),
            "evaluation": evaluation_state}

  def set_host_state(self, state: Optional[dict]) -> None:
    """Restores what `host_state` returned (a checkpoint of before the evaluation protocol
    has no episodes: its evaluation is then run again when results are written)."""
    if not state:
      return
    self.collector.set_state(state["collector"])
    self.explore_actor.set_state(state["explore"])
    evaluation_state = state.get("evaluation")
    if evaluation_state:
      self.last_results = {k: np.asarray(v) for k, v in evaluation_state["results"].items()}
      self.last_returns = {k: float(v.mean()) for k, v in self.last_results.items()}
      episodes = evaluation_state.get("episodes")
      self.last_episodes = ({k: np.asarray(v, np.float64) for k, v in episodes.items()}
                            if episodes else None)
      if evaluation_state["identification"] is not None:
        self.last_identification = identification.IdentificationReport(
            **evaluation_state["identification"])

  # --- Collection -------------------------------------------------------------------------

  def prior_contexts(self, n: int) -> np.ndarray:
    """The prior context phi, once per task: [n, c]."""
    return repeat_context(self.model.context.numpy(), n)

  def adapt_contexts(self, batch: Dict[str, np.ndarray]) -> np.ndarray:
    """The inner loop's contexts [tasks, c] for a batch [tasks, n, ...] (compiled)."""
    batch = {key: tf.convert_to_tensor(value) for key, value in batch.items()}
    return self._adapt_fn(batch).numpy()

  def _collect_into_tables(self, task_ids, contexts, num_steps, tables) -> tuple:
    """Collects into the tables; returns (per-task transitions, the finished episodes'
    returns over the tasks)."""
    tasks = [self.family.train_tasks[i] for i in task_ids]
    data, returns = self.collector.collect(tasks, contexts, num_steps, self.explore_actor)
    for task_id, transitions in zip(task_ids, data):
      self.tables.add(int(task_id), tables, transitions)
    self.env_steps.assign_add(len(task_ids) * num_steps)
    return data, [r for task_returns in returns for r in task_returns]

  def collect_initial(self, task_ids: Optional[np.ndarray] = None) -> None:
    """Initial exploration: prior-context data from every training task (or from `task_ids`,
    a distributed collector's share)."""
    all_ids = np.arange(len(self.family.train_tasks)) if task_ids is None else task_ids
    for _ in range(self.num_initial_rounds):
      for ids in in_groups(all_ids, self.collect_slots):
        self._collect_into_tables(ids, self.prior_contexts(len(ids)), self.prior_steps,
                                  ("adapt", "full"))

  def collect_epoch(self, task_ids: Optional[np.ndarray] = None) -> Dict[str, list]:
    """Algorithm 1's data step: prior context -> adapt -> adapted context, per sampled task
    (or per task of `task_ids`, as a distributed collector chooses them).

    Returns the undiscounted returns of the episodes this step finished, by context
    {"prior": [...], "adapted": [...]} (the exploration policy's sampled actions; an episode
    still running when a pass ends is not counted).
    """
    ids = (self.rng.choice(len(self.family.train_tasks), self.tasks_per_epoch, replace=False)
           if task_ids is None else task_ids)
    returns = {"prior": [], "adapted": []}
    for group in in_groups(ids, self.collect_slots):
      prior_data, prior_returns = self._collect_into_tables(
          group, self.prior_contexts(len(group)), self.prior_steps, ("adapt", "full"))
      returns["prior"] += prior_returns
      contexts = self.adapt_contexts(stack_tasks(prior_data))
      if self.posterior_steps:
        returns["adapted"] += self._collect_into_tables(
            group, contexts, self.posterior_steps, "full")[1]
    return returns

  def log_collection(self, returns: Dict[str, list]) -> Dict[str, float]:
    """`collect_epoch`'s returns as a learning curve, in eval/ at the run's environment steps
    (Collect/return_{prior,adapted}_context): the mean over the episodes that finished, none
    written for a context whose passes finished none. Returns those means. Writing draws no
    random number, so a run trains the same with or without it."""
    means = {context: float(np.mean(r)) for context, r in returns.items() if r}
    with self.eval_writer.as_default(step=int(self.env_steps.numpy())):
      for context, mean in means.items():
        tf.summary.scalar(tags.COLLECT_RETURN[context], mean)
    return means

  # --- Training ---------------------------------------------------------------------------

  def refresh_normalizer(self) -> None:
    """Input/target statistics of the model from the full tables (training data only)."""
    ids = np.arange(len(self.family.train_tasks))
    batch = self.tables.sample(ids, "full", self.normalizer_rows)
    self.model.update_normalizer(flatten_tasks(batch))

  def _sample_step_batches(self, ids: np.ndarray) -> tuple:
    """The meta-step's adapt and eval batches, and the SAC batches [updates, tasks, rows]."""
    to_tensors = lambda batch: {k: tf.convert_to_tensor(v) for k, v in batch.items()}
    adapt_batch = to_tensors(self.tables.sample(ids, "adapt", self.adapt_batch_size))
    eval_batch = to_tensors(self.tables.sample(ids, "full", self.eval_batch_size))
    if self.sac_rows_per_task is None:
      return adapt_batch, eval_batch, None
    updates, rows = self.sac_updates_per_step, self.sac_rows_per_task
    sac = self.tables.sample(ids, "full", updates * rows)  # [tasks, updates * rows, ...]
    sac = {k: np.swapaxes(v.reshape((len(ids), updates, rows) + v.shape[2:]), 0, 1)
           for k, v in sac.items()}
    return adapt_batch, eval_batch, to_tensors(sac)

  def _train_step_graph(self, adapt_batch, eval_batch, sac_batches, with_summaries: bool):
    """One model meta-step, then its SAC updates, in one graph (no host round trip)."""
    model_info = self.model_trainer._train_step(  # pylint: disable=protected-access
        adapt_batch, eval_batch, with_nll_before=with_summaries)
    # SAC reads the contexts only after the model's numerics checks passed: a diverged model
    # is reported as the model's failure, not as the critic's that its NaN contexts caused.
    with tf.control_dependencies([model_info.meta_loss, model_info.grad_norm]):
      contexts = tf.identity(model_info.contexts)
    if sac_batches is None:
      sac_info = self.learner.train_tagged(eval_batch, contexts)
    else:
      for update in range(self.sac_updates_per_step):
        batch = {k: v[update] for k, v in sac_batches.items()}
        sac_info = self.learner.train_tagged(batch, contexts)
    return model_info, sac_info

  def train_epoch(self, progress: Optional[tqdm.tqdm] = None,
                  num_steps: Optional[int] = None) -> None:
    """`train_steps_per_epoch` (or `num_steps`: a distributed learner trains an epoch in
    parts, publishing its weights between them) x (one model meta-step + its SAC updates)."""
    num_tasks = len(self.family.train_tasks)
    num_steps = self.train_steps_per_epoch if num_steps is None else num_steps
    start = time.perf_counter()
    for _ in range(num_steps):
      ids = self.rng.choice(num_tasks, self.meta_batch_size, replace=False)
      step = int(self.train_step.numpy()) + 1
      summarise = step % self.summary_interval == 0
      model_info, sac_info = self._train_step_fn(*self._sample_step_batches(ids),
                                                 with_summaries=summarise)
      self.train_step.assign_add(1)
      if summarise:
        self._write_train_summaries(step, model_info, sac_info)
      if progress is not None:
        progress.update(1)
    elapsed = time.perf_counter() - start
    with self.eval_writer.as_default(step=int(self.env_steps.numpy())):
      tf.summary.scalar(tags.TRAIN_STEPS_PER_SEC, num_steps / elapsed)

  def _write_train_summaries(self, step, model_info, sac_info) -> None:
    with self.train_writer.as_default(step=step):
      summaries.write_train_step(model_info, sac_info, self.env_steps)

  # --- Evaluation -------------------------------------------------------------------------

  def _eval_ids(self) -> Dict[str, list]:
    return {"train": [int(i) for i in self.eval_train_ids],
            "test": list(range(len(self.family.test_tasks)))}

  @property
  def evaluator(self) -> evaluation.Evaluator:
    """The evaluation protocol on this family (`mier_tf/train/evaluation.py`): its own
    environments and random draws, so evaluating never changes what training does."""
    if self._evaluator is None:
      self._evaluator = evaluation.Evaluator(self.family, evaluation.EvalProtocol())
    return self._evaluator

  def eval_agent(self) -> evaluation.LiveAgent:
    """The run's model, inner loop and policies as the protocol evaluates them."""
    return evaluation.LiveAgent(self.model, self.agent, self._adapt_fn)

  def standing_still(self) -> Dict[str, np.ndarray]:
    """Zero-action returns [tasks, K] from the evaluated tasks' start states (computed once
    per process)."""
    if self._standing_still is None:
      self._standing_still = {
          split: np.stack([self.evaluator.standing_still(split, i) for i in ids])
          for split, ids in self._eval_ids().items()}
    return self._standing_still

  def evaluate(self) -> Dict[str, np.ndarray]:
    """MIER-wR under the evaluation protocol on fixed training tasks and every test task.

    Returns the per-task means {split: [tasks]}; the per-episode returns are in
    `last_episodes` {split: [tasks, K]}.
    """
    agent = self.eval_agent()
    results, lengths, episodes, contexts = {}, {}, {}, {}
    for split, ids in self._eval_ids().items():
      evals = [self.evaluator.evaluate_task(agent, split, i) for i in ids]
      episodes[split] = np.stack([e.returns for e in evals])
      results[split] = episodes[split].mean(axis=1)
      lengths[split] = np.concatenate([e.lengths for e in evals])
      contexts[split] = np.stack([e.context for e in evals])
    report = self.identify()
    still = {split: v.mean(axis=1) for split, v in self.standing_still().items()}
    step = int(self.env_steps.numpy())
    with self.eval_writer.as_default(step=step):
      summaries.write_evaluation(results, still, lengths)
      summaries.write_identification(report, step)
      if self.eval_video_steps:
        self._rollout_video(contexts["test"][0], step)
    with self.standing_still_writer.as_default(step=step):
      summaries.write_standing_still(still["test"])
    self.standing_still_writer.flush()
    self.last_returns = {"train": float(results["train"].mean()),
                         "test": float(results["test"].mean())}
    self.last_results, self.last_episodes = results, episodes
    return results

  def _rollout_video(self, context: np.ndarray, step: int) -> None:
    """Test task 0's MIER-wR episode as an animated GIF in the Images tab (eval/)."""
    task = self.family.test_tasks[0]
    try:
      frames, _ = video.rollout_frames(self.family, task, self.greedy_actor, context,
                                       steps=self.eval_video_steps)
    except Exception as e:  # pylint: disable=broad-except  (no OpenGL here: EGL, GLFW...)
      logging.warning("No rollout videos in this run: MuJoCo cannot render here (%s: %s). "
                      "Set MUJOCO_GL to a backend that works, or "
                      "MetaTrainingRun.eval_video_steps = 0.", type(e).__name__, e)
      self.eval_video_steps = 0
      return
    video.gif_summary(tags.TEST_TASK_00_ROLLOUT, frames, step, description=(
        f"MIER-wR on test task 0 ({self.family.describe_task(task)}), first "
        f"{self.eval_video_steps} steps"))

  def identify(self) -> identification.IdentificationReport:
    """Identification on training tasks, on fresh transitions (not the replay's rows).

    Per task, two independent prior-context batches of `adapt_batch_size` transitions give
    two adapted contexts (R^2 of the task parameter, spread ratio), and a third, held-out
    batch of `eval_batch_size` scores the per-block NLLs before and after adaptation. The
    data come from a collector and an exploration actor of their own, seeded by the
    protocol's seed: the same draws at every evaluation, none from training's streams.
    See `mier_tf.identification`.
    """
    ids = np.arange(self.identification_tasks)
    tasks = [self.family.train_tasks[i] for i in ids]
    seed = self.evaluator.protocol.seed
    collector = MultiTaskCollector(self.family, self.collect_slots, seed=seed)
    actor = self.eval_agent().explore_actor(np.random.default_rng([seed, 2]))

    def fresh(steps: int) -> Dict[str, np.ndarray]:
      per_task = []
      for group in in_groups(tasks, self.collect_slots):
        data, _ = collector.collect(group, self.prior_contexts(len(group)), steps, actor)
        per_task.extend(data)
      return stack_tasks(per_task)

    adapt_batches = [fresh(self.adapt_batch_size) for _ in range(2)]
    heldout = fresh(self.eval_batch_size)
    collector.close()
    features = self.family.task_features(tasks)
    report = identification.identify(self.model, self.adapt_contexts, adapt_batches, heldout,
                                     features)
    self.last_identification = report
    logging.info("Identification on %d training tasks (fresh data): R^2 %.3f, spread ratio "
                 "%.2f, reward NLL %.3f -> %.3f, state NLL %.3f -> %.3f", report.num_tasks,
                 report.r2, report.spread_ratio, report.nll_reward_before,
                 report.nll_reward_after, report.nll_state_before, report.nll_state_after)
    return report


def _check_fingerprint(root_dir: str, fingerprint: dict) -> None:
  """Refuses a root_dir that holds another family's or sizes' run (run.json)."""
  path = os.path.join(root_dir, "run.json")
  if os.path.exists(path):
    stored = run_dir.read_json(path)
    if stored != fingerprint:
      raise ConfigMismatchError(
          f"{root_dir} holds a run of another configuration ({stored}), not {fingerprint}: "
          "choose another --root_dir.")
  else:
    run_dir.atomic_write_json(path, fingerprint)


def open_run(root_dir: str, on_start: Optional[Callable[["MetaTrainingRun"], None]] = None
             ) -> Tuple["MetaTrainingRun", bool]:
  """Builds the run of root_dir and restores its last checkpoint, if there is one.

  Refuses a root_dir of another family or sizes; drops the summaries logged after the
  checkpoint (a kill mid-epoch would log them twice); calls `on_start(run)` before anything
  else is written; on a resumed run restores the host random state. Returns (run, resumed).
  """
  run = MetaTrainingRun(root_dir)
  _check_fingerprint(root_dir, run.fingerprint)
  resumed = run.checkpointer.restore()
  summaries.truncate_event_files(os.path.join(root_dir, "train"),
                                 int(run.train_step.numpy()) if resumed else 0)
  for writer in ("eval", tags.STANDING_STILL_WRITER, tags.MIER_WRITER):
    summaries.truncate_event_files(os.path.join(root_dir, writer),
                                   int(run.env_steps.numpy()) if resumed else -1)
  if on_start is not None:
    on_start(run)
  if resumed:
    run.rng = run.checkpointer.restored_rng
    run.set_host_state(run.checkpointer.restored_extra_state)
    logging.info("Resumed %s at epoch %d", root_dir, int(run.epoch.numpy()))
  return run, resumed


@gin.configurable
def meta_train(
    root_dir: str,
    num_epochs: int = 400,
    eval_interval: int = 10,
    checkpoint_interval: int = 10,
    max_env_steps: Optional[int] = None,
    export_at_end: bool = True,
    export_interval: Optional[int] = None,
    milestones: Sequence[float] = (),
    on_start: Optional[Callable[["MetaTrainingRun"], None]] = None,
) -> MetaTrainingRun:
  """Meta-trains MIER (Algorithm 1); resumes from root_dir's last checkpoint if there is one.

  Args:
    root_dir: output directory (train/, eval/, checkpoints/, export/).
    num_epochs: epochs of collection and training.
    eval_interval: epochs between MIER-wR evaluations (the last epoch is always evaluated).
    checkpoint_interval: epochs between checkpoints (the last epoch is always saved).
    max_env_steps: stop after the epoch in which the run's meta-training environment steps
      reach this budget (the paper's budgets: 1.5M, 2.5M for ant negated joints).
    export_at_end: write the policy and model SavedModels when training ends (export/).
    export_interval: also export them every this many epochs to export/step_<env_steps>/
      (None: only at the end).
    milestones: fractions of the run's planned epochs (`planned_epochs`) at which a whole
      checkpoint is kept in ROOT/milestones/step_<env_steps>/, a directory that evaluation
      and Algorithm 2 open like a run's (the paper's budget campaign: 0.25, 0.5, 0.75).
    on_start: called with the run once it is built and restored, before it writes anything
      (e.g. to save the gin config).

  Returns:
    The finished run.
  """
  for name, value in (("num_epochs", num_epochs), ("eval_interval", eval_interval),
                      ("checkpoint_interval", checkpoint_interval)):
    _require_int(f"meta_train.{name}", value, 1)
  if max_env_steps is not None:
    _require_int("meta_train.max_env_steps", max_env_steps, 1)
  if export_interval is not None:
    _require_int("meta_train.export_interval", export_interval, 1)
  run, resumed = open_run(root_dir, on_start)
  planned = planned_epochs(run, num_epochs, max_env_steps)
  milestone_epochs = {max(1, int(round(f * planned))) for f in milestones}
  for fraction in milestones:
    if not 0 < fraction < 1:
      raise ValueError(f"meta_train.milestones are fractions of the budget in (0, 1); got "
                       f"{fraction!r}")
  # A kill between a milestone's checkpoint and its copy: the copy is made now.
  if resumed and int(run.epoch.numpy()) in milestone_epochs:
    save_milestone(run)
  if not resumed:
    logging.info("Initial exploration of %d training tasks", len(run.family.train_tasks))
    start = time.perf_counter()
    run.collect_initial()
    _log_env_rate(run, int(run.env_steps.numpy()), time.perf_counter() - start)
    run.checkpointer.save(run.rng, run.host_state())

  run.epochs_run = 0
  started, first_epoch = time.perf_counter(), int(run.epoch.numpy())
  total = planned * run.train_steps_per_epoch
  with logging_redirect_tqdm(), tqdm.tqdm(
      total=total, initial=int(run.epoch.numpy()) * run.train_steps_per_epoch,
      desc=f"meta-train {run.family.name}", unit="step", dynamic_ncols=True) as bar:
    postfix = {}  # the last collection's returns and the last evaluation's, on the bar
    while int(run.epoch.numpy()) < num_epochs and not _budget_spent(run, max_env_steps):
      steps_before, start = int(run.env_steps.numpy()), time.perf_counter()
      collected = run.collect_epoch()
      _log_env_rate(run, int(run.env_steps.numpy()) - steps_before, time.perf_counter() - start)
      postfix.update({f"collect_{context}": f"{mean:.1f}"
                      for context, mean in run.log_collection(collected).items()})
      run.refresh_normalizer()
      run.train_epoch(bar)
      run.epoch.assign_add(1)
      run.epochs_run += 1
      epoch = int(run.epoch.numpy())
      last = epoch == num_epochs or _budget_spent(run, max_env_steps)
      if epoch % eval_interval == 0 or last:
        run.evaluate()
        postfix.update(train_return=f"{run.last_returns['train']:.1f}",
                       test_return=f"{run.last_returns['test']:.1f}")
      bar.set_postfix(postfix)
      # Before the checkpoint: a kill between the two redoes the epoch and its export.
      if export_interval is not None and epoch % export_interval == 0:
        export_run(run, os.path.join(root_dir, "export", f"step_{int(run.env_steps.numpy())}"))
      if epoch % checkpoint_interval == 0 or last or epoch in milestone_epochs:
        run.checkpointer.save(run.rng, run.host_state())
        write_progress(run, planned, max_env_steps, time.perf_counter() - started,
                       epoch - first_epoch)
        if epoch in milestone_epochs:
          save_milestone(run)
  finish_run(run, export_at_end)
  return run


def planned_epochs(run: MetaTrainingRun, num_epochs: int, max_env_steps: Optional[int]) -> int:
  """The epochs the run will train: num_epochs, or fewer where max_env_steps ends it first."""
  if max_env_steps is None:
    return num_epochs
  initial = (len(run.family.train_tasks) * run.prior_steps * run.num_initial_rounds)
  per_epoch = run.tasks_per_epoch * (run.prior_steps + run.posterior_steps)
  return min(num_epochs, max(1, math.ceil((max_env_steps - initial) / per_epoch)))


PROGRESS = "progress.json"


def write_progress(run: MetaTrainingRun, planned: int, max_env_steps: Optional[int],
                   seconds: float, epochs: int) -> None:
  """ROOT/progress.json at each checkpoint: where the run is, for status views (the
  campaign's). Not read back by training: a run resumes from its checkpoint alone."""
  files_path = os.path.join(run.root_dir, PROGRESS)
  run_dir.atomic_write_json(files_path, {
      "family": run.family.name, "epoch": int(run.epoch.numpy()), "planned_epochs": planned,
      "env_steps": int(run.env_steps.numpy()), "max_env_steps": max_env_steps,
      "train_step": int(run.train_step.numpy()),
      "seconds_per_epoch": seconds / epochs if epochs else None,
      "updated": time.time()})


MILESTONES = "milestones"
_COPIED_FILES = ("run.json", run_dir.RUN_CONFIG, "operative_config.gin")


def milestone_dirs(root_dir: str) -> list:
  """ROOT/milestones/step_<env_steps> directories, by env steps."""
  parent = os.path.join(root_dir, MILESTONES)
  if not os.path.isdir(parent):
    return []
  names = [n for n in os.listdir(parent) if n.startswith("step_") and n[5:].isdigit()]
  return [os.path.join(parent, n) for n in sorted(names, key=lambda n: int(n[5:]))]


def save_milestone(run: MetaTrainingRun) -> str:
  """Keeps the run's latest checkpoint in ROOT/milestones/step_<env_steps>/ (hard links; the
  directory appears whole, by one rename), with the run's identity files, so that it opens
  as a run directory of its own, and its export/ (the policy, model and agent SavedModels, as
  at a run's end), so that `scripts/evaluate.py --root_dir` reads it. Called right after the
  checkpoint is saved (or restored), so the export is that checkpoint's. Returns the
  directory."""
  target = os.path.join(run.root_dir, MILESTONES, f"step_{int(run.env_steps.numpy())}")
  if os.path.isdir(target):
    return target
  source = os.path.join(run.root_dir, "checkpoints")
  latest = run.checkpointer.manager.latest_checkpoint
  number = re.search(r"ckpt-(\d+)$", latest).group(1)
  tmp = f"{target}.tmp{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  checkpoints_dir = os.path.join(tmp, "checkpoints")
  os.makedirs(checkpoints_dir)
  for name in os.listdir(source):
    if name.startswith(f"ckpt-{number}.") or name in (f"replay_{number}",
                                                       f"host_{number}.json"):
      src = os.path.join(source, name)
      if os.path.isdir(src):
        shutil.copytree(src, os.path.join(checkpoints_dir, name), copy_function=os.link)
      else:
        os.link(src, os.path.join(checkpoints_dir, name))
  run_dir.atomic_write(os.path.join(checkpoints_dir, "checkpoint"),
                       f'model_checkpoint_path: "ckpt-{number}"\n'
                       f'all_model_checkpoint_paths: "ckpt-{number}"\n')
  for name in _COPIED_FILES:
    if os.path.exists(os.path.join(run.root_dir, name)):
      shutil.copy(os.path.join(run.root_dir, name), os.path.join(tmp, name))
  try:
    export_run(run, os.path.join(tmp, "export"))
  except Exception as e:  # pylint: disable=broad-except
    # The checkpoint is what a milestone is for: a failed export must not stop training
    # (a resumed run would fail here again, before its next epoch).
    logging.warning("Milestone at %d env steps kept without export/ (%s: %s): its "
                    "checkpoint is whole (scripts/adapt.py reads it)",
                    int(run.env_steps.numpy()), type(e).__name__, e)
    shutil.rmtree(os.path.join(tmp, "export"), ignore_errors=True)
  os.rename(tmp, target)
  logging.info("Milestone at %d env steps kept in %s", int(run.env_steps.numpy()), target)
  return target


def finish_run(run: MetaTrainingRun, export_at_end: bool) -> None:
  """Flushes the summaries and (if asked) exports to ROOT/export/ once training ends."""
  run.train_writer.flush()
  run.eval_writer.flush()
  export_dir = os.path.join(run.root_dir, "export")
  # A resumed run with nothing left to train keeps its export (a kill before it: write it).
  if export_at_end and (run.epochs_run or not os.path.exists(
      os.path.join(export_dir, "model", "saved_model.pb"))):
    export_run(run, export_dir)


def export_run(run: MetaTrainingRun, export_dir: str) -> None:
  """The policy and model SavedModels of the run as it stands, in export_dir."""
  export.export_policy(run.agent, export_dir)
  export.export_model(run.model, export_dir, run.inner)
  export.export_agent(run.model, run.agent, run.inner, export_dir)


def _budget_spent(run: MetaTrainingRun, max_env_steps: Optional[int]) -> bool:
  return max_env_steps is not None and int(run.env_steps.numpy()) >= max_env_steps


# Entries of a test task that Algorithm 2 writes: dropped when they came from another
# checkpoint or protocol than the run's results now do (they would be stale).
MIER_KEYS = ("mier", "mier_returns", "mier_curve", "mier_env_steps", "difference",
             "relabel_error", "relabel_stats", "adaptation")


def write_results(run: MetaTrainingRun) -> dict:
  """Writes MIER-wR under the protocol for every test task to eval/results.json.

  Every entry records the checkpoint it came from (`env_steps`) and the protocol; MIER
  results of another checkpoint or protocol are dropped (Algorithm 2 then runs again on
  those tasks): a larger budget never pairs an old MIER with a new MIER-wR.
  """
  if run.last_results is None or run.last_episodes is None:
    run.evaluate()
  results = results_lib.read_results(run.root_dir)
  env_steps = int(run.env_steps.numpy())
  protocol = run.evaluator.protocol.describe()
  still = run.standing_still()
  results.update(family=run.family.name, env_steps=env_steps, protocol=protocol,
                 train_return_mier_wr=float(run.last_results["train"].mean()),
                 train_standing_still=float(still["train"].mean()))
  if run.last_identification is not None:
    results["identification"] = {k: float(v) for k, v in
                                 run.last_identification._asdict().items()}
  dropped = []
  for i, returns in enumerate(run.last_episodes["test"]):
    entry = results["test_tasks"].setdefault(str(i), {})
    if "mier" in entry and (entry.get("mier_env_steps") != env_steps
                            or entry.get("protocol", protocol) != protocol):
      dropped.append(i)
    if entry.get("mier_env_steps") != env_steps or entry.get("protocol", protocol) != protocol:
      for key in MIER_KEYS:
        entry.pop(key, None)
    entry.update(task=run.family.describe_task(run.family.test_tasks[i]),
                 mier_wr=float(np.mean(returns)), mier_wr_returns=[float(r) for r in returns],
                 standing_still=float(still["test"][i].mean()),
                 standing_still_returns=[float(r) for r in still["test"][i]],
                 env_steps=env_steps, protocol=protocol)
  if dropped:
    logging.warning("Dropped MIER results of test tasks %s: they came from another checkpoint "
                    "or protocol than the one evaluated now (%d env steps); Algorithm 2 runs "
                    "on them again.", dropped, env_steps)
  results_lib.write_results_file(run.root_dir, results)
  return results


def _log_env_rate(run: MetaTrainingRun, steps: int, seconds: float) -> None:
  if steps and seconds > 0:
    with run.eval_writer.as_default(step=int(run.env_steps.numpy())):
      tf.summary.scalar(tags.ENV_STEPS_PER_SEC, steps / seconds)
