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
      self.checkpoint.restore(latest).assert_existing_objects_matched()
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
