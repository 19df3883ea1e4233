"""mier_tf.train.run_dir: the lock, the run's identity, "finished", atomic writes."""
import os
import signal
import subprocess
import sys

import pytest

from mier_tf.train import run_dir

CONFIG = """# Parameters for MetaTrainingRun:
MetaTrainingRun.family = 'cheetah_vel_hard'
MetaTrainingRun.seed = 0
ContextualDynamicsModel.hidden_sizes = \\
    (200, 200, 200, 200)
meta_train.num_epochs = 400
"""


def test_config_bindings_reads_multi_line_values():
  assert run_dir.config_bindings(CONFIG) == {
      "MetaTrainingRun.family": "'cheetah_vel_hard'", "MetaTrainingRun.seed": "0",
      "ContextualDynamicsModel.hidden_sizes": "\\ (200, 200, 200, 200)",
      "meta_train.num_epochs": "400"}


def test_another_configuration_is_refused_naming_what_differs(tmp_path):
  root = str(tmp_path)
  run_dir.check_identity(root, CONFIG)  # nothing stored yet: fine, and nothing written
  assert not os.listdir(root)
  run_dir.record_identity(root, CONFIG)
  run_dir.check_identity(root, CONFIG)  # the same: fine
  with pytest.raises(run_dir.ConfigMismatchError,
                     match=r"MetaTrainingRun.seed: 0 in the run, 1 now"):
    run_dir.check_identity(root, CONFIG.replace("seed = 0", "seed = 1"))
  with pytest.raises(run_dir.ConfigMismatchError, match=r"InnerLoop.lr: \(unset\)"):
    run_dir.check_identity(root, CONFIG + "InnerLoop.lr = 0.1\n")
  # The budget may grow; the stored config follows it.
  longer = CONFIG.replace("num_epochs = 400", "num_epochs = 600")
  run_dir.check_identity(root, longer)
  run_dir.record_identity(root, longer)
  with open(os.path.join(root, run_dir.RUN_CONFIG)) as f:
    assert f.read() == longer


def test_a_finished_job_is_recognised_only_with_the_same_configuration(tmp_path):
  root = str(tmp_path)
  assert run_dir.finished(root, CONFIG) is None
  run_dir.mark_finished(root, CONFIG, {"epoch": 400})
  assert run_dir.finished(root, CONFIG)["epoch"] == 400
  assert run_dir.finished(root, CONFIG.replace("num_epochs = 400", "num_epochs = 600")) is None


def test_atomic_write_leaves_no_temporary_file(tmp_path):
  path = str(tmp_path / "sub" / "a.json")
  run_dir.atomic_write_json(path, {"b": 1, "a": [2]})
  run_dir.atomic_write_json(path, {"c": 3})
  assert run_dir.read_json(path) == {"c": 3}
  assert os.listdir(tmp_path / "sub") == ["a.json"]
  with open(path, "w") as f:
    f.write("")
  with pytest.raises(run_dir.CheckpointError, match="a.json: missing or corrupt"):
    run_dir.read_json(path)


def test_a_second_holder_is_refused_naming_the_pid_and_a_dead_holder_leaves_no_lock(tmp_path):
  root = str(tmp_path)
  with run_dir.RunDirectoryLock(root):
    with pytest.raises(run_dir.RunDirectoryBusy, match=f"in use by PID {os.getpid()}"):
      with run_dir.RunDirectoryLock(root):
        pass
  # Another process takes the lock and is killed with SIGKILL: the lock is free again.
  code = (f"import sys, time; sys.path.insert(0, {os.getcwd()!r}); "
          "from mier_tf.train import run_dir; "
          f"lock = run_dir.RunDirectoryLock({root!r}).__enter__(); print('held', flush=True); "
          "time.sleep(60)")
  holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(run_dir.RunDirectoryBusy, match=f"PID {holder.pid}"):
      run_dir.RunDirectoryLock(root).__enter__()
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with run_dir.RunDirectoryLock(root):
    pass
