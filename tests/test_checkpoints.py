"""Run checkpoints: whole after a crash at any write, errors that name the file at fault."""
import os

import numpy as np
import pytest
import tensorflow as tf

from mier_tf import replay
from mier_tf.train import checkpoints


def _rows(n, value):
  return dict(observation=np.full((n, 3), value, np.float32), action=np.zeros((n, 2), np.float32),
              reward=np.full(n, value, np.float32),
              next_observation=np.zeros((n, 3), np.float32), discount=np.ones(n, np.float32))


def _make(directory):
  tables = replay.InProcessTaskTables(2, 3, 2)
  weight = tf.Variable(np.zeros(4, np.float32))
  step = tf.Variable(0, dtype=tf.int64)
  ckpt = checkpoints.RunCheckpointer(directory, tables, weight=weight, step=step)
  return ckpt, tables, weight, step


def test_save_and_restore_everything(tmp_path):
  ckpt, tables, weight, step = _make(str(tmp_path))
  tables.add(0, ("adapt", "full"), _rows(5, 1.0))
  weight.assign([1, 2, 3, 4])
  step.assign(7)
  rng = np.random.default_rng(3)
  rng.integers(10, size=5)
  ckpt.save(rng, extra_state={"x": [1]})
  expected_draw = rng.integers(1000, size=4)

  fresh, fresh_tables, fresh_weight, fresh_step = _make(str(tmp_path))
  assert fresh.restore()
  np.testing.assert_array_equal(fresh_weight.numpy(), [1, 2, 3, 4])
  assert int(fresh_step.numpy()) == 7
  np.testing.assert_array_equal(fresh_tables.sizes(), [[5, 5], [0, 0]])
  np.testing.assert_array_equal(fresh.restored_rng.integers(1000, size=4), expected_draw)
  assert fresh.restored_extra_state == {"x": [1]}


def test_nothing_to_restore_in_an_empty_directory(tmp_path):
  ckpt, *_ = _make(str(tmp_path / "new"))
  assert ckpt.restore() is False


@pytest.mark.parametrize("stage", ["tables", "tf"])
def test_a_crash_during_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch, stage):
  ckpt, tables, weight, step = _make(str(tmp_path))
  tables.add(1, "full", _rows(3, 2.0))
  weight.assign([1, 1, 1, 1])
  ckpt.save(np.random.default_rng(0))

  tables.add(1, "full", _rows(4, 5.0))
  weight.assign([9, 9, 9, 9])

  def crash(*args, **kwargs):
    raise KeyboardInterrupt("killed")

  target = (tables, "save") if stage == "tables" else (ckpt.manager, "save")
  monkeypatch.setattr(*target, crash)
  with pytest.raises(KeyboardInterrupt):
    ckpt.save(np.random.default_rng(0))
  monkeypatch.undo()

  fresh, fresh_tables, fresh_weight, _ = _make(str(tmp_path))
  assert fresh.restore()
  np.testing.assert_array_equal(fresh_weight.numpy(), [1, 1, 1, 1])
  np.testing.assert_array_equal(fresh_tables.sizes(), [[0, 0], [0, 3]])
  # and the next save goes through and prunes what the crash left behind
  ckpt.save(np.random.default_rng(0))
  names = os.listdir(tmp_path)
  assert sum(n.startswith("replay_") for n in names) <= 2


def test_old_checkpoints_are_pruned(tmp_path):
  ckpt, *_ = _make(str(tmp_path))
  for _ in range(4):
    ckpt.save(np.random.default_rng(0))
  names = sorted(os.listdir(tmp_path))
  assert [n for n in names if n.startswith("replay_")] == ["replay_3", "replay_4"]
  assert [n for n in names if n.startswith("host_")] == ["host_3.json", "host_4.json"]


def test_corrupt_parts_are_named(tmp_path):
  ckpt, *_ = _make(str(tmp_path))
  ckpt.save(np.random.default_rng(0))
  with open(tmp_path / "host_1.json", "w") as f:
    f.write("{not json")
  with pytest.raises(checkpoints.CheckpointError, match="host_1.json"):
    _make(str(tmp_path))[0].restore()
  os.remove(tmp_path / "host_1.json")
  with pytest.raises(checkpoints.CheckpointError, match="host_1.json"):
    _make(str(tmp_path))[0].restore()

  ckpt.save(np.random.default_rng(0))
  data = [n for n in os.listdir(tmp_path) if n.startswith("ckpt-2.data")][0]
  with open(tmp_path / data, "wb") as f:
    f.write(b"garbage")
  with pytest.raises(checkpoints.CheckpointError, match="ckpt-2"):
    _make(str(tmp_path))[0].restore()


