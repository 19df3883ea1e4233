"""Distributed collection end to end: scripts/launch.py's server, collectors and learner as
real processes on loopback (the smoke config on cheetah_dir: 2 training tasks)."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
# The adapted pass is one whole episode (200 steps), so each round finishes one per task (the
# collectors' Collect/return_adapted_context); the prior pass (20 steps) finishes none.
CONFIG = ["--gin_file=gin/smoke.gin", "--gin_bindings=MetaTrainingRun.family='cheetah_dir'",
          "--gin_bindings=meta_train.export_at_end=False",
          "--gin_bindings=MetaTrainingRun.posterior_steps=200"]


def _launch(root, epochs, on_running=None, timeout=400):
  proc = subprocess.Popen(
      [sys.executable, "scripts/launch.py", *CONFIG, f"--gin_bindings=meta_train.num_epochs={epochs}",
       f"--root_dir={root}", "--collectors=2"], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True)
  try:
    if on_running is not None:
      on_running(proc)
    out, _ = proc.communicate(timeout=timeout)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.communicate()
  assert proc.returncode == 0, out[-4000:]
  return out


def _status(root, i):
  path = os.path.join(root, "collectors", f"collector_{i}", "status.json")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def _counters(root):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  reader = tf.train.load_checkpoint(os.path.join(root, "checkpoints"))
  names = {n.split("/")[0]: n for n in reader.get_variable_to_shape_map()}
  return {k: int(reader.get_tensor(names[k])) for k in ("epoch", "env_steps", "train_step")}


def _replay_sizes(root):
  """The server's table sizes recorded with the learner's last checkpoint [task, table]."""
  manifests = glob.glob(os.path.join(root, "checkpoints", "replay_*", "ckpt-*", "manifest.json"))
  manifest = max(manifests, key=lambda p: int(p.split("replay_")[1].split(os.sep)[0]))
  with open(manifest) as f:
    return json.load(f)["sizes"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """6 epochs with 2 collectors; collector 0 is killed (SIGKILL) once it has explored."""
  root = str(tmp_path_factory.mktemp("distributed") / "run")
  killed = {}

  def kill_collector_0(proc):
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
      status = _status(root, 0)
      if status.get("env_steps"):
        os.kill(status["pid"], signal.SIGKILL)
        killed.update(status)
        return
      time.sleep(0.2)

  out = _launch(root, 6, kill_collector_0)
  assert killed, "collector 0 never explored"
  return root, killed, out


def test_learner_trains_on_both_collectors_data_with_published_weights(run_dir):
  root, _, out = run_dir
  assert _counters(root)["train_step"] == 6 * 3 and _counters(root)["epoch"] == 6
  assert os.path.exists(os.path.join(root, "eval", "results.json"))
  sizes = _replay_sizes(root)
  assert all(adapt > 0 and full > adapt for adapt, full in sizes), sizes  # both tasks
  statuses = [_status(root, i) for i in range(2)]
  for status in statuses:  # each collector wrote data, on weights the learner published
    assert status["env_steps"] > 0 and status["rounds"] > 0, status
  versions = sorted({v for s in statuses for v in s["versions"]})
  assert versions[0] == 0 and len(versions) >= 3, versions  # the versions moved
  assert "The learner finished (0)" in out
  # Each collector's rounds as a learning curve, at the run's env steps (the learner's count).
  from mier_tf import plotting, tags  # pylint: disable=import-outside-toplevel
  final = _counters(root)["env_steps"]
  for i in range(2):
    curves = plotting.read_scalars(os.path.join(root, "collectors", f"collector_{i}", "eval"))
    assert tags.COLLECT_RETURN["prior"] not in curves  # 20-step passes finish no episode
    steps, values = curves[tags.COLLECT_RETURN["adapted"]]
    # Each round at the server's env steps once it was written (the learner's count).
    assert len(steps) >= 1 and steps[0] > 0, steps
    assert all(np.isfinite(values)) and all(abs(v) < 1e4 for v in values), values
  first = min(plotting.read_scalars(os.path.join(root, "collectors", f"collector_{i}", "eval"))[
      tags.COLLECT_RETURN["adapted"]][0][0] for i in range(2))
  assert first <= final, (first, final)


def test_a_killed_collector_is_restarted_and_rejoins(run_dir):
  root, killed, _ = run_dir
  status = _status(root, 0)
  assert status["starts"] == 2 and status["pid"] != killed["pid"], status
  assert status["rounds_since_start"] >= 1, status  # it collected again after the restart
  with open(os.path.join(root, "logs", "collector_0.log")) as f:
    log = f.read()
  assert log.count("initial exploration of") == 1  # the server had its share already


def test_a_second_launch_resumes_learner_and_server_from_their_checkpoints(run_dir):
  root, _, _ = run_dir
  sizes_before = _replay_sizes(root)
  out = _launch(root, 7)
  assert _counters(root)["train_step"] == 7 * 3
  assert "Resumed" in out
  with open(os.path.join(root, "logs", "server.log")) as f:
    assert "Loading checkpoint from" in f.read()  # the server restored its own
  sizes_after = _replay_sizes(root)
  assert all(a[1] >= b[1] for a, b in zip(sizes_after, sizes_before)), (sizes_before,
                                                                        sizes_after)
  with open(os.path.join(root, "logs", "collector_1.log")) as f:
    assert f.read().count("initial exploration of") == 1  # not redone after the restart


def test_an_unreachable_server_gets_one_line(tmp_path):
  from mier_tf.distributed import launch  # pylint: disable=import-outside-toplevel
  port = launch.free_port()
  start = time.monotonic()
  proc = subprocess.run(
      [sys.executable, "scripts/launch.py", *CONFIG, "--role=collector",
       f"--root_dir={tmp_path}", f"--server=localhost:{port}", "--connect_timeout_s=2"],
      cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(lines) == 1 and f"localhost:{port} did not answer within 2 s" in lines[0], lines
  assert time.monotonic() - start < 100


def _pid_of(role, root):
  """The pid of the process running `--role=<role>` for `root` (from /proc)."""
  for pid in os.listdir("/proc"):
    if not pid.isdigit():
      continue
    try:
      with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    except OSError:
      continue
    if f"--role={role}".encode() in argv and f"--root_dir={root}".encode() in argv:
      return int(pid)
  return None


def _epoch_or_zero(root):
  """The last checkpoint's epoch; 0 while its index names none (the first is being written).
  Anything else (an unreadable checkpoint, a missing counter) is an error of the run."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if tf.train.latest_checkpoint(os.path.join(root, "checkpoints")) is None:
    return 0
  return _counters(root)["epoch"]


