"""Tests of mier_tf.train.meta_train's training step: the SAC schedule and its data routing."""
import os

import gin
import numpy as np
import pytest

from mier_tf.train import builder
from mier_tf.train import meta_train


@pytest.fixture
def small_run(tmp_path):
  gin.clear_config()
  gin.bind_parameter("ContextualDynamicsModel.hidden_sizes", (16,))
  gin.bind_parameter("create_sac_agent.actor_fc_layers", (16,))
  gin.bind_parameter("create_sac_agent.critic_fc_layers", (16,))

  def make(**kwargs):
    settings = dict(family="cheetah_vel_hard", num_initial_rounds=1, tasks_per_epoch=2,
                    prior_steps=12, posterior_steps=12, train_steps_per_epoch=2,
                    meta_batch_size=3, adapt_batch_size=8, eval_batch_size=6,
                    summary_interval=1, identification_tasks=5)
    settings.update(kwargs)
    run = meta_train.MetaTrainingRun(str(tmp_path / "run"), **settings)
    run.collect_initial()
    run.refresh_normalizer()
    return run

  yield make
  gin.clear_config()


def test_release_schedule_trains_sac_once_per_meta_step_on_the_eval_batch(small_run):
  run = small_run()
  adapt_batch, eval_batch, sac_batches = run._sample_step_batches(np.arange(3))
  assert sac_batches is None
  assert adapt_batch["observation"].shape == (3, 8, 17)
  assert eval_batch["observation"].shape == (3, 6, 17)
  run.train_epoch()
  assert int(run.agent.train_step_counter.numpy()) == 2
  assert int(run.train_step.numpy()) == 2


def test_cpu_schedule_runs_several_updates_on_fresh_rows_of_the_same_tasks(small_run):
  run = small_run(sac_updates_per_step=3, sac_rows_per_task=4)
  _, _, sac_batches = run._sample_step_batches(np.array([7, 2, 5]))
  assert sac_batches["observation"].shape == (3, 3, 4, 17)  # [updates, tasks, rows, obs]
  # Every row of task slot i comes from that task's full table: the table's rows of task 7
  # include each row drawn for slot 0 (checked on whole observations).
  full = run.tables.sample([7], "full", 2000)["observation"][0]
  for row in sac_batches["observation"].numpy()[:, 0].reshape(-1, 17):
    assert np.any(np.all(full == row, axis=-1))
  run.train_epoch()
  assert int(run.agent.train_step_counter.numpy()) == 2 * 3
  # One trace for summary steps and one for the others at most.
  assert run._train_step_fn.experimental_get_tracing_count() <= 2


def test_bad_schedule_names_the_settings(small_run):
  with pytest.raises(ValueError, match="sac_updates_per_step > 1 needs sac_rows_per_task"):
    small_run(sac_updates_per_step=2)
  with pytest.raises(ValueError, match=r"sac_rows_per_task \(or None\) must be an integer >= 1"):
    small_run(sac_rows_per_task=0)
  with pytest.raises(ValueError, match="sac_updates_per_step must be an integer >= 1; got 'x'"):
    small_run(sac_updates_per_step="x")


def test_identification_reads_every_configured_training_task(small_run):
  run = small_run()
  report = run.identify()
  assert report.num_tasks == 5
  assert np.isfinite(report.nll_state_before) and np.isfinite(report.nll_reward_after)
  assert report.within_spread > 0


@pytest.mark.parametrize("binding, value, message", [
    ("num_epochs", "abc", "meta_train.num_epochs must be an integer >= 1; got 'abc'"),
    ("num_epochs", -1, "meta_train.num_epochs must be an integer >= 1; got -1"),
    ("eval_interval", 0, "meta_train.eval_interval must be an integer >= 1; got 0"),
    ("checkpoint_interval", 0, "meta_train.checkpoint_interval must be an integer >= 1"),
    ("max_env_steps", 0.5, "meta_train.max_env_steps must be an integer >= 1"),
])
def test_bad_budget_is_refused_before_anything_is_written(tmp_path, binding, value, message):
  root = tmp_path / "run"
  with pytest.raises(ValueError, match=message):
    meta_train.meta_train(str(root), **{binding: value})
  assert not root.exists()


