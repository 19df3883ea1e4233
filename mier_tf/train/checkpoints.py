"""Checkpoints that a kill at any moment leaves whole.

One checkpoint number n is three things written in this order:
  replay_<n>/      the replay tables (each backend writes atomically),
  host_<n>.json    the state held in Python: numpy random states, the last evaluation
                   (written atomically),
  ckpt-<n>.*       tf.train.Checkpoint of model, optimisers, agent and counters; TensorFlow's
                   CheckpointManager updates its `checkpoint` index file last.
A checkpoint counts only once the index names it, so a kill during any write leaves the
previous one in use; older replay/host files are pruned after the index moves on.
"""
import json
import logging
import os
import re
import shutil
from typing import Optional

import numpy as np
import tensorflow as tf

from mier_tf import files
from mier_tf import logs
from mier_tf.replay import base as replay_base
from mier_tf.errors import CheckpointError  # re-exported: the one checkpoint error


class RunCheckpointer:
  """Saves and restores everything a meta-training run needs to resume.

  Args:
    directory: the run's checkpoints/ directory.
    tables: the run's `TaskTables`.
    max_to_keep: how many checkpoints to keep.
    **trackables: TF objects to checkpoint (model, optimisers, agent, counters...).
  """

  def __init__(self, directory: str, tables, max_to_keep: int = 2, **trackables):
    self.directory = directory
    self.tables = tables
    self.checkpoint = tf.train.Checkpoint(**trackables)
    self.manager = tf.train.CheckpointManager(self.checkpoint, directory,
                                              max_to_keep=max_to_keep)
    self._counter = 0
    self.restored_rng: Optional[np.random.Generator] = None
    self.restored_extra_state: Optional[dict] = None

  def _number(self, path: str) -> int:
    return int(re.search(r"ckpt-(\d+)$", path).group(1))

  def save(self, rng: np.random.Generator, extra_state: Optional[dict] = None) -> str:
    """Writes checkpoint number `last + 1`; returns its path."""
    latest = self.manager.latest_checkpoint
    number = (self._number(latest) if latest else 0) + 1
    os.makedirs(self.directory, exist_ok=True)
    self.tables.save(os.path.join(self.directory, f"replay_{number}"))
    files.atomic_write_json(os.path.join(self.directory, f"host_{number}.json"),
                            {"rng": rng.bit_generator.state, "extra": extra_state})
    with logs.levels_kept():
      path = self.manager.save(checkpoint_number=number)
    self._prune()
    return path

  def _prune(self) -> None:
    keep = {self._number(p) for p in self.manager.checkpoints}
    for name in os.listdir(self.directory):
      match = re.fullmatch(r"(?:replay_(\d+)|host_(\d+)\.json)(?:\.tmp\d*)?", name)
      if match and int(match.group(1) or match.group(2)) not in keep:
        path = os.path.join(self.directory, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)

  def restore(self) -> bool:
    """Restores the latest checkpoint if there is one; returns whether it did.

    TensorFlow writes `ckpt-1*` before the `checkpoint` index exists, so a kill during the
    run's first save leaves ckpt-1 files and no index: nothing was ever complete, and they
    are removed (the run starts afresh). Files of any later checkpoint without an index
    mean the index itself was lost: that is an error, not a fresh start.
    """
    latest = self.manager.latest_checkpoint
    if latest is None:
      orphans = [n for n in os.listdir(self.directory) if n.startswith("ckpt-")] if (
          os.path.isdir(self.directory)) else []
      numbers = {int(m.group(1)) for m in map(re.compile(r"ckpt-(\d+)").match, orphans) if m}
      if numbers - {1}:
        raise CheckpointError(f"{os.path.join(self.directory, 'checkpoint')}: missing or "
                              f"unreadable, but checkpoint files {sorted(orphans)[:3]} exist")
      for name in orphans:  # the remains of an interrupted first save
        path = os.path.join(self.directory, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
      if orphans:
        logging.warning("%s: removed the remains of an interrupted first checkpoint (%s)",
                        self.directory, ", ".join(sorted(orphans)))
        self._prune()
      return False
    number = self._number(latest)
    try:
      # Optimizer slots not created yet are restored when the optimizer first runs; a
      # process that only evaluates never runs it, and TF would warn of them at exit.
      self.checkpoint.restore(latest).assert_existing_objects_matched().expect_partial()
    except Exception as e:  # pylint: disable=broad-except  (TF raises IndexError, OpError...)
      raise CheckpointError(f"{latest}: cannot be restored ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''})") from e
    host = os.path.join(self.directory, f"host_{number}.json")
    try:
      with open(host) as f:
        stored = json.load(f)
      state = stored["rng"]
    except (OSError, ValueError, KeyError) as e:
      raise CheckpointError(f"{host}: missing or corrupt ({e})") from e
    self.restored_rng = np.random.default_rng()
    self.restored_rng.bit_generator.state = state
    self.restored_extra_state = stored.get("extra")
    self.tables.restore(os.path.join(self.directory, f"replay_{number}"))
    logging.info("Restored %s", latest)
    return True


# What `transplant` moves between two checkpoints of one config: the TF variables under these
# top-level names, or (for "replay") the replay tables' arrays.
TRANSPLANT_PARTS = {"agent": ("agent",), "model": ("model", "model_optimizer"), "replay": ()}


def _latest(directory: str) -> str:
  latest = tf.train.latest_checkpoint(directory)
  if latest is None:
    raise CheckpointError(f"{directory}: no checkpoint")
  return latest


def _replace_by(source: str, dest: str) -> None:
  """dest becomes a copy of source, by a rename: a hard link at dest (a study's copy of a
  run) is replaced, never written through."""
  shutil.copyfile(source, dest + ".transplant")
  os.replace(dest + ".transplant", dest)


def transplant(directory: str, donor: str, part: str) -> str:
  """Gives the latest checkpoint in `directory` (a run's checkpoints/) the donor's `part`.

  For studies that ask which part of a checkpoint decides a result: the agent (actor,
  critics, temperature, their optimisers), the model (with its optimiser) or the replay
  arrays of `donor`'s latest checkpoint (another run or milestone of the same config)
  replace this checkpoint's; everything else stays. Files are replaced by renames, so a
  hard-linked copy of a run can be transplanted without touching the run.

  Returns: a line saying what moved. Raises CheckpointError if either checkpoint is missing
  or they are not of one config (other variables, shapes or tables).
  """
  if part not in TRANSPLANT_PARTS:
    raise ValueError(f"unknown part {part!r}; parts: {', '.join(TRANSPLANT_PARTS)}")
  target, source = _latest(directory), _latest(donor)
  if part == "replay":
    here = latest_replay(directory, target)
    there = latest_replay(donor, source)
    names = sorted(n for n in os.listdir(here) if n.endswith(".npz"))
    if names != sorted(n for n in os.listdir(there) if n.endswith(".npz")):
      raise CheckpointError(f"{there}: not the tables of {here} (another config?)")
    for name in names:
      _replace_by(os.path.join(there, name), os.path.join(here, name))
    return f"{here}: {len(names)} replay tables from {there}"
  mine, theirs = tf.train.load_checkpoint(target), tf.train.load_checkpoint(source)
  shapes = mine.get_variable_to_shape_map()
  if shapes != theirs.get_variable_to_shape_map():
    raise CheckpointError(f"{source}: not a checkpoint of {target}'s config (other variables "
                          "or shapes)")
  names, dtypes = sorted(shapes), mine.get_variable_to_dtype_map()
  moved = [n for n in names if n.split("/")[0] in TRANSPLANT_PARTS[part]]
  tensors = [tf.constant((theirs if n in moved else mine).get_tensor(n), dtype=dtypes[n])
             for n in names]
  staging = target + ".transplant"
  tf.raw_ops.SaveV2(prefix=staging, tensor_names=names, shape_and_slices=[""] * len(names),
                    tensors=tensors)
  for suffix in (".data-00000-of-00001", ".index"):  # TF reads the index first
    os.replace(staging + suffix, target + suffix)
  return f"{target}: {len(moved)} of {len(names)} tensors ({part}) from {source}"


def latest_replay(directory: str, checkpoint: str) -> str:
  """The replay arrays' folder of TF checkpoint `checkpoint` (a path in `directory`)."""
  number = int(re.search(r"ckpt-(\d+)$", checkpoint).group(1))
  folder = replay_base.latest_checkpoint(os.path.join(directory, f"replay_{number}"))
  if folder is None:
    raise CheckpointError(f"{directory}/replay_{number}: no replay checkpoint")
  return folder
