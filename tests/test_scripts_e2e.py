"""End to end: the real scripts on gin/smoke.gin, in fresh processes, outputs read back."""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mier_tf import plotting
from mier_tf import tags

from conftest import copy_run  # the session's one smoke run, copied per module

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")


def _run(args, cwd=REPO, check=True):
  proc = subprocess.run([PY] + args, cwd=cwd, env=ENV, capture_output=True, text=True,
                        timeout=600)
  if check and proc.returncode != 0:
    raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
  return proc


def _train(root, *bindings):
  args = ["scripts/train.py", "--gin_file=gin/smoke.gin", f"--root_dir={root}"]
  return _run(args + [f"--gin_bindings={b}" for b in bindings])


def _tree_digest(path):
  digest = hashlib.sha256()
  for base, dirs, files in sorted(os.walk(path)):
    dirs.sort()
    for name in sorted(files):
      full = os.path.join(base, name)
      digest.update(os.path.relpath(full, path).encode())
      with open(full, "rb") as f:
        digest.update(f.read())
  return digest.hexdigest()


def _writers_tags(root):
  """{writer: its scalar tags} for every directory under root with event files."""
  return {os.path.relpath(base, root): set(plotting.read_scalars(base))
          for base, _, files in os.walk(root)
          if any(f.startswith("events.out.tfevents.") for f in files)}


def _layouts(root):
  """Every Custom Scalars layout in eval/'s event files: [(step, Layout)], as TensorBoard's
  plugin reads them (its tag, its plugin name, the serialised proto in a string tensor)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tensorboard.plugins.custom_scalar import layout_pb2, metadata  # pylint: disable=import-outside-toplevel
  found = []
  for name in sorted(os.listdir(os.path.join(root, "eval"))):
    if name.startswith("events.out.tfevents."):
      for record in tf.data.TFRecordDataset(os.path.join(root, "eval", name)):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
          if value.tag == metadata.CONFIG_SUMMARY_TAG:
            assert value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME
            found.append((event.step, layout_pb2.Layout.FromString(
                tf.make_ndarray(value.tensor).item())))
  return found


def _unmatched_chart_tags(layout, writers_tags):
  """The layout's tag patterns that match no tag of any writer: [(chart, pattern)]."""
  import re  # pylint: disable=import-outside-toplevel
  return [(chart.title, pattern) for category in layout.category for chart in category.chart
          for pattern in chart.multiline.tag
          if not any(re.search(pattern, tag) for found in writers_tags.values() for tag in found)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, smoke_run_source):
  return copy_run(smoke_run_source, tmp_path_factory.mktemp("smoke") / "run")


def test_train_writes_the_contracted_files(run_dir):
  for path in ("operative_config.gin", "checkpoints/checkpoint", "eval/results.json",
               "export/policy/saved_model.pb", "export/collect_policy/saved_model.pb",
               "export/model/saved_model.pb"):
    assert os.path.exists(os.path.join(run_dir, path)), path
  with open(os.path.join(run_dir, "operative_config.gin")) as f:
    config = f.read()
  assert "MetaTrainingRun.family = 'cheetah_vel_hard'" in config
  assert "create_sac_agent.gamma = 0.99" in config  # defaults are recorded too


