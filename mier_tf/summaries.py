"""TensorBoard: the functions that write mier_tf's summaries (their tags: `mier_tf/tags.py`),
and what a resumed run keeps of its event files.


A run killed after its last checkpoint has logged steps that the resumed run will train and
log again; TensorBoard would then draw two points at those steps (or, for a purge it does
on its own, needs an event that TF2's writers cannot write). So before a resumed run logs
anything, `truncate_event_files` rewrites each event file of a writer's directory without
the summaries past the checkpoint's step: what TensorBoard shows is what the checkpoint
holds, plus what the resumed run adds.
"""
import glob
import logging
import os
import re
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from mier_tf import tags

EVENT_FILE_PATTERN = "events.out.tfevents.*"

# --- Writing them (into the default writer, at its default step) --------------------------

def write_train_step(model_info, sac_info, env_steps) -> None:
  """One training step: the model's meta-loss and NLLs, SAC's losses, the data so far."""
  tf.summary.scalar(tags.META_LOSS, model_info.meta_loss)
  tf.summary.scalar(tags.NLL_BEFORE_ADAPT, model_info.nll_before_adapt)
  tf.summary.scalar(tags.NLL_AFTER_ADAPT, model_info.nll_after_adapt)
  tf.summary.scalar(tags.CRITIC_LOSS, sac_info.critic_loss)
  tf.summary.scalar(tags.ACTOR_LOSS, sac_info.actor_loss)
  tf.summary.scalar(tags.ALPHA_LOSS, sac_info.alpha_loss)
  tf.summary.scalar(tags.ALPHA, sac_info.alpha)
  tf.summary.scalar(tags.ENV_STEPS, env_steps)


def write_evaluation(returns: Dict[str, np.ndarray], still: Dict[str, np.ndarray],
                     lengths: Dict[str, np.ndarray]) -> None:
  """One MIER-wR evaluation (eval/): per split ("train", "test") the returns, the same above
  standing still (0 is doing nothing), the episode lengths; one curve per test task."""
  tf.summary.scalar(tags.TRAIN_RETURN, returns["train"].mean())
  tf.summary.scalar(tags.TEST_RETURN_MIER_WR, returns["test"].mean())
  tf.summary.scalar(tags.TRAIN_RETURN_ABOVE_STILL, (returns["train"] - still["train"]).mean())
  tf.summary.scalar(tags.TEST_RETURN_MIER_WR_ABOVE_STILL, (returns["test"] - still["test"]).mean())
  tf.summary.scalar(tags.TRAIN_EPISODE_LENGTH, lengths["train"].mean())
  tf.summary.scalar(tags.TEST_EPISODE_LENGTH, lengths["test"].mean())
  for i, value in enumerate(returns["test"]):
    tf.summary.scalar(tags.test_task_return_tag(i), value)


def write_standing_still(still_test: np.ndarray) -> None:
  """Standing still on the test tasks (eval/standing_still/, at each evaluation): the mean
  and one curve per test task, under the tags MIER-wR's curves have in eval/."""
  tf.summary.scalar(tags.TEST_STANDING_STILL, still_test.mean())
  for i, value in enumerate(still_test):
    tf.summary.scalar(tags.test_task_return_tag(i), value)


def write_identification(report, step: int) -> None:
  """An `identification.IdentificationReport`: the score and the per-block NLLs."""
  tf.summary.scalar(tags.IDENTIFICATION_R2, report.r2, step=step)
  tf.summary.scalar(tags.IDENTIFICATION_SPREAD_RATIO, report.spread_ratio, step=step)
  tf.summary.scalar(tags.NLL_STATE_BEFORE_ADAPT, report.nll_state_before, step=step)
  tf.summary.scalar(tags.NLL_STATE_AFTER_ADAPT, report.nll_state_after, step=step)
  tf.summary.scalar(tags.NLL_REWARD_BEFORE_ADAPT, report.nll_reward_before, step=step)
  tf.summary.scalar(tags.NLL_REWARD_AFTER_ADAPT, report.nll_reward_after, step=step)


