"""The evaluation protocol (mier_tf/train/evaluation.py): paired, seeded per task, independent
of training, never stale; and the export/agent SavedModel it runs on outside training."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import gin
import numpy as np
import pytest
import tensorflow as tf

from mier_tf import envs
from mier_tf.actors import FunctionActor, NumpyActor, ZeroActor
from mier_tf.train import evaluation
from mier_tf.train import job  # noqa: F401  registers train_and_adapt, as the scripts do
from mier_tf.train import meta_train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")


def _train(root, *bindings):
  args = [sys.executable, "scripts/train.py", "--gin_file=gin/smoke.gin", f"--root_dir={root}"]
  proc = subprocess.run(args + [f"--gin_bindings={b}" for b in bindings], cwd=REPO, env=ENV,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _results(root):
  with open(os.path.join(root, "eval", "results.json")) as f:
    return json.load(f)


def _checkpoint_state(root):
  """Every tensor of the last checkpoint, every replay array, and the host random states."""
  latest = tf.train.latest_checkpoint(os.path.join(root, "checkpoints"))
  reader = tf.train.load_checkpoint(latest)
  state = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
           if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}
  number = latest.rsplit("-", 1)[1]
  replay_dir = os.path.join(root, "checkpoints", f"replay_{number}")
  with open(os.path.join(replay_dir, "LATEST")) as f:
    replay_dir = os.path.join(replay_dir, f.read().strip())
  for name in sorted(os.listdir(replay_dir)):
    if name.endswith(".npz"):
      with np.load(os.path.join(replay_dir, name)) as arrays:
        state.update({f"{name}/{k}": arrays[k] for k in arrays.files})
  with open(os.path.join(root, "checkpoints", f"host_{number}.json")) as f:
    host = json.load(f)
  state["host/rng"] = json.dumps(host["rng"], sort_keys=True)
  state["host/collector"] = json.dumps(host["extra"]["collector"], sort_keys=True)
  state["host/explore"] = json.dumps(host["extra"]["explore"], sort_keys=True)
  return state


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A smoke run (2 epochs, evaluated after each) whose test task 0 went through Algorithm 2."""
  root = str(tmp_path_factory.mktemp("protocol") / "run")
  _train(root, "train_and_adapt.adapt_test_tasks=True", "adapt_all_test_tasks.task_indices=[0]")
  return root