def test_event_files_hold_the_design_tags(run_dir):
  # The hyperparameters (every binding of the configs) in ROOT, for the HParams tab.
  from tensorboard.plugins.hparams import plugin_data_pb2  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  hparams = [plugin_data_pb2.HParamsPluginData.FromString(
      v.metadata.plugin_data.content).session_start_info.hparams
             for name in os.listdir(run_dir) if name.startswith("events.out.tfevents.")
             for r in tf.data.TFRecordDataset(os.path.join(run_dir, name))
             for v in tf.compat.v1.Event.FromString(r.numpy()).summary.value
             if v.tag == "_hparams_/session_start_info"]
  assert len(hparams) == 1
  assert hparams[0]["MetaTrainingRun.family"].string_value == "cheetah_vel_hard"
  assert hparams[0]["MetaTrainingRun.train_steps_per_epoch"].number_value == 3
  assert hparams[0]["create_sac_agent.critic_fc_layers"].string_value == "(32, 32)"
  train = plotting.read_scalars(os.path.join(run_dir, "train"))
  evals = plotting.read_scalars(os.path.join(run_dir, "eval"))
  still = plotting.read_scalars(os.path.join(run_dir, tags.STANDING_STILL_WRITER))
  for tag in ("Model/nll_before_adapt", "Model/nll_after_adapt", "Model/meta_loss",
              "SAC/critic_loss", "SAC/actor_loss", "SAC/alpha"):
    assert tag in train, tag
    assert np.all(np.isfinite(train[tag][1])), tag
  # Perf against environment steps, in eval/: train/ holds the training-step axis only.
  for tag in ("Perf/env_steps_per_sec", "Perf/train_steps_per_sec"):
    assert tag in evals and tag not in train, tag
    assert np.all(evals[tag][1] > 0), tag
  np.testing.assert_array_equal(evals["Perf/train_steps_per_sec"][0],
                                evals["Eval/train_return"][0])
  for tag in ("Eval/train_return", "Eval/test_return_mier_wr", "Eval/identification_r2",
              "Eval/identification_spread_ratio", "Model/nll_state_before_adapt",
              "Model/nll_state_after_adapt", "Model/nll_reward_before_adapt",
              "Model/nll_reward_after_adapt"):
    assert tag in evals, tag
    assert len(evals[tag][0]) == 2, tag  # at each evaluation, against environment steps
    np.testing.assert_array_equal(evals[tag][0], evals["Eval/train_return"][0])
    assert np.all(np.isfinite(evals[tag][1])), tag
  # Every scalar written is named in mier_tf/tags.py, the one home of the tag names.
  named = {v for k, v in vars(tags).items() if k.isupper() and isinstance(v, str)}
  named |= {tags.test_task_return_tag(i) for i in range(30)} | set(tags.COLLECT_RETURN.values())
  assert set(train) | set(evals) | set(still) <= named, sorted(
      (set(train) | set(evals) | set(still)) - named)
  # No tag against two axes: train/'s and eval/'s tags are apart, Relabel/ is adapt/'s only.
  assert not set(train) & (set(evals) | set(still)), set(train) & (set(evals) | set(still))
  assert not any(t.startswith("Relabel/") for t in set(train) | set(evals) | set(still))
  # One process, one event file per writer (and one in ROOT, the hyperparameters); no MIER
  # run without relabeling.
  assert not os.path.exists(os.path.join(run_dir, tags.MIER_WRITER))
  for writer in ("train", "eval", tags.STANDING_STILL_WRITER, "."):
    files = [n for n in os.listdir(os.path.join(run_dir, writer))
             if n.startswith("events.out.tfevents.")]
    assert len(files) == 1, (writer, files)
  # Episode lengths (cheetah never falls: the time limit) and one return curve per test task.
  for split in ("train", "test"):
    np.testing.assert_array_equal(evals[f"Eval/{split}_episode_length"][1], [200, 200])
  per_task = sorted(t for t in evals if t.startswith("Eval_test_task/return_"))
  assert len(per_task) == 30 and per_task[0] == "Eval_test_task/return_00"
  # Against results.json (written apart, by write_results): curve i ends at the return of
  # test task i (the family's i-th), the aggregate at the mean of the 30.
  from mier_tf import envs  # pylint: disable=import-outside-toplevel
  family = envs.get_task_family("cheetah_vel_hard")
  with open(os.path.join(run_dir, "eval", "results.json")) as f:
    entries = json.load(f)["test_tasks"]
  for i, tag in enumerate(per_task):
    assert entries[str(i)]["task"] == family.describe_task(family.test_tasks[i]), i
    assert evals[tag][1][-1] == pytest.approx(entries[str(i)]["mier_wr"], rel=1e-6), tag
  assert evals["Eval/test_return_mier_wr"][1][-1] == pytest.approx(
      np.mean([entries[str(i)]["mier_wr"] for i in range(30)]), rel=1e-6)
  # Standing still in a run of its own, under the same per-task tags, at each evaluation:
  # results.json's value (the same start states each time).
  with open(os.path.join(run_dir, "eval", "results.json")) as f:
    results = json.load(f)
  assert sorted(still) == sorted(per_task + [tags.TEST_STANDING_STILL])
  for i, tag in enumerate(per_task):
    np.testing.assert_array_equal(still[tag][0], evals["Eval/train_return"][0])
    np.testing.assert_allclose(still[tag][1], results["test_tasks"][str(i)]["standing_still"],
                               rtol=1e-6)
  np.testing.assert_allclose(still[tags.TEST_STANDING_STILL][1], np.mean(
      [results["test_tasks"][str(i)]["standing_still"] for i in range(30)]), rtol=1e-6)
  # The Custom Scalars layout: once, at step 0; the mean and a chart per test task, whose
  # MIER-wR and standing-still tags are written (MIER's come with relabeling).
  (step, layout), = _layouts(run_dir)
  assert step == 0
  charts = list(layout.category[0].chart)
  assert len(charts) == 31 and charts[1].title == "test task 0 (v=2.772)"
  assert [c.multiline.tag[0] for c in charts[1:]] == [
      f"^Eval_test_task/return_{i:02d}$" for i in range(30)]
  written = _writers_tags(run_dir)
  missing = _unmatched_chart_tags(layout, written)
  # (The smoke run's collection passes, 20 steps, finish no 200-step episode: no Collect/.)
  assert sorted(p for _, p in missing) == sorted(f"^{t}$" for t in (
      tags.TEST_RETURN_MIER, tags.TEST_RETURN_MIER_WR_RELABELED, tags.RELABEL_RETURN_MIER,
      tags.RELABEL_RETURN_MIER_WR, *tags.COLLECT_RETURN.values())), missing
  # smoke: 2 epochs x 3 steps, a summary every step
  np.testing.assert_array_equal(train["SAC/critic_loss"][0], np.arange(1, 7))
  assert len(evals["Eval/test_return_mier_wr"][0]) == 2
  assert np.all(train["SAC/alpha"][1] > 0)


def test_results_json_has_every_test_task(run_dir):
  with open(os.path.join(run_dir, "eval", "results.json")) as f:
    results = json.load(f)
  assert results["family"] == "cheetah_vel_hard"
  assert results["identification"]["num_tasks"] == 100
  assert np.isfinite(results["identification"]["r2"])
  assert len(results["test_tasks"]) == 30
  for entry in results["test_tasks"].values():
    assert np.isfinite(entry["mier_wr"]) and entry["task"]