def write_adapt_epoch(mier: float, mier_wr: float, sac_losses,
                      relabel_error: Optional[dict]) -> None:
  """One relabeling epoch of Algorithm 2 (adapt/task_<i>/): MIER's return, the MIER-wR
  level it started from, SAC's losses, and the last relabeling's error against the
  simulator (if scored). All under Relabel/: their axis is the relabeling epoch."""
  tf.summary.scalar(tags.RELABEL_RETURN_MIER, mier)
  tf.summary.scalar(tags.RELABEL_RETURN_MIER_WR, mier_wr)
  tf.summary.scalar(tags.RELABEL_CRITIC_LOSS, sac_losses.critic_loss)
  tf.summary.scalar(tags.RELABEL_ACTOR_LOSS, sac_losses.actor_loss)
  tf.summary.scalar(tags.RELABEL_ALPHA, sac_losses.alpha)
  if relabel_error:
    for key in tags.RELABEL_ERROR_KEYS:
      tf.summary.scalar(tags.relabel_error_tag(key), relabel_error[key])


def write_mier_at_checkpoint(root_dir: str, results: dict, env_steps: int) -> List[int]:
  """MIER at the env steps of the checkpoint it relabeled from, for every test task with a
  MIER result of that checkpoint in `results` (eval/results.json): per task and their mean
  in eval/mier/, MIER-wR's mean over the same tasks in eval/. Returns the tasks written."""
  entries = sorted((int(i), e) for i, e in results.get("test_tasks", {}).items()
                   if "mier" in e and e.get("mier_env_steps") == env_steps)
  if not entries:
    return []
  writer = tf.summary.create_file_writer(os.path.join(root_dir, tags.MIER_WRITER))
  with writer.as_default(step=env_steps):
    for i, entry in entries:
      tf.summary.scalar(tags.test_task_return_tag(i), entry["mier"])
    tf.summary.scalar(tags.TEST_RETURN_MIER, np.mean([e["mier"] for _, e in entries]))
  writer.close()
  writer = tf.summary.create_file_writer(os.path.join(root_dir, "eval"))
  with writer.as_default(step=env_steps):
    tf.summary.scalar(tags.TEST_RETURN_MIER_WR_RELABELED,
                      np.mean([e["mier_wr"] for _, e in entries]))
  writer.close()
  return [i for i, _ in entries]


def layout(test_task_names: Sequence[str]):
  """The Custom Scalars dashboard: MIER (eval/mier/), MIER-wR (eval/) and standing still
  (eval/standing_still/) on one chart against environment steps, for the mean over test
  tasks and for each test task; Algorithm 2's MIER against MIER-wR over relabeling epochs
  (one line per relabeled task); and meta-training's learning curve on the training tasks
  (MIER-wR's evaluations and the collection's episodes). TensorBoard colours the lines by
  run."""
  from tensorboard.plugins.custom_scalar import layout_pb2  # pylint: disable=import-outside-toplevel

  def chart(title, *tag_names):
    return layout_pb2.Chart(title=title, multiline=layout_pb2.MultilineChartContent(
        tag=[f"^{re.escape(t)}$" for t in tag_names]))

  mean = chart("mean over the test tasks (MIER and the MIER-wR point beside it: over the "
               "relabeled ones)", tags.TEST_RETURN_MIER, tags.TEST_RETURN_MIER_WR,
               tags.TEST_RETURN_MIER_WR_RELABELED, tags.TEST_STANDING_STILL)
  per_task = [chart(f"test task {i} ({name})", tags.test_task_return_tag(i))
              for i, name in enumerate(test_task_names)]
  relabeling = chart("MIER after each relabeling epoch, and the MIER-wR it started from",
                     tags.RELABEL_RETURN_MIER, tags.RELABEL_RETURN_MIER_WR)
  training = chart("training tasks: MIER-wR evaluated, and the episodes meta-training "
                   "collected each epoch (sampled actions; prior and adapted context)",
                   tags.TRAIN_RETURN, tags.COLLECT_RETURN["prior"],
                   tags.COLLECT_RETURN["adapted"])
  return layout_pb2.Layout(category=[
      layout_pb2.Category(title="Return of MIER (eval/mier), MIER-wR (eval) and standing still "
                          "(eval/standing_still) against env steps; higher is better",
                          chart=[mean] + per_task),
      layout_pb2.Category(title="Algorithm 2 (adapt/task_<i>) against relabeling epochs",
                          chart=[relabeling]),
      layout_pb2.Category(title="Meta-training (eval) against env steps: return on the "
                          "training tasks", chart=[training]),
  ])