def test_bad_run_setting_names_its_binding(tmp_path):
  gin.clear_config()
  with pytest.raises(ValueError, match="MetaTrainingRun.prior_steps must be an integer >= 1; "
                     "got 'abc'"):
    meta_train.MetaTrainingRun(str(tmp_path), family="cheetah_vel_hard", prior_steps="abc")
  with pytest.raises(ValueError, match="MetaTrainingRun.meta_batch_size must be an integer"):
    meta_train.MetaTrainingRun(str(tmp_path), family="cheetah_vel_hard", meta_batch_size=True)


def test_evaluated_training_tasks_are_fixed_and_span_the_training_range(small_run):
  run = small_run(eval_train_tasks=5)
  velocities = [run.family.train_tasks[i] for i in run.eval_train_ids]
  assert len(velocities) == 5
  assert min(velocities) < 0.05 and max(velocities) > 1.45  # train v ~ U(0, 1.5)
  assert sorted(velocities) == pytest.approx(np.quantile(run.family.train_tasks,
                                                         [0, .25, .5, .75, 1]), abs=0.05)


def test_algorithm_1_routes_prior_data_to_both_tables_and_adapted_data_to_the_full_one(small_run):
  """collect_epoch: prior context -> both tables; adapt on that data; adapted -> full only."""
  run = small_run(tasks_per_epoch=3, prior_steps=10, posterior_steps=14)
  collects, adds = [], []
  collect, add = run.collector.collect, run.tables.add

  def spy_collect(tasks, contexts, num_steps, action_fn):
    data, returns = collect(tasks, contexts, num_steps, action_fn)
    collects.append((np.array(contexts), num_steps, data))
    return data, returns

  run.collector.collect = spy_collect
  run.tables.add = lambda task, table, rows: (adds.append((task, table, len(rows["reward"]))),
                                              add(task, table, rows))
  sizes_before = run.tables.sizes().copy()
  run.collect_epoch()
  (prior_contexts, prior_steps, prior_data), (contexts, posterior_steps, _) = collects
  assert (prior_steps, posterior_steps) == (10, 14)
  np.testing.assert_array_equal(prior_contexts, np.tile(run.model.context.numpy(), (3, 1)))
  # The second pass acts on the contexts adapted from the first pass's data.
  np.testing.assert_allclose(contexts, run.adapt_contexts(meta_train.stack_tasks(prior_data)),
                             rtol=1e-5)
  assert not np.allclose(contexts, prior_contexts)
  tasks = [task for task, _, _ in adds[:3]]
  assert adds == ([(t, ("adapt", "full"), 10) for t in tasks] + [(t, "full", 14) for t in tasks])
  grown = run.tables.sizes() - sizes_before  # [tasks, (adapt, full)]
  np.testing.assert_array_equal(grown[tasks], [[10, 24]] * 3)
  assert grown.sum() == 3 * 34


def test_the_release_schedules_sac_batch_is_the_eval_batch_tagged_with_its_contexts(small_run):
  run = small_run()
  adapt_batch, eval_batch, _ = run._sample_step_batches(np.arange(3))
  seen = []
  train_tagged = run.learner.train_tagged
  run.learner.train_tagged = lambda batch, contexts: (seen.append((batch, contexts)),
                                                      train_tagged(batch, contexts))[1]
  model_info, _ = run._train_step_graph(adapt_batch, eval_batch, None, with_summaries=False)
  ((batch, contexts),) = seen
  assert batch is eval_batch
  np.testing.assert_array_equal(contexts.numpy(), model_info.contexts.numpy())