_LOAD_WITHOUT_MIER = r"""
import sys, json
import numpy as np, tensorflow as tf
import tf_agents
from tf_agents.trajectories import time_step as ts
root = sys.argv[1]
policy = tf.saved_model.load(root + "/export/policy")
model = tf.saved_model.load(root + "/export/model")
obs = np.random.default_rng(0).normal(size=(4, 17)).astype(np.float32)
ctx = model.signatures["prior_context"]()["context"].numpy()
obs_ctx = np.concatenate([obs, np.tile(ctx, (4, 1))], 1)
step = ts.TimeStep(tf.ones([4], tf.int32), tf.zeros([4]), tf.ones([4]), tf.constant(obs_ctx))
action = policy.action(step, ()).action.numpy()
act = np.random.default_rng(1).uniform(-1, 1, (4, 6)).astype(np.float32)
pred = model.signatures["predict"](observation=obs, action=act,
                                   context=np.tile(ctx, (4, 1)))
adapted = model.signatures["adapt"](observation=obs, action=act, next_observation=obs,
                                    reward=np.zeros(4, np.float32))["context"].numpy()
print(json.dumps({"mier_loaded": any(m.startswith("mier_tf") for m in sys.modules),
                  "action": list(action.shape), "bound": float(np.abs(action).max()),
                  "next_obs": list(pred["next_observation"].shape),
                  "reward": list(pred["reward"].shape), "context": list(adapted.shape),
                  "moved": float(np.abs(adapted - ctx).max())}))
"""


@pytest.mark.long
def test_exports_every_n_epochs_named_by_their_env_steps(tmp_path):
  root = str(tmp_path / "exports")
  _train(root, "meta_train.export_interval=1", "meta_train.export_at_end=False",
         "MetaTrainingRun.eval_video_steps=6")
  # The rollout GIF of test task 0 at each evaluation, in the Images tab.
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  gifs = [(e.step, v.tensor.string_val) for name in os.listdir(os.path.join(root, "eval"))
          if name.startswith("events.out.tfevents.")
          for r in tf.data.TFRecordDataset(os.path.join(root, "eval", name))
          for e in [tf.compat.v1.Event.FromString(r.numpy())] for v in e.summary.value
          if v.tag == "Eval/test_task_00_rollout"]
  assert len(gifs) == 2
  for _, (width, height, data) in gifs:
    assert (width, height) == (b"240", b"180") and data[:6] == b"GIF89a"
  with open(os.path.join(root, "eval", "results.json")) as f:
    final_steps = json.load(f)["env_steps"]
  steps = sorted(int(name.split("_")[1]) for name in os.listdir(os.path.join(root, "export")))
  assert len(steps) == 2 and steps[-1] == final_steps  # smoke: 2 epochs
  for step in steps:
    for name in ("policy", "collect_policy", "model"):
      assert os.path.exists(os.path.join(root, "export", f"step_{step}", name,
                                         "saved_model.pb")), (step, name)
  proc = _run(["scripts/evaluate.py", f"--export_dir={root}/export/step_{steps[0]}",
               "--family=cheetah_vel_hard", "--split=train", "--tasks=0,1",
               f"--video_dir={tmp_path}/videos", "--json"])
  report = json.loads(proc.stdout)
  assert len(report["tasks"]) == 2 and np.isfinite(report["mean_return"])
  import imageio  # pylint: disable=import-outside-toplevel
  for entry in report["tasks"]:
    frames = imageio.mimread(entry["video"])
    assert entry["video"].endswith(f"train_task_{entry['index']}.gif")
    assert len(frames) == 100 and frames[0].shape[:2] == (180, 240)  # 200 steps, every 2nd
    assert np.isfinite(entry["video_return"])


def test_saved_models_load_in_a_fresh_process_without_mier_tf(run_dir, tmp_path):
  proc = _run(["-c", _LOAD_WITHOUT_MIER, run_dir], cwd=str(tmp_path))
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["mier_loaded"] is False
  assert out["action"] == [4, 6] and out["bound"] <= 1.0
  assert out["next_obs"] == [4, 17] and out["reward"] == [4]
  assert out["context"] == [5] and out["moved"] > 0  # adapt runs real gradient steps


def test_evaluate_script_reports_json(run_dir):
  proc = _run(["scripts/evaluate.py", f"--export_dir={run_dir}/export",
               "--family=cheetah_vel_hard", "--split=test", "--tasks=0,3", "--json"])
  report = json.loads(proc.stdout)
  assert [t["index"] for t in report["tasks"]] == [0, 3]
  assert all(np.isfinite(t["return"]) for t in report["tasks"])
  assert report["mean_return"] == pytest.approx(np.mean([t["return"] for t in report["tasks"]]))
  # The human summary goes to stderr beside the JSON, and nothing of the imports' chatter.
  # (Wrapped at 100 columns where the path falls: compare with whitespace folded.)
  assert (f"MIER-wR of {run_dir}/export on 2 test tasks of cheetah_vel_hard"
          in " ".join(proc.stderr.split()))
  assert "higher is better" in proc.stderr and "mean over 2: " in proc.stderr
  for noise in ("OpenGL_accelerate", "Gym has been unmaintained", "cuda", "TensorRT"):
    assert noise not in proc.stderr, noise