def write_layout(test_task_names: Sequence[str]) -> None:
  """`layout` into the default writer at step 0 (once per run directory: eval/)."""
  from tensorboard.plugins.custom_scalar import summary as cs_summary  # pylint: disable=import-outside-toplevel
  tf.summary.experimental.write_raw_pb(
      cs_summary.pb(layout(test_task_names)).SerializeToString(), step=0)


def _records(path: str) -> Iterator[bytes]:
  """The file's records; a record cut short by a kill ends the file."""
  iterator = iter(tf.data.TFRecordDataset(path))
  while True:
    try:
      record = next(iterator)
    except StopIteration:
      return
    except tf.errors.DataLossError:  # the process was killed while writing this record
      return
    yield record.numpy()


def _truncated(path: str, max_step: int) -> Tuple[List[bytes], bool]:
  """The records to keep, and whether any was dropped."""
  kept, dropped = [], False
  for record in _records(path):
    event = tf.compat.v1.Event.FromString(record)
    if event.HasField("summary") and event.step > max_step:
      dropped = True
    else:
      kept.append(record)
  return kept, dropped


def truncate_event_files(logdir: str, max_step: int) -> int:
  """Drops every summary logged at a step past `max_step` from the event files in logdir.

  Each changed file is written whole to a temporary file, then renamed over the old one (a
  kill leaves the old or the new file, never half of one). Files without such summaries
  are not touched. Call it before this process writes to logdir.

  Args:
    logdir: a writer's directory (its event files directly in it).
    max_step: the last step the checkpoint being resumed covers, in the directory's axis.

  Returns:
    How many files were rewritten.
  """
  rewritten = 0
  for path in sorted(glob.glob(os.path.join(logdir, EVENT_FILE_PATTERN))):
    if path.endswith(".tmp"):
      os.remove(path)  # left by a kill during an earlier truncation
      continue
    kept, dropped = _truncated(path, max_step)
    if not dropped and os.path.getsize(path) == sum(len(r) + 16 for r in kept):
      continue
    with tf.io.TFRecordWriter(path + ".tmp") as writer:
      for record in kept:
        writer.write(record)
    os.replace(path + ".tmp", path)
    rewritten += 1
  if rewritten:
    logging.info("%s: dropped summaries past step %d (logged after the checkpoint resumed "
                 "from)", logdir, max_step)
  return rewritten


def has_tag(logdir: str, tag: str) -> bool:
  """Whether any event file directly under logdir holds a summary with this tag."""
  for path in sorted(glob.glob(os.path.join(logdir, EVENT_FILE_PATTERN))):
    for record in _records(path):
      if any(value.tag == tag for value in tf.compat.v1.Event.FromString(record).summary.value):
        return True
  return False


HPARAMS_TAG = "_hparams_/session_start_info"  # the tag TensorBoard's HParams plugin writes


def hparam_value(value):
  """A value TensorBoard's HParams plugin takes (bool, int, float or str)."""
  if isinstance(value, (bool, int, float, str)):
    return value
  return str(tuple(value) if isinstance(value, list) else value)


def write_hparams(logdir: str, hparams: Dict[str, object]) -> bool:
  """The run's hyperparameters for TensorBoard's HParams tab, once per logdir.

  Written in the run's own directory: the plugin then finds its metrics in the run's
  train/ and eval/ (as Keras' HParams callback lays them out). Returns whether it wrote.
  """
  from tensorboard.plugins.hparams import api as hp  # pylint: disable=import-outside-toplevel
  if has_tag(logdir, HPARAMS_TAG):
    return False  # a resumed run: the same configuration, already written
  writer = tf.summary.create_file_writer(logdir)
  with writer.as_default():
    hp.hparams({name: hparam_value(v) for name, v in hparams.items()})
  writer.close()
  return True
