"""Event-file truncation for resumed runs, on files written by TensorFlow's own writer."""
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from mier_tf import plotting
from mier_tf import summaries


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