def test_evaluate_reads_the_family_from_the_run_and_repeats_episodes(run_dir):
  proc = _run(["scripts/evaluate.py", f"--root_dir={run_dir}", "--split=train", "--tasks=1",
               "--num_episodes=2", "--json"])
  report = json.loads(proc.stdout)
  assert report["family"] == "cheetah_vel_hard" and report["protocol"]["episodes"] == 2
  (task,) = report["tasks"]
  assert len(task["returns"]) == 2 and task["return"] == pytest.approx(np.mean(task["returns"]))


def test_adapt_then_plot(run_dir, tmp_path):
  before = _tree_digest(os.path.join(run_dir, "checkpoints"))
  proc = _run(["scripts/adapt.py", f"--root_dir={run_dir}", "--task=0", "--video"])
  assert "test task 0 (v=" in proc.stdout and "MIER " in proc.stdout  # the summary
  import imageio  # pylint: disable=import-outside-toplevel
  frames = imageio.mimread(os.path.join(run_dir, "adapt", "task_0", "mier_vs_mier_wr.gif"))
  assert frames[0].shape[:2] == (180, 480)  # MIER-wR and MIER side by side
  assert "MIER-wR (left)" in proc.stdout
  assert _tree_digest(os.path.join(run_dir, "checkpoints")) == before  # never modified
  task_dir = os.path.join(run_dir, "adapt", "task_0")
  scalars = plotting.read_scalars(task_dir)
  assert len(scalars[tags.RELABEL_RETURN_MIER][0]) == 2  # smoke: 2 epochs
  # Against relabeling epochs, everything under Relabel/ (a tag of no other axis); MIER-wR
  # as a reference line.
  np.testing.assert_array_equal(scalars[tags.RELABEL_RETURN_MIER_WR][0],
                                scalars[tags.RELABEL_RETURN_MIER][0])
  assert all(tag.startswith("Relabel/") for tag in scalars), sorted(scalars)
  # MIER against env steps: one point at the checkpoint's, per task and as the mean (here of
  # task 0 alone) in eval/mier/; MIER-wR's mean on the same tasks in eval/.
  with open(os.path.join(run_dir, "eval", "results.json")) as f:
    results = json.load(f)
  step, task0 = results["env_steps"], results["test_tasks"]["0"]
  mier = plotting.read_scalars(os.path.join(run_dir, tags.MIER_WRITER))
  assert sorted(mier) == sorted([tags.TEST_RETURN_MIER, tags.test_task_return_tag(0)])
  for tag, (steps, values) in mier.items():
    assert list(steps) == [step] and values[0] == pytest.approx(task0["mier"], rel=1e-6), tag
  evals = plotting.read_scalars(os.path.join(run_dir, "eval"))
  assert evals["Eval/test_return_mier_wr"][0][-1] == step  # the same axis as MIER-wR's
  relabeled = evals[tags.TEST_RETURN_MIER_WR_RELABELED]
  assert list(relabeled[0]) == [step]
  assert relabeled[1][0] == pytest.approx(task0["mier_wr"], rel=1e-6)
  # Every tag the Custom Scalars layout names is now written by some run (but the
  # collection's, which the smoke run's 20-step passes never finish an episode of).
  written = _writers_tags(run_dir)
  assert {tags.STANDING_STILL_WRITER, tags.MIER_WRITER, "adapt/task_0"} <= set(written)
  (_, layout), = _layouts(run_dir)
  assert sorted(p for _, p in _unmatched_chart_tags(layout, written)) == sorted(
      f"^{t}$" for t in tags.COLLECT_RETURN.values())
  for name in ("policy", "model"):
    assert os.path.exists(os.path.join(task_dir, "export", name, "saved_model.pb"))
  with open(os.path.join(run_dir, "eval", "results.json")) as f:
    test_tasks = json.load(f)["test_tasks"]
  assert [i for i, e in test_tasks.items() if "mier" in e] == ["0"]  # the adapted task only
  entry = test_tasks["0"]
  with open(os.path.join(run_dir, "operative_config.gin")) as f:
    config = dict(l.split(" = ", 1) for l in f.read().splitlines() if l.startswith("adapt_ood."))
  epochs = int(config["adapt_ood.num_epochs"])
  # One return an epoch, TensorBoard's curve (the held-out NLLs are results.json's only).
  assert len(entry["mier_curve"]) == epochs
  for tag, (steps, _) in scalars.items():
    assert list(steps) == list(range(1, epochs + 1)), (tag, steps)
  np.testing.assert_allclose(scalars[tags.RELABEL_RETURN_MIER][1], entry["mier_curve"],
                             rtol=1e-6)
  np.testing.assert_allclose(scalars[tags.RELABEL_RETURN_MIER_WR][1], entry["mier_wr"],
                             rtol=1e-6)
  # MIER-wR, recomputed by adapt.py in its own process from the checkpoint: what
  # meta-training's last evaluation wrote for test task 0 (one protocol, seeded draws).
  final_return_00 = plotting.read_scalars(os.path.join(run_dir, "eval"))[
      tags.test_task_return_tag(0)][1][-1]
  assert entry["mier_wr"] == pytest.approx(final_return_00, rel=1e-6)
  # MIER is the relabeled policy's last epoch unless the guard kept the meta-trained one.
  relabeled = entry["guard"] is None or entry["guard"]["chosen"] == "relabeled"
  assert entry["mier"] == pytest.approx(np.mean(entry["mier_returns"]))
  assert entry["mier"] == pytest.approx(entry["mier_curve"][-1] if relabeled else
                                        entry["mier_wr"])
  # Against the meta-trained export, variable by variable: the adapted model's prior context
  # moved (to the task's context), its weights moved exactly when the whole-model steps
  # bettered the held-out NLL (the best kept), never its inner loop; the policy moved
  # (SAC on relabeled data) unless the guard kept the meta-trained one.
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  def moved(name):
    readers = [tf.train.load_checkpoint(os.path.join(d, "export", name, "variables", "variables"))
               for d in (run_dir, task_dir)]
    names = sorted(readers[0].get_variable_to_shape_map())
    assert names == sorted(readers[1].get_variable_to_shape_map()), name
    return {n for n in names if n != "_CHECKPOINTABLE_OBJECT_GRAPH"
            and not np.array_equal(readers[0].get_tensor(n), readers[1].get_tensor(n))}
  model_moved, fit = moved("model"), entry["adaptation"]
  assert "model/context/.ATTRIBUTES/VARIABLE_VALUE" in model_moved, model_moved
  assert any("_towers" in n for n in model_moved) == (
      fit["heldout_nll_model"] < fit["heldout_nll_context"]), (model_moved, fit)
  assert not any(n.startswith("inner_") for n in model_moved), model_moved
  assert any(n.startswith("model_variables/") for n in moved("policy")) == relabeled
  # The relabeled rewards scored against the simulator on the test task, in both places:
  # results.json has the mean over the task's relabelings (here one an epoch).
  error = entry["relabel_error"]
  assert sorted(error) == sorted(tags.RELABEL_ERROR_KEYS + ("reward_true_std", "rows"))
  assert error["rows"] == int(config["adapt_ood.relabel_states"])  # all of them (<= 500)
  assert error["reward_mae"] > 0 and error["reward_true_std"] > 0
  assert error["next_state_rmse"] < 1e-3  # cheetah_vel_hard relabels rewards only
  assert config["adapt_ood.relabel_every"] == config["adapt_ood.steps_per_epoch"]
  for key in tags.RELABEL_ERROR_KEYS:
    assert error[key] == pytest.approx(np.mean(scalars[tags.relabel_error_tag(key)][1]),
                                       rel=1e-5, abs=1e-9), key
  named = {v for k, v in vars(tags).items() if k.isupper() and isinstance(v, str)}
  named |= {tags.relabel_error_tag(key) for key in tags.RELABEL_ERROR_KEYS}
  assert set(scalars) <= named, sorted(set(scalars) - named)
  proc = _run(["scripts/plot.py", f"--root_dir={run_dir}"])
  for name in ("learning_curves.png", "training_losses.png", "mier_vs_mier_wr.png"):
    path = os.path.join(run_dir, "plots", name)
    assert os.path.getsize(path) > 5000, path
    with open(path, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  # Saved without checkpoints or events, the run still gives its scalars and its plots.
  saved = str(tmp_path / "saved")
  _run(["scripts/save_run.py", f"--root_dir={run_dir}", f"--out_dir={saved}"])
  assert sorted(os.listdir(saved)) == ["eval", "operative_config.gin", "scalars.json"]
  for writer in ("eval", "train", tags.STANDING_STILL_WRITER, tags.MIER_WRITER, "adapt/task_0"):
    original, copy = plotting.read_scalars(os.path.join(run_dir, writer)), \
        plotting.run_scalars(saved, writer)
    assert sorted(copy) == sorted(original), writer
    for tag, (steps, values) in original.items():
      np.testing.assert_array_equal(copy[tag][0], steps)
      np.testing.assert_allclose(copy[tag][1], values, rtol=1e-6)
  _run(["scripts/plot.py", f"--root_dir={saved}", f"--out_dir={saved}/plots"])
  assert os.path.getsize(os.path.join(saved, "plots", "mier_vs_mier_wr.png")) > 5000


def _counters_and_sizes(root):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from mier_tf import replay  # pylint: disable=import-outside-toplevel
  reader = tf.train.load_checkpoint(os.path.join(root, "checkpoints"))
  names = {n.split("/")[0]: n for n in reader.get_variable_to_shape_map()}
  counters = {k: int(reader.get_tensor(names[k])) for k in ("epoch", "env_steps", "train_step")}
  latest = tf.train.latest_checkpoint(os.path.join(root, "checkpoints"))
  number = latest.rsplit("-", 1)[1]
  tables = replay.InProcessTaskTables(100, 17, 6)
  tables.restore(os.path.join(root, "checkpoints", f"replay_{number}"))
  return counters, tables.sizes()


def test_rerunning_a_finished_run_says_so_and_changes_nothing(run_dir):
  before = {part: _tree_digest(os.path.join(run_dir, part))
            for part in ("eval", "export", "checkpoints", "train")}
  proc = _train(run_dir)
  assert "already finished with this configuration; nothing to do" in proc.stderr
  assert f"Run directory: {run_dir}\n" in proc.stderr  # where it is, said first
  # The script ends with the run's summary on stdout, read from results.json.
  assert f"Results of {run_dir} (cheetah_vel_hard, " in proc.stdout
  assert "MIER-wR on 30 test tasks" in proc.stdout and "identification on 100" in proc.stdout
  for part, digest in before.items():
    assert _tree_digest(os.path.join(run_dir, part)) == digest, part


def _final_state(root, tasks=None):
  """Every tensor of the last checkpoint, every replay array and manifest, results.json.

  `_CHECKPOINTABLE_OBJECT_GRAPH` (TensorFlow's description of the saved objects, not a
  tensor of the run) is left out.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  latest = tf.train.latest_checkpoint(os.path.join(root, "checkpoints"))
  reader = tf.train.load_checkpoint(latest)
  state = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
           if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}
  replay_dir = os.path.join(root, "checkpoints", "replay_" + latest.rsplit("-", 1)[1])
  with open(os.path.join(replay_dir, "LATEST")) as f:
    replay_dir = os.path.join(replay_dir, f.read().strip())
  for name in sorted(os.listdir(replay_dir)):
    if name.endswith(".npz"):
      with np.load(os.path.join(replay_dir, name)) as arrays:
        state.update({f"replay/{name}/{k}": arrays[k] for k in arrays.files})
  with open(os.path.join(replay_dir, "manifest.json")) as f:
    state["replay/manifest"] = json.load(f)
  with open(os.path.join(root, "eval", "results.json")) as f:
    results = json.load(f)
  for index, entry in results["test_tasks"].items():  # MIER-wR and standing still
    if tasks is not None and index not in tasks:
      continue
    state[f"results/{entry['task']}"] = (entry["mier_wr"], entry["standing_still"])
    if "mier" in entry:
      state[f"results/{entry['task']}/mier"] = (entry["mier"], entry["mier_curve"])
  state.update({f"results/{key}": value for key, value in results.items()
                if key != "test_tasks"})
  return os.path.basename(latest), state


def _summary_counts(logdir):
  """(tag, step) -> how many times the event files under logdir hold it."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  counts = {}
  for name in os.listdir(logdir):
    if name.startswith("events.out.tfevents."):
      for record in tf.data.TFRecordDataset(os.path.join(logdir, name)):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
          counts[(value.tag, event.step)] = counts.get((value.tag, event.step), 0) + 1
  return counts


def _assert_same_state(root, expected_root, tasks=None):
  """The final states agree (the results of the test tasks `tasks`, default all)."""
  (name, state), (expected_name, expected) = (_final_state(root, tasks),
                                              _final_state(expected_root, tasks))
  assert name == expected_name
  assert sorted(state) == sorted(expected)
  differ = [k for k in expected if not (np.array_equal(state[k], expected[k])
                                        if isinstance(expected[k], np.ndarray)
                                        else state[k] == expected[k])]
  assert not differ, f"{len(differ)} of {len(expected)} differ, e.g. {differ[:5]}"


def test_resume_matches_an_uninterrupted_run(run_dir, tmp_path):
  root = str(tmp_path / "resumed")
  _train(root, "meta_train.num_epochs=1", "train_and_adapt.adapt_test_tasks=False")
  first, _ = _counters_and_sizes(root)
  assert first["epoch"] == 1
  _train(root)  # the same command again: continues at epoch 1
  counters, sizes = _counters_and_sizes(root)
  expected_counters, expected_sizes = _counters_and_sizes(run_dir)
  assert counters == expected_counters
  np.testing.assert_array_equal(sizes, expected_sizes)
  assert counters["train_step"] == 6 and counters["epoch"] == 2
  # Tensor by tensor, the replay and the results: run_dir ran uninterrupted in another
  # process, so this also shows that one seed gives one run. (Leaving out the test tasks
  # that test_adapt_then_plot relabeled in run_dir, which this run has not done.)
  with open(os.path.join(run_dir, "eval", "results.json")) as f:
    not_adapted = {i for i, e in json.load(f)["test_tasks"].items() if "mier" not in e}
  _assert_same_state(root, run_dir, tasks=not_adapted)


# Kills in the order a run reaches them: (window, which arrival in that process). Each
# process resumes what the one before it left (tests/kill_harness.py names the windows).
KILL_CHAIN = [
    ("checkpoint_index", 1),  # the run's first checkpoint, before TensorFlow's index
    ("replay_data", 2),       # epoch 1's checkpoint: replay arrays written, no manifest
    ("checkpoint_write", 1),  # epoch 1's again: replay and host state written, no TF checkpoint
    ("checkpoint_index", 2),  # epoch 2's checkpoint, before its index
    ("export_model", 1),      # policy exported, model not
    ("results", 1),           # before the MIER-wR results are written
    ("relabeling", 2),        # after test task 0's relabeling, before task 1's
]
ADAPT_TWO_TASKS = ("train_and_adapt.adapt_test_tasks=True",
                   "adapt_all_test_tasks.task_indices=[0, 1]")


@pytest.mark.long
def test_kills_at_every_dangerous_window_resume_to_the_same_final_state(tmp_path):
  expected = str(tmp_path / "uninterrupted")
  _train(expected, *ADAPT_TWO_TASKS)
  root = str(tmp_path / "killed")
  flags = ["--gin_file=gin/smoke.gin", f"--root_dir={root}"] + [
      f"--gin_bindings={b}" for b in ADAPT_TWO_TASKS]
  for window, n in KILL_CHAIN:
    proc = _run(["tests/kill_harness.py", window, str(n)] + flags, check=False)
    assert proc.returncode == -9, (window, proc.returncode, proc.stderr[-2000:])
    assert f"SIGKILL at {window} #{n}" in proc.stderr
  proc = _train(root, *ADAPT_TWO_TASKS)
  assert "removed the remains of an interrupted first checkpoint" not in proc.stderr
  _assert_same_state(root, expected)
  # TensorBoard shows each step once, as many as uninterrupted (killed steps were dropped).
  for logdir in ("train", "eval", tags.STANDING_STILL_WRITER, tags.MIER_WRITER, "adapt/task_1"):
    counts = _summary_counts(os.path.join(root, logdir))
    assert max(counts.values()) == 1, (logdir, max(counts, key=counts.get))
    assert sorted(counts) == sorted(_summary_counts(os.path.join(expected, logdir))), logdir
  for part in ("export/policy", "export/model", "adapt/task_1/export/model"):
    assert os.path.exists(os.path.join(root, part, "saved_model.pb")), part


def test_bad_input_gets_one_line_and_a_nonzero_exit(run_dir, tmp_path):
  cases = [
      (["scripts/train.py", "--gin_file=gin/nope.gin"], "gin file not found: gin/nope.gin"),
      (["scripts/train.py", "--gin_file=gin/smoke.gin", f"--root_dir={tmp_path}/a",
        "--gin_bindings=MetaTrainingRun.family='cheetah_fly'"], "cheetah_vel_hard"),
      (["scripts/train.py", "--gin_file=gin/smoke.gin", f"--root_dir={run_dir}",
        "--gin_bindings=MetaTrainingRun.family='ant_negjoints'"], "another configuration"),
      (["scripts/evaluate.py", f"--export_dir={tmp_path}", "--family=cheetah_vel_hard"],
       "no SavedModel"),
      (["scripts/adapt.py", f"--root_dir={run_dir}", "--task=99"], "out of range"),
      (["scripts/train.py", "--gin_file=gin/smoke.gin", f"--root_dir={tmp_path}/nan",
        "--gin_bindings=InnerLoop.lr=1e30"], "diverged: MetaTrainer"),
  ]
  for args, expected in cases:
    proc = _run(args, check=False)
    assert proc.returncode != 0, args
    lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0], (args, proc.stderr[-2000:])