def test_the_run_trains_the_parts_its_builder_makes(small_run):
  """MetaTrainingRun.make_parts: the run uses what the builder returns, made after seeding."""
  made = []

  def make_parts(family, **kwargs):
    parts = builder.make_run_parts(family, **kwargs)
    made.append((family.name, kwargs, parts))
    return parts

  run = small_run(make_parts=make_parts, seed=3)
  ((name, kwargs, parts),) = made
  assert name == "cheetah_vel_hard" and kwargs == dict(context_dim=5, seed=3, collect_slots=10)
  assert run.model is parts.model and run.agent is parts.agent and run.tables is parts.tables
  assert run.explore_actor is parts.explore_actor and run.inner is parts.inner
  assert run.tables.sizes().sum() > 0  # collect_initial filled the builder's tables
  # The same seed builds the same networks with or without a custom builder.
  other = small_run(seed=3)
  for a, b in zip(run.model.trainable_variables, other.model.trainable_variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_settings_above_the_familys_task_count_are_capped_visibly(small_run, caplog):
  """cheetah_dir has 2 training tasks: each larger setting is used as 2, with a warning
  naming the binding, the configured and the used value; identification records 2."""
  with caplog.at_level("WARNING"):
    run = small_run(family="cheetah_dir", tasks_per_epoch=5, meta_batch_size=10,
                    eval_train_tasks=5, identification_tasks=100)
  assert (run.tasks_per_epoch, run.meta_batch_size, run.identification_tasks) == (2, 2, 2)
  assert len(run.eval_train_ids) == 2
  for binding, configured in (("tasks_per_epoch", 5), ("meta_batch_size", 10),
                              ("eval_train_tasks", 5), ("identification_tasks", 100)):
    assert (f"MetaTrainingRun.{binding} capped: configured {configured}, used 2 "
            "(cheetah_dir has 2 training tasks)") in caplog.text
  assert run.identify().num_tasks == 2
  # Settings within the family's task count: no warning, used as configured.
  caplog.clear()
  with caplog.at_level("WARNING"):
    run = small_run()
  assert "capped" not in caplog.text
  assert (run.tasks_per_epoch, run.meta_batch_size, run.identification_tasks) == (2, 3, 5)


def test_collection_returns_are_the_finished_episodes_reward_sums_logged_at_env_steps(small_run):
  """collect_epoch's returns: each 200-step cheetah episode (the time limit, no termination)
  is the sum of its 200 rewards; a pass shorter than an episode finishes none. log_collection
  writes their means in eval/ at the run's environment steps."""
  from mier_tf import plotting  # pylint: disable=import-outside-toplevel
  from mier_tf import tags  # pylint: disable=import-outside-toplevel
  run = small_run(tasks_per_epoch=2, prior_steps=200, posterior_steps=450)
  rewards = []
  collect = run.collector.collect

  def spy_collect(tasks, contexts, num_steps, action_fn):
    data, returns = collect(tasks, contexts, num_steps, action_fn)
    rewards.append([d["reward"] for d in data])
    return data, returns

  run.collector.collect = spy_collect
  returns = run.collect_epoch()
  (prior, adapted) = rewards
  # Prior pass: one episode per task; adapted pass: two per task, the last 50 steps unfinished.
  np.testing.assert_allclose(returns["prior"], [r.sum() for r in prior], rtol=1e-5)
  np.testing.assert_allclose(returns["adapted"], [r[s:s + 200].sum() for r in adapted
                                                  for s in (0, 200)], rtol=1e-5)
  means = run.log_collection(returns)
  assert means == pytest.approx({"prior": np.mean([r.sum() for r in prior]),
                                 "adapted": np.mean([r[:400].sum() for r in adapted]) / 2})
  step = int(run.env_steps.numpy())
  # A pass shorter than an episode: nothing written for it.
  run.env_steps.assign_add(1000)
  assert run.log_collection({"prior": [], "adapted": [7.0]}) == {"adapted": 7.0}
  run.eval_writer.flush()
  scalars = plotting.read_scalars(os.path.join(run.root_dir, "eval"))
  steps, values = scalars[tags.COLLECT_RETURN["adapted"]]
  np.testing.assert_array_equal(steps, [step, step + 1000])
  np.testing.assert_allclose(values, [means["adapted"], 7.0], rtol=1e-5)
  steps, values = scalars[tags.COLLECT_RETURN["prior"]]
  np.testing.assert_array_equal(steps, [step])
  np.testing.assert_allclose(values, [means["prior"]], rtol=1e-5)


def test_a_milestone_whose_export_fails_keeps_its_checkpoint_and_training_goes_on(
    small_run, monkeypatch, caplog):
  """A failed export (a full disk, say) leaves the milestone without export/ but whole: the
  checkpoint is what it is for, and a resumed run would otherwise fail there again."""
  run = small_run()
  run.checkpointer.save(run.rng, run.host_state())

  def broken(_, export_dir):
    os.makedirs(os.path.join(export_dir, "agent"))  # half written, then the failure
    raise OSError("No space left on device")

  monkeypatch.setattr(meta_train, "export_run", broken)
  milestone = meta_train.save_milestone(run)
  assert meta_train.milestone_dirs(run.root_dir) == [milestone]
  assert "export" not in os.listdir(milestone)
  assert any(n.startswith("ckpt-") for n in os.listdir(os.path.join(milestone, "checkpoints")))
  assert "kept without export/ (OSError: No space left on device)" in caplog.text