def test_a_kill_during_the_first_save_leaves_a_run_that_starts_afresh(tmp_path):
  # TensorFlow writes ckpt-1.* before its `checkpoint` index: a kill in between leaves this.
  ckpt, tables, *_ = _make(str(tmp_path))
  tables.add(0, "full", _rows(2, 1.0))
  ckpt.save(np.random.default_rng(0))
  os.remove(tmp_path / "checkpoint")
  os.makedirs(tmp_path / "ckpt-1_temp")
  fresh, fresh_tables, *_ = _make(str(tmp_path))
  assert fresh.restore() is False
  assert not [n for n in os.listdir(tmp_path) if n.startswith(("ckpt-", "replay_", "host_"))]
  # The run then saves its first checkpoint again, as number 1, and it restores.
  fresh_tables.add(1, "full", _rows(3, 2.0))
  assert fresh.save(np.random.default_rng(0)).endswith("ckpt-1")
  again, again_tables, *_ = _make(str(tmp_path))
  assert again.restore()
  np.testing.assert_array_equal(again_tables.sizes(), [[0, 0], [0, 3]])


def test_a_lost_index_after_later_checkpoints_is_an_error_naming_it(tmp_path):
  ckpt, *_ = _make(str(tmp_path))
  ckpt.save(np.random.default_rng(0))
  ckpt.save(np.random.default_rng(0))
  os.remove(tmp_path / "checkpoint")
  with pytest.raises(checkpoints.CheckpointError, match=r"checkpoint: missing or unreadable"):
    _make(str(tmp_path))[0].restore()
  assert any(n.startswith("ckpt-2") for n in os.listdir(tmp_path))  # nothing was deleted


def test_a_corrupt_replay_checkpoint_raises_the_one_checkpoint_error(tmp_path):
  assert replay.CheckpointError is checkpoints.CheckpointError
  ckpt, tables, *_ = _make(str(tmp_path))
  tables.add(0, "full", _rows(2, 1.0))
  ckpt.save(np.random.default_rng(0))
  replay_dir = tmp_path / "replay_1"
  with open(replay_dir / "LATEST", "w") as f:
    f.write("garbage")
  with pytest.raises(checkpoints.CheckpointError, match="LATEST"):
    _make(str(tmp_path))[0].restore()


def _parts(directory, agent, model, rows_value, agent_dim=2):
  """A checkpoint with an agent, a model, a counter and replay rows of one value."""
  tables = replay.InProcessTaskTables(2, 3, 2)
  tables.add(0, ("adapt", "full"), _rows(4, rows_value))
  variables = dict(agent=tf.Variable(np.full(agent_dim, agent, np.float32)),
                   model=tf.Variable(np.full(3, model, np.float32)),
                   step=tf.Variable(0, dtype=tf.int64))
  ckpt = checkpoints.RunCheckpointer(directory, tables, **variables)
  return ckpt, tables, variables


def _restored(directory):
  ckpt, tables, variables = _parts(directory, 0.0, 0.0, 0.0)
  assert ckpt.restore()
  return ({k: v.numpy().tolist() for k, v in variables.items()},
          float(tables.sample([0], "full", 1)["reward"][0, 0]))


def test_a_transplant_moves_one_part_and_leaves_the_hard_linked_run_alone(tmp_path):
  import shutil  # pylint: disable=import-outside-toplevel
  run, donor, study = (str(tmp_path / n) for n in ("run", "donor", "study"))
  for directory, value, step in ((run, 1.0, 5), (donor, 2.0, 9)):
    ckpt, _, variables = _parts(directory, value, 10 * value, value)
    variables["step"].assign(step)
    ckpt.save(np.random.default_rng(0))
  shutil.copytree(run, study, copy_function=os.link)

  assert "1 of 5 tensors (agent)" in checkpoints.transplant(study, donor, "agent")
  assert _restored(study) == ({"agent": [2.0, 2.0], "model": [10.0] * 3, "step": 5}, 1.0)
  checkpoints.transplant(study, donor, "replay")
  assert _restored(study) == ({"agent": [2.0, 2.0], "model": [10.0] * 3, "step": 5}, 2.0)
  checkpoints.transplant(study, donor, "model")
  assert _restored(study) == ({"agent": [2.0, 2.0], "model": [20.0] * 3, "step": 5}, 2.0)
  # The run the study was linked from is as it was.
  assert _restored(run) == ({"agent": [1.0, 1.0], "model": [10.0] * 3, "step": 5}, 1.0)

  other = str(tmp_path / "other")
  _parts(other, 3.0, 3.0, 3.0, agent_dim=4)[0].save(np.random.default_rng(0))
  with pytest.raises(checkpoints.CheckpointError, match="other/ckpt-1: not a checkpoint of"):
    checkpoints.transplant(study, other, "agent")
  with pytest.raises(ValueError, match="parts: agent, model, replay"):
    checkpoints.transplant(study, donor, "critic")
  with pytest.raises(checkpoints.CheckpointError, match="no checkpoint"):
    checkpoints.transplant(study, str(tmp_path / "nothing"), "agent")