def test_reverb_backend_trains_checkpoints_and_resumes(tmp_path):
  """The Reverb backend end to end (cheetah_dir: 2 training tasks, so few samplers)."""
  root = str(tmp_path / "reverb")
  bindings = ["make_task_tables.backend='reverb'", "MetaTrainingRun.family='cheetah_dir'",
              "meta_train.export_at_end=False"]
  _train(root, *bindings, "meta_train.num_epochs=1")
  _train(root, *bindings)
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from mier_tf import replay  # pylint: disable=import-outside-toplevel
  reader = tf.train.load_checkpoint(os.path.join(root, "checkpoints"))
  names = {n.split("/")[0]: n for n in reader.get_variable_to_shape_map()}
  counters = {k: int(reader.get_tensor(names[k])) for k in ("epoch", "env_steps", "train_step")}
  # initial 2 tasks x 20 prior steps; each epoch 2 tasks x (20 prior + 20 posterior)
  assert counters == {"epoch": 2, "env_steps": 2 * 20 + 2 * 2 * 40, "train_step": 6}
  number = tf.train.latest_checkpoint(os.path.join(root, "checkpoints")).rsplit("-", 1)[1]
  tables = replay.make_task_tables("reverb", num_tasks=2, observation_dim=17, action_dim=6)
  try:
    tables.restore(os.path.join(root, "checkpoints", f"replay_{number}"))
    np.testing.assert_array_equal(tables.sizes(), [[60, 100], [60, 100]])
  finally:
    tables.close()


