"""Event-file truncation for resumed runs, on files written by TensorFlow's own writer."""
import glob
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from mier_tf import plotting
from mier_tf import summaries
from mier_tf import tags


def _write(logdir, steps, tag="Loss"):
  writer = tf.summary.create_file_writer(logdir)
  with writer.as_default():
    for step in steps:
      tf.summary.scalar(tag, float(step) * 0.5, step=step)
  writer.close()


def test_truncation_keeps_steps_up_to_the_checkpoint_in_every_file(tmp_path):
  logdir = str(tmp_path)
  _write(logdir, range(1, 11))           # a first process: steps 1..10, killed after 6
  _write(logdir, range(7, 13), "Other")  # a second file with another tag
  assert summaries.truncate_event_files(logdir, 6) == 2
  scalars = plotting.read_scalars(logdir)
  np.testing.assert_array_equal(scalars["Loss"][0], np.arange(1, 7))
  np.testing.assert_allclose(scalars["Loss"][1], np.arange(1, 7) * 0.5)
  assert "Other" not in scalars
  assert summaries.truncate_event_files(logdir, 6) == 0  # nothing past 6: files untouched
  assert not glob.glob(os.path.join(logdir, "*.tmp"))
  assert summaries.has_tag(logdir, "Loss") and not summaries.has_tag(logdir, "Other")


def test_a_record_cut_short_by_a_kill_is_dropped(tmp_path):
  logdir = str(tmp_path)
  _write(logdir, range(1, 5))
  (path,) = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
  with open(path, "rb+") as f:
    f.truncate(os.path.getsize(path) - 7)  # the last record loses its end
  assert summaries.truncate_event_files(logdir, 100) == 1
  np.testing.assert_array_equal(plotting.read_scalars(logdir)["Loss"][0], [1, 2, 3])


def test_hparams_are_written_once_and_read_back_by_tensorboards_plugin(tmp_path):
  from tensorboard.plugins.hparams import plugin_data_pb2  # pylint: disable=import-outside-toplevel
  logdir = str(tmp_path)
  hparams = {"MetaTrainingRun.family": "cheetah_vel_hard", "MetaTrainingRun.seed": 3,
             "create_sac_agent.actor_fc_layers": (256, 256), "MetaTrainingRun.x": None,
             "MetaTrainer.learning_rate": 1e-3}
  assert summaries.write_hparams(logdir, hparams)
  assert not summaries.write_hparams(logdir, hparams)  # a resumed run writes nothing
  (path,) = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
  infos = []
  for record in tf.data.TFRecordDataset(path):
    for value in tf.compat.v1.Event.FromString(record.numpy()).summary.value:
      if value.tag == summaries.HPARAMS_TAG:
        data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
        infos.append(data.session_start_info.hparams)
  (stored,) = infos
  assert stored["MetaTrainingRun.family"].string_value == "cheetah_vel_hard"
  assert stored["MetaTrainingRun.seed"].number_value == 3
  assert stored["create_sac_agent.actor_fc_layers"].string_value == "(256, 256)"
  assert stored["MetaTrainingRun.x"].string_value == "None"
  assert stored["MetaTrainer.learning_rate"].number_value == pytest.approx(1e-3)


def _results(env_steps):
  """results.json with MIER on test tasks 1 and 4 at env_steps, and a stale one on task 2."""
  entry = lambda mier, wr, steps: {"mier": mier, "mier_wr": wr, "mier_env_steps": steps}
  return {"env_steps": env_steps, "test_tasks": {
      "0": {"mier_wr": -5.0}, "1": entry(-1.0, -3.0, env_steps), "2": entry(7.0, 0.0, 10),
      "4": entry(-2.0, -1.0, env_steps)}}


def test_mier_is_written_at_its_checkpoint_beside_mier_wr_on_the_same_tasks(tmp_path):
  root = str(tmp_path)
  assert summaries.write_mier_at_checkpoint(root, _results(500), 500) == [1, 4]
  mier = plotting.read_scalars(os.path.join(root, tags.MIER_WRITER))
  assert sorted(mier) == sorted([tags.TEST_RETURN_MIER, tags.test_task_return_tag(1),
                                 tags.test_task_return_tag(4)])
  assert all(list(steps) == [500] for steps, _ in mier.values())  # env steps, not epochs
  assert mier[tags.test_task_return_tag(4)][1][0] == -2.0
  assert mier[tags.TEST_RETURN_MIER][1][0] == pytest.approx(-1.5)
  evals = plotting.read_scalars(os.path.join(root, "eval"))
  assert list(evals) == [tags.TEST_RETURN_MIER_WR_RELABELED]  # MIER-wR of tasks 1 and 4
  assert evals[tags.TEST_RETURN_MIER_WR_RELABELED][1][0] == pytest.approx(-2.0)
  # No MIER of that checkpoint: nothing written, not even an empty event file.
  assert summaries.write_mier_at_checkpoint(str(tmp_path / "none"), _results(500), 600) == []
  assert not os.path.exists(tmp_path / "none")


def test_the_custom_scalars_layout_is_what_tensorboards_plugin_reads(tmp_path):
  from tensorboard.plugins.custom_scalar import layout_pb2, metadata  # pylint: disable=import-outside-toplevel
  writer = tf.summary.create_file_writer(str(tmp_path))
  with writer.as_default():
    summaries.write_layout(["v=2.5", "v=3.0"])
  writer.close()
  assert summaries.has_tag(str(tmp_path), tags.CUSTOM_SCALARS_LAYOUT)
  (path,) = glob.glob(os.path.join(str(tmp_path), "events.out.tfevents.*"))
  found = [(event.step, value) for record in tf.data.TFRecordDataset(path)
           for event in [tf.compat.v1.Event.FromString(record.numpy())]
           for value in event.summary.value]
  ((step, value),) = found
  assert step == 0 and value.tag == metadata.CONFIG_SUMMARY_TAG == tags.CUSTOM_SCALARS_LAYOUT
  assert value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME
  layout = layout_pb2.Layout.FromString(tf.make_ndarray(value.tensor).item())
  charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
  assert charts["test task 1 (v=3.0)"] == ["^Eval_test_task/return_01$"]
  training = next(tags_ for title, tags_ in charts.items() if title.startswith("training"))
  assert training == [f"^{t}$" for t in (tags.TRAIN_RETURN, "Collect/return_prior_context",
                                         "Collect/return_adapted_context")]
  mean = next(tags_ for title, tags_ in charts.items() if title.startswith("mean"))
  assert mean == [f"^{t}$" for t in (tags.TEST_RETURN_MIER, tags.TEST_RETURN_MIER_WR,
                                     tags.TEST_RETURN_MIER_WR_RELABELED,
                                     tags.TEST_STANDING_STILL)]
  # Every pattern names a tag of tags.py (the writers' one home).
  named = {v for k, v in vars(tags).items() if k.isupper() and isinstance(v, str)}
  named |= {tags.test_task_return_tag(i) for i in range(2)} | set(tags.COLLECT_RETURN.values())
  for patterns in charts.values():
    for pattern in patterns:
      assert any(re.fullmatch(pattern, t) for t in named), pattern