def test_paired_difference_worked_by_hand():
  # d = [1, 2, 3]: mean 2, sample sd 1, se 1/sqrt(3) = 0.577; 2 > 2 * 0.577: won.
  d = evaluation.paired_difference([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
  assert d["mean"] == pytest.approx(2.0) and d["se"] == pytest.approx(1 / np.sqrt(3))
  assert d["verdict"] == "won"
  # d = [1, -1, 3]: mean 1, sd 2, se 1.155; 1 < 2.31: a tie, not a win.
  d = evaluation.paired_difference([11.0, 9.0, 13.0], [10.0, 10.0, 10.0])
  assert d["mean"] == pytest.approx(1.0) and d["se"] == pytest.approx(2 / np.sqrt(3))
  assert d["verdict"] == "tie"
  assert evaluation.paired_difference([0.0, 0.0, 1.0], [5.0, 6.0, 5.0])["verdict"] == "lost"


def test_protocol_draws_depend_on_seed_split_task_and_episode_alone():
  p = evaluation.EvalProtocol(adapt_steps=10, episodes=3, seed=4)
  draw = lambda *a: p.rng(*a).integers(2**31)
  assert draw("test", 3, 1, 2) == draw("test", 3, 1, 2)
  others = {draw("test", 3, 1, 1), draw("train", 3, 1, 2), draw("test", 4, 1, 2),
            draw("test", 3, 0, 2), evaluation.EvalProtocol(seed=5).rng("test", 3, 1, 2)
            .integers(2**31)}
  assert draw("test", 3, 1, 2) not in others
  with pytest.raises(ValueError, match="EvalProtocol.episodes must be an integer >= 1"):
    evaluation.EvalProtocol(episodes=0)


class _ScriptedAgent(evaluation.EvalAgent):
  """Exploration: uniform actions from the protocol's generator; deterministic: zeros."""

  def prior_context(self):
    return np.zeros(5, np.float32)

  def explore_actor(self, rng):
    return FunctionActor(lambda obs: rng.uniform(-1, 1, (obs.shape[0], 6)))

  def greedy_actor(self):
    return ZeroActor(6)


def test_adaptation_data_come_from_the_policy_the_protocol_names():
  family = envs.get_task_family("cheetah_vel_hard")
  data = {}
  for policy in evaluation.ADAPT_POLICIES:
    protocol = evaluation.EvalProtocol(adapt_steps=30, adapt_policy=policy)
    data[policy] = evaluation.Evaluator(family, protocol).adaptation_data(
        _ScriptedAgent(), "test", 2)
  assert np.all(data["deterministic"]["action"] == 0.0)
  assert np.abs(data["stochastic"]["action"]).min() > 0.0
  # The same start state (seeded by the protocol alone), then different actions.
  assert np.array_equal(data["deterministic"]["observation"][0],
                        data["stochastic"]["observation"][0])
  # Results recorded before the setting existed still match the default protocol.
  assert "adapt_policy" not in evaluation.EvalProtocol().describe()
  assert evaluation.EvalProtocol(adapt_policy="deterministic").describe()["adapt_policy"] == (
      "deterministic")
  with pytest.raises(ValueError, match="adapt_policy must be one of stochastic, deterministic"):
    evaluation.EvalProtocol(adapt_policy="greedy")


@pytest.mark.long
def test_the_final_checkpoint_does_not_depend_on_eval_interval(smoke_run_source, tmp_path):
  """Evaluating every epoch or only the last leaves the same trained run: evaluation has
  environments and random draws of its own. (The session's plain smoke run evaluates every
  epoch, gin/smoke.gin; it is only read.)"""
  roots = [str(smoke_run_source), str(tmp_path / "every_2")]
  _train(roots[1], "meta_train.eval_interval=2")
  a, b = (_checkpoint_state(r) for r in roots)
  assert sorted(a) == sorted(b)
  differ = [k for k in a if not (np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray)
                                 else a[k] == b[k])]
  assert not differ, differ[:5]
  # And the evaluations of the last epoch agree too (they ran on the same weights).
  assert _results(roots[0])["test_tasks"]["3"]["mier_wr_returns"] == (
      _results(roots[1])["test_tasks"]["3"]["mier_wr_returns"])


def test_algorithm_2_reports_the_same_mier_wr_as_meta_training_and_pairs_mier(run_dir):
  results = _results(run_dir)
  host = sorted(n for n in os.listdir(os.path.join(run_dir, "checkpoints"))
                if n.startswith("host_"))[-1]
  with open(os.path.join(run_dir, "checkpoints", host)) as f:
    evaluated = json.load(f)["extra"]["evaluation"]["episodes"]["test"]
  task0, task1 = results["test_tasks"]["0"], results["test_tasks"]["1"]
  # Algorithm 2 wrote task 0's MIER-wR again: the very episodes meta-training evaluated.
  assert task0["mier_wr_returns"] == evaluated[0]
  assert task1["mier_wr_returns"] == evaluated[1] and "mier" not in task1
  k = results["protocol"]["episodes"]
  assert len(task0["mier_returns"]) == k == len(task0["standing_still_returns"])
  d = np.subtract(task0["mier_returns"], task0["mier_wr_returns"])
  assert task0["difference"]["mean"] == pytest.approx(d.mean())
  assert task0["difference"]["se"] == pytest.approx(d.std(ddof=1) / np.sqrt(k))
  assert task0["mier_env_steps"] == results["env_steps"] == task0["env_steps"]


def test_a_task_evaluates_the_same_alone_or_with_others(run_dir):
  """evaluate.py on the export: a task's numbers do not depend on the other tasks asked."""
  def returns(tasks):
    proc = subprocess.run([sys.executable, "scripts/evaluate.py", f"--root_dir={run_dir}",
                           f"--tasks={tasks}", "--num_episodes=2", "--adapt_steps=20",
                           "--json"],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    return {e["index"]: e["returns"] for e in report["tasks"]}
  alone, together = returns("3"), returns("1,3,7")
  assert alone[3] == together[3]
  assert together[1] != together[3]  # and the tasks do differ


def test_reward_parts_split_the_protocols_own_episodes(run_dir):
  """evaluate.py --reward_parts: the parts of the K protocol episodes add up to the returns
  the protocol reports (the collector's, computed apart); cheetah velocity's parts are
  -|x_vel - v| and -0.05 sum(a^2), both <= 0, and it never falls."""
  from mier_tf import report_text  # pylint: disable=import-outside-toplevel
  proc = subprocess.run([sys.executable, "scripts/evaluate.py", f"--root_dir={run_dir}",
                         "--tasks=0,3", "--num_episodes=2", "--adapt_steps=20",
                         "--reward_parts", "--json"],
                        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  report = json.loads(proc.stdout[proc.stdout.index("{"):])
  for entry in report["tasks"]:
    parts = entry["reward_parts"]
    assert sorted(parts) == ["ctrl", "forward", "length", "return"]
    assert parts["return"] == pytest.approx(entry["return"], rel=1e-9, abs=1e-9)
    assert parts["forward"] + parts["ctrl"] == pytest.approx(parts["return"], rel=1e-9)
    assert parts["forward"] < 0 and parts["ctrl"] < 0 and parts["length"] == 200
  summary = report_text.evaluation_summary(report, "X")
  parts = report["tasks"][1]["reward_parts"]
  assert (f"  3 reward parts (mean over the episodes): forward {parts['forward']:.1f}, "
          f"ctrl {parts['ctrl']:.1f}; return {parts['return']:.1f}, length 200") in summary
  assert "reward parts" not in report_text.evaluation_summary(
      dict(report, tasks=[{k: v for k, v in e.items() if k != "reward_parts"}
                          for e in report["tasks"]]), "X")


def test_a_larger_budget_drops_mier_of_the_older_checkpoint(run_dir, tmp_path):
  # run_dir is a smoke run whose task 0 went through Algorithm 2: a copy grows.
  root = str(tmp_path / "grown")
  shutil.copytree(run_dir, root)
  before = _results(root)
  assert "mier" in before["test_tasks"]["0"]
  assert before["test_tasks"]["0"]["mier_env_steps"] == before["env_steps"]
  # Train one epoch more, without relabeling: task 0's MIER came from the old checkpoint.
  _train(root, "meta_train.num_epochs=3", "train_and_adapt.adapt_test_tasks=False",
         "adapt_all_test_tasks.task_indices=[0]", "adapt_ood.num_epochs=1")
  after = _results(root)
  assert after["env_steps"] > before["env_steps"]
  assert "mier" not in after["test_tasks"]["0"] and "difference" not in after["test_tasks"]["0"]
  assert after["test_tasks"]["0"]["env_steps"] == after["env_steps"]
  # With relabeling on, it runs again from the new checkpoint.
  _train(root, "meta_train.num_epochs=3", "train_and_adapt.adapt_test_tasks=True",
         "adapt_all_test_tasks.task_indices=[0]", "adapt_ood.num_epochs=1")
  again = _results(root)["test_tasks"]["0"]
  assert again["mier_env_steps"] == after["env_steps"]


def _restored(root):
  gin.clear_config()
  from mier_tf import cli  # pylint: disable=import-outside-toplevel
  cli.parse_run_config(os.path.join(root, "operative_config.gin"))
  run = meta_train.MetaTrainingRun(root)
  assert run.checkpointer.restore()
  return run


def test_the_agent_export_acts_as_the_policy_and_identifies_as_the_inner_loop(run_dir):
  run = _restored(run_dir)
  try:
    agent = evaluation.ExportAgent(os.path.join(run_dir, "export"))
    sig = agent.loaded.signatures
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(5, 17)).astype(np.float32)
    ctx = rng.normal(size=(5, 5)).astype(np.float32)
    augmented = np.concatenate([obs, ctx], 1)
    greedy = NumpyActor.of_agent(run.agent, deterministic=True)(augmented)
    np.testing.assert_allclose(sig["act"](observation=obs, context=ctx)["action"], greedy,
                               atol=1e-5)
    # One context [c] serves every row.
    one = sig["act"](observation=obs, context=ctx[0])["action"].numpy()
    np.testing.assert_allclose(one, NumpyActor.of_agent(run.agent, deterministic=True)(
        np.concatenate([obs, np.repeat(ctx[:1], 5, 0)], 1)), atol=1e-5)
    # The stochastic policy with given noise is NumpyActor's with the same draws.
    noise = np.random.default_rng(3).standard_normal((5, 6), np.float32)
    explore = NumpyActor.of_agent(run.agent)
    explore.rng = np.random.default_rng(3)
    np.testing.assert_allclose(sig["act_with_noise"](observation=obs, context=ctx,
                                                     noise=noise)["action"],
                               explore(augmented), atol=1e-5)
    # identify: the run's inner loop.
    data = {k: rng.normal(size=(20,) + s).astype(np.float32) for k, s in
            (("observation", (17,)), ("action", (6,)), ("next_observation", (17,)),
             ("reward", ()))}
    np.testing.assert_allclose(agent.identify(data), evaluation.LiveAgent(
        run.model, run.agent, run._adapt_fn).identify(data), atol=1e-5)
    np.testing.assert_allclose(agent.prior_context(), run.model.context.numpy())
  finally:
    gin.clear_config()


def test_a_milestone_keeps_its_checkpoints_export_and_evaluate_py_reads_it(tmp_path):
  """meta_train.milestones: ROOT/milestones/step_<n>/ opens as a run (its checkpoint and the
  run's identity files) and holds the export of that checkpoint, not of the run's end."""
  root = str(tmp_path / "run")
  _train(root, "meta_train.milestones=(0.5,)")  # 2 epochs: the milestone after the first
  (milestone,) = meta_train.milestone_dirs(root)
  for name in ("run.json", "run_config.gin", "operative_config.gin", "export/agent",
               "export/policy", "export/model"):
    assert os.path.exists(os.path.join(milestone, name)), name
  run = _restored(milestone)
  try:
    assert f"step_{int(run.env_steps.numpy())}" == os.path.basename(milestone)
    assert run.env_steps.numpy() < _results(root)["env_steps"]
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(5, 17)).astype(np.float32)
    ctx = rng.normal(size=(5, 5)).astype(np.float32)
    greedy = NumpyActor.of_agent(run.agent, deterministic=True)(np.concatenate([obs, ctx], 1))
    act = lambda export: evaluation.ExportAgent(export).loaded.signatures["act"](
        observation=obs, context=ctx)["action"].numpy()
    np.testing.assert_allclose(act(os.path.join(milestone, "export")), greedy, atol=1e-5)
    assert np.abs(act(os.path.join(root, "export")) - greedy).max() > 1e-3  # trained on
  finally:
    gin.clear_config()
  proc = subprocess.run([sys.executable, "scripts/evaluate.py", f"--root_dir={milestone}",
                         "--tasks=0", "--num_episodes=2", "--adapt_steps=20", "--json"],
                        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  (entry,) = json.loads(proc.stdout[proc.stdout.index("{"):])["tasks"]
  assert entry["index"] == 0 and len(entry["returns"]) == 2
  assert np.all(np.isfinite(entry["returns"]))


def test_export_py_writes_the_checkpoints_export_again(smoke_run_source, tmp_path):
  """scripts/export.py: the export of a run's last checkpoint is the one meta-training wrote
  at its end (the same actions); an existing export/ is replaced only with --overwrite."""
  from conftest import copy_run  # pylint: disable=import-outside-toplevel
  root = copy_run(smoke_run_source, tmp_path / "run")
  shutil.move(os.path.join(root, "export"), str(tmp_path / "original"))
  command = [sys.executable, "scripts/export.py", f"--root_dir={root}"]
  run = lambda *extra: subprocess.run(command + list(extra), cwd=REPO, env=ENV,
                                      capture_output=True, text=True, timeout=600)
  proc = run()
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.startswith(f"{root}/export: agent, policy, collect_policy and model")
  rng = np.random.default_rng(0)
  obs = rng.normal(size=(5, 17)).astype(np.float32)
  ctx = rng.normal(size=(5, 5)).astype(np.float32)
  act = lambda export: evaluation.ExportAgent(export).loaded.signatures["act"](
      observation=obs, context=ctx)["action"].numpy()
  np.testing.assert_array_equal(act(os.path.join(root, "export")),
                                act(str(tmp_path / "original")))
  for name in ("policy", "collect_policy", "model"):
    assert os.path.exists(os.path.join(root, "export", name, "saved_model.pb")), name
  again = run()
  assert again.returncode != 0
  assert again.stderr.strip().splitlines()[-1].endswith(
      f"{root}/export exists; --overwrite replaces it")
  assert run("--overwrite").returncode == 0
  missing = subprocess.run([sys.executable, "scripts/export.py", f"--root_dir={tmp_path}"],
                           cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
  assert missing.returncode != 0 and "operative_config.gin not found" in missing.stderr


def test_the_agent_export_loads_with_tensorflow_alone(run_dir, tmp_path):
  """A fresh process in which tf_agents and mier_tf cannot be imported identifies and acts."""
  script = textwrap.dedent(f"""
      import importlib.abc, sys
      class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
          if name.split(".")[0] in ("tf_agents", "mier_tf"):
            raise ImportError("not installed: " + name)
      sys.meta_path.insert(0, Refuse())
      import numpy as np, tensorflow as tf
      agent = tf.saved_model.load({os.path.join(run_dir, "export", "agent")!r})
      rng = np.random.default_rng(0)
      batch = dict(observation=rng.normal(size=(200, 17)), action=rng.normal(size=(200, 6)),
                   next_observation=rng.normal(size=(200, 17)), reward=rng.normal(size=200))
      context = agent.identify(**{{k: tf.constant(v, tf.float32) for k, v in batch.items()}})
      context = context["context"] if isinstance(context, dict) else context
      obs = tf.constant(rng.normal(size=(4, 17)), tf.float32)
      action = agent.act(obs, context)["action"]
      sampled = agent.act_sampled(obs, context, tf.constant(7, tf.int64))["action"]
      pred = agent.predict(obs, action, context)
      assert "tf_agents" not in sys.modules and "mier_tf" not in sys.modules
      print(context.shape, action.shape, sampled.shape, pred["next_observation"].shape,
            pred["reward"].shape, float(tf.reduce_max(tf.abs(action))))
      """)
  proc = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), env=ENV,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  shapes = proc.stdout.strip().splitlines()[-1]
  assert shapes.startswith("(5,) (4, 6) (4, 6) (4, 17) (4,)")
  assert float(shapes.split()[-1]) <= 1.0  # HalfCheetah's action bounds


def test_the_guard_keeps_the_meta_trained_policy_when_relabeling_made_it_worse(run_dir,
                                                                               monkeypatch):
  """A constructed failure: the 'relabeled' training drives the actor to a constant
  all -1 action (as wrong relabeled rewards could). On its guard episode it does worse than
  the meta-trained policy, so MIER must come out as MIER-wR exactly, and the task's export
  must act as the meta-trained policy."""
  from mier_tf.train import adapt_ood as adapt_ood_lib  # pylint: disable=import-outside-toplevel

  def sabotage(run, mix, context, updates):
    del mix, context, updates
    actor = run.agent.policy._actor_network  # pylint: disable=protected-access
    kernel, bias = actor.trainable_variables[-2:]
    kernel.assign(tf.zeros_like(kernel))
    action_dim = bias.shape[0] // 2
    bias.assign(tf.concat([tf.fill([action_dim], -20.0), tf.fill([action_dim], -20.0)], 0))
    return None

  monkeypatch.setattr(adapt_ood_lib, "train_policy_step", sabotage)
  monkeypatch.setattr(adapt_ood_lib.summaries, "write_adapt_epoch", lambda *a, **k: None)
  run = _restored(run_dir)
  try:
    meta_actor = NumpyActor.of_agent(run.agent, deterministic=True)
    result = adapt_ood_lib.adapt_ood(run_dir, 5, run=run, num_epochs=1, steps_per_epoch=2,
                                     guard_episodes=1)
    # The result records what ran: today's settings with this call's three arguments.
    assert result["settings"] == dict(adapt_ood_lib.algorithm2_settings(), num_epochs=1,
                                      steps_per_epoch=2, guard_episodes=1)
    assert result["settings"]["num_epochs"] != adapt_ood_lib.algorithm2_settings()["num_epochs"]
  finally:
    gin.clear_config()
  guard = result["guard"]
  assert guard["relabeled"] < guard["meta_trained"], guard  # the construction worked
  assert guard["chosen"] == "meta_trained" and guard["env_steps"] == 2 * 200
  assert result["mier_returns"] == result["mier_wr_returns"]
  assert result["difference"]["mean"] == 0.0
  assert result["real_env_steps"] == result["protocol"]["adapt_steps"] + 400
  # The sabotaged curve was measured before the guard chose (its constant policy).
  assert result["mier_curve"][0] < result["mier_wr"]
  agent = evaluation.ExportAgent(os.path.join(run_dir, "adapt", "task_5", "export"))
  obs = np.random.default_rng(1).normal(size=(4, 17)).astype(np.float32)
  ctx = np.tile(agent.prior_context(), (4, 1))
  np.testing.assert_allclose(agent.greedy_actor()(np.concatenate([obs, ctx], 1)),
                             meta_actor(np.concatenate([obs, ctx], 1)), atol=1e-5)


def test_the_policy_can_act_on_mier_wrs_context_while_the_model_relabels_on_its_own(
    run_dir, monkeypatch):
  """adapt_ood.policy_context = 'mier_wr': every SAC update, the relabeled actions and the
  evaluation use MIER-wR's context; the model relabels with phi_T; the export's prior
  context is the policy's. The settings name the option only off its default, so results
  recorded before it existed stay current; an unknown value names the valid ones."""
  from mier_tf.train import adapt_ood as adapt_ood_lib  # pylint: disable=import-outside-toplevel
  seen = {"train": [], "relabel": [], "evaluate": []}
  train_step, relabel_step, evaluate = (adapt_ood_lib.train_policy_step,
                                        adapt_ood_lib.relabel_experience,
                                        adapt_ood_lib.evaluate)

  def spy_train(run, mix, context, updates):
    seen["train"].append(np.array(context))
    return train_step(run, mix, context, updates)

  def spy_relabel(run, rng, model, context, *args, policy_context=None):
    seen["relabel"].append((np.array(context), np.array(policy_context)))
    return relabel_step(run, rng, model, context, *args, policy_context=policy_context)

  def spy_evaluate(run, evaluator, task_index, context):
    seen["evaluate"].append(np.array(context))
    return evaluate(run, evaluator, task_index, context)

  monkeypatch.setattr(adapt_ood_lib, "train_policy_step", spy_train)
  monkeypatch.setattr(adapt_ood_lib, "relabel_experience", spy_relabel)
  monkeypatch.setattr(adapt_ood_lib, "evaluate", spy_evaluate)
  run = _restored(run_dir)
  try:
    assert "policy_context" not in adapt_ood_lib.algorithm2_settings()
    with pytest.raises(ValueError, match="policy_context must be one of adapted, mier_wr"):
      adapt_ood_lib.adapt_ood(run_dir, 4, run=run, policy_context="wr")
    result = adapt_ood_lib.adapt_ood(run_dir, 4, run=run, num_epochs=1, steps_per_epoch=2,
                                     guard_episodes=0, policy_context="mier_wr")
    assert result["settings"] == dict(adapt_ood_lib.algorithm2_settings(), num_epochs=1,
                                      steps_per_epoch=2, guard_episodes=0,
                                      policy_context="mier_wr")
  finally:
    gin.clear_config()
  wr_context = np.array(result["contexts"]["mier_wr"], np.float32)
  phi = np.array(result["contexts"]["adapted"], np.float32)
  assert np.linalg.norm(phi - wr_context) > 1e-4  # the two contexts differ
  assert len(seen["train"]) == 2 and len(seen["evaluate"]) == 1 and seen["relabel"]
  for context in seen["train"] + seen["evaluate"]:
    np.testing.assert_allclose(np.ravel(context), wr_context, atol=1e-6)
  for model_context, policy_context in seen["relabel"]:
    np.testing.assert_allclose(np.ravel(model_context), phi, atol=1e-6)
    np.testing.assert_allclose(np.ravel(policy_context), wr_context, atol=1e-6)
  agent = evaluation.ExportAgent(os.path.join(run_dir, "adapt", "task_4", "export"))
  np.testing.assert_allclose(np.ravel(agent.prior_context()), wr_context, atol=1e-6)


def test_a_resumed_evaluation_keeps_only_tasks_done_with_todays_settings(run_dir, tmp_path):
  """An evaluation resumed after its settings changed (the campaign's patience 100 -> 3000)
  must redo the tasks an earlier evaluation left in results.json, and keep those that the
  interrupted one finished with the same checkpoint, protocol and settings."""
  from mier_tf.train import adapt_ood as adapt_ood_lib  # pylint: disable=import-outside-toplevel
  run = _restored(run_dir)
  try:
    gin.parse_config(["adapt_ood.patience = 3000", "adapt_ood.model_steps = 3000"])
    today = adapt_ood_lib.algorithm2_settings()
    assert today["patience"] == 3000 and today["model_steps"] == 3000
    same = {"mier": 1.0, "mier_env_steps": int(run.env_steps.numpy()),
            "protocol": evaluation.EvalProtocol().describe(), "settings": today}
    entries = {
        "0": same,                                                       # done today: kept
        "1": dict(same, settings=dict(today, patience=100)),             # stale settings
        "2": {k: v for k, v in same.items() if k != "settings"},         # before settings
        "3": dict(same, mier_env_steps=same["mier_env_steps"] - 1),      # other checkpoint
        "4": dict(same, protocol=dict(same["protocol"], episodes=99)),   # other protocol
        "5": {k: v for k, v in same.items() if k != "mier"},             # MIER-wR only
    }
    os.makedirs(tmp_path / "eval")
    with open(tmp_path / "eval" / "results.json", "w") as f:
      json.dump({"test_tasks": json.loads(json.dumps(entries))}, f)  # as read back from disk
    assert adapt_ood_lib.tasks_to_do(str(tmp_path), run, range(7)) == [1, 2, 3, 4, 5, 6]
  finally:
    gin.clear_config()