def test_identify_scores_an_export_from_the_saved_model_alone(run_dir):
  proc = _run(["scripts/identify.py", f"--root_dir={run_dir}", "--num_tasks=6", "--steps=20",
               "--ood_context_steps=3", "--json"])
  report = json.loads(proc.stdout)
  assert report["family"] == "cheetah_vel_hard"
  # Recomputed here from the same random-action data, the export's `adapt` and numpy's own
  # ridge fit (intercept not penalised): the leave-one-task-out R^2, the spread ratio.
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from mier_tf import envs, identification  # pylint: disable=import-outside-toplevel
  family = envs.get_task_family("cheetah_vel_hard")
  ids = [t["index"] for t in report["train_tasks"]]
  adapt = tf.saved_model.load(os.path.join(run_dir, "export", "model")).signatures["adapt"]
  data = identification.collect_random(family, [family.train_tasks[i] for i in ids], 40, 0)
  keys = ("observation", "action", "next_observation", "reward")
  x = np.array([[adapt(**{k: tf.constant(d[k][h * 20:(h + 1) * 20]) for k in keys})["context"]
                 for d in data] for h in range(2)], np.float64).reshape(2 * len(ids), -1)
  y, task = np.tile([family.train_tasks[i] for i in ids], 2), np.tile(np.arange(len(ids)), 2)
  errors = 0.0
  for held in range(len(ids)):
    fit = task != held
    mean, std = x[fit].mean(0), x[fit].std(0)
    train, test = [np.c_[np.ones(len(rows)), (rows - mean) / std] for rows in (x[fit], x[~fit])]
    gram = train.T @ train + identification.DEFAULT_RIDGE * fit.sum() * np.diag(
        [0.0] + [1.0] * x.shape[1])
    errors += np.sum(np.square(test @ np.linalg.solve(gram, train.T @ y[fit]) - y[~fit]))
  assert report["r2"] == pytest.approx(1 - errors / np.sum(np.square(y - y.mean())), rel=1e-6)
  centres, within = x.reshape(2, len(ids), -1).mean(0), np.sqrt(
      np.mean(np.sum(np.square(x[:len(ids)] - x[len(ids):]), -1)) / 2)
  between = np.sqrt(np.mean(np.sum(np.square(centres - centres.mean(0)), -1)))
  assert report["spread_ratio"] == pytest.approx(between / within, rel=1e-6)
  assert [t["parameter"] for t in report["train_tasks"]] == [[family.train_tasks[i]] for i in ids]
  assert [t["index"] for t in report["train_tasks"]] == [0, 19, 39, 59, 79, 99]
  assert len(report["test_tasks"]) == 30
  for row in report["test_tasks"]:
    assert len(row["read_after_adapt"]) == 1 and len(row["read_after_3_steps"]) == 1
  # The longer adaptation moves the context: the reading changes.
  assert any(abs(r["read_after_adapt"][0] - r["read_after_3_steps"][0]) > 1e-6
             for r in report["test_tasks"])