@pytest.mark.long
def test_a_killed_learner_and_a_killed_server_are_restarted_and_the_run_finishes(tmp_path):
  """SIGKILL the learner after its epoch-2 checkpoint, then the server after the restarted
  learner's epoch-4 checkpoint: the launcher restarts both, the learner resumes from its
  checkpoint, the server restores its own, and the run ends at the configured step count."""
  root = str(tmp_path / "run")
  killed = {}

  def kill_learner_then_server(proc):
    for role, epoch in (("learner", 2), ("server", 4)):
      deadline = time.monotonic() + 300
      while proc.poll() is None and time.monotonic() < deadline:
        pid = _pid_of(role, root)
        if pid and _epoch_or_zero(root) >= epoch:
          os.kill(pid, signal.SIGKILL)
          killed[role] = (pid, _epoch_or_zero(root))
          break
        time.sleep(0.2)

  out = _launch(root, 7, kill_learner_then_server, timeout=600)
  assert set(killed) == {"learner", "server"}, (killed, out[-3000:])
  assert "learner exited (-9): starting it again" in out
  assert "server exited (-9): starting it again" in out
  counters = _counters(root)
  assert counters["epoch"] == 7 and counters["train_step"] == 7 * 3, counters
  assert "Resumed" in out  # the restarted learner continued from its checkpoint
  assert os.path.exists(os.path.join(root, "finished.json"))
  with open(os.path.join(root, "logs", "server.log")) as f:
    assert "Loading checkpoint from" in f.read()  # the restarted server restored its own
  sizes = _replay_sizes(root)
  assert all(adapt > 0 and full > adapt for adapt, full in sizes), sizes