@pytest.mark.parametrize("args, message", [
    ([], "give either --root_dir"),
    (["--root_dir=/nonexistent"], "not a run directory"),
    (["--export_dir=/nonexistent", "--family=cheetah_vel_hard"], "no model SavedModel"),
])
def test_identify_bad_input_gets_one_line(args, message):
  proc = _run(["scripts/identify.py"] + args, check=False)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert message in lines[-1] and lines[-1].startswith("error:")


def test_a_truncated_saved_model_gets_one_line(run_dir, tmp_path):
  import shutil  # pylint: disable=import-outside-toplevel
  export = tmp_path / "export"
  shutil.copytree(os.path.join(run_dir, "export"), export)
  for name in ("model", "agent"):  # identify.py reads export/model, evaluate.py export/agent
    pb = export / name / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[:100])
  for script, name in (
      (["scripts/evaluate.py", f"--export_dir={export}", "--family=cheetah_vel_hard"], "agent"),
      (["scripts/identify.py", f"--export_dir={export}", "--family=cheetah_vel_hard"], "model")):
    proc = _run(script, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"{export / name}: cannot be loaded" in lines[0], lines


def test_relabel_study_runs_variants_from_one_checkpoint_and_resumes(smoke_run_source, tmp_path):
  """scripts/relabel_study.py (issue #22): each variant works on a hard-linked copy of the
  run's checkpoint (the run is never written), the guard off, and a second call does nothing.
  (It reads the session's shared smoke run itself: that it is left unchanged is the test.)"""
  run_dir = str(smoke_run_source)
  before = _tree_digest(os.path.join(run_dir, "checkpoints"))
  out = tmp_path / "study"
  args = ["scripts/relabel_study.py", f"--root_dir={run_dir}", f"--out={out}",
          "--variants=base,context_only", "--tasks=2", "--seeds=0",
          "--gin_bindings=adapt_ood.num_epochs = 1",
          "--gin_bindings=adapt_ood.guard_episodes = 1"]  # the study turns it off all the same
  proc = _run(args)
  assert "base seed 0 task 2 ..." in proc.stdout and "context_only seed 0 task 2" in proc.stdout
  assert _tree_digest(os.path.join(run_dir, "checkpoints")) == before
  with open(out / "study.json") as f:
    rows = {r["variant"]: r for r in json.load(f)}
  assert sorted(rows) == ["base", "context_only"]
  base, context_only = rows["base"], rows["context_only"]
  # gin/smoke.gin: 3 context steps, then up to 3 whole-model steps (none for context_only).
  assert context_only["model_steps"] == 0 and 1 <= base["model_steps"] <= 3
  assert base["context_steps"] <= 3 and context_only["context_steps"] <= 3
  assert context_only["nll_model"] == pytest.approx(context_only["nll_context"])
  # The same checkpoint, protocol and data: MIER-wR is the same in both variants.
  assert base["mier_wr"] == context_only["mier_wr"]
  for row in rows.values():
    assert row["difference"] == pytest.approx(row["mier"] - row["mier_wr"], abs=1e-3)
    assert row["seconds"] > 0 and row["reward_corr"] is not None
    # The task's process used CPU time, and at most its wall time on each of the 2 cores.
    assert 0 < row["cpu_seconds"] <= 2 * row["seconds"] + 1
  with open(out / "base" / "s0" / "eval" / "results.json") as f:
    entry = json.load(f)["test_tasks"]["2"]
  assert entry["guard"] is None and len(entry["mier_curve"]) == 1
  again = _run(args)
  assert "task 2 ..." not in again.stdout and again.stdout.count("\n") == 3  # header + 2 rows
  # --table --tasks: the table of those tasks alone (task 5 was not run; task 2 was).
  for tasks, count in (("--tasks=5", 0), ("--tasks=2,5", 2)):
    _run(["scripts/relabel_study.py", f"--out={out}", "--table", tasks])
    with open(out / "study.json") as f:
      assert len(json.load(f)) == count
  bad = _run(args[:3] + ["--variants=nope"], check=False)
  assert bad.returncode == 2 and "variants: base, release," in bad.stderr
  bad = _run(args[:3] + [f"--transplant=critic:{run_dir}"], check=False)
  assert bad.returncode == 2 and "PART one of agent, model, replay" in bad.stderr
