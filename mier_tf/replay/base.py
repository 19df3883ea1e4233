"""Per-task replay tables: the interface, the row format and the checkpoint format.

MIER keeps two tables per meta-training task (Algorithm 1 of the paper):

  'adapt'  transitions collected with the *prior* context only (the adaptation set D_adapt);
  'full'   every transition of the task (the evaluation set of the meta-loss, and SAC's data).

Each table is sampled uniformly with replacement and bounded FIFO: once it holds `capacity`
transitions, each new one evicts the oldest. A transition is five float32 arrays:
observation [obs_dim], action [act_dim], reward [], next_observation [obs_dim] and
discount [] (a 200-step time-limit truncation is not terminal: its discount is 1).

Both backends store a transition as one packed float32 row
  observation | action | reward | next_observation | discount    (2 * obs_dim + act_dim + 2)
so that a sample is one gather per table rather than five.

Checkpoints (`save` / `restore`) are atomic. `save(directory)` writes a complete checkpoint
into a fresh staging folder inside `directory`, renames it to `ckpt-<n>`, and only then
points `directory/LATEST` at it (a file replaced with `os.replace`). A kill at any moment
leaves `LATEST` naming a complete checkpoint (or no `LATEST` at all if none was ever
finished), so `save` can be called on a new folder each time or on the same folder again.
"""
import abc
import json
import logging
import os
import re
import shutil
import tempfile
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from mier_tf import errors
from mier_tf import files

FIELDS = ("observation", "action", "reward", "next_observation", "discount")
LATEST = "LATEST"
MANIFEST = "manifest.json"
_CHECKPOINT_NAME = re.compile(r"ckpt-(\d{6,})")
_STAGING_PREFIX = ".staging-"
_FORMAT_VERSION = 1

TableSpec = Union[str, Sequence[str]]


# The one checkpoint error of the project (replay, host state and TF checkpoints alike).
CheckpointError = errors.CheckpointError


def latest_checkpoint(directory: str) -> Optional[str]:
  """The path of the last complete checkpoint `save` wrote into `directory`, or None.

  Args:
    directory: the folder passed to `TaskTables.save`.

  Raises:
    CheckpointError: if `directory/LATEST` exists but is unreadable or names a bad folder.
  """
  pointer = os.path.join(directory, LATEST)
  if not os.path.exists(pointer):
    return None
  try:
    with open(pointer) as f:
      name = f.read().strip()
  except OSError as e:
    raise CheckpointError(f"{pointer}: unreadable ({e})") from e
  if not _CHECKPOINT_NAME.fullmatch(name):
    raise CheckpointError(f"{pointer}: corrupt (names {name!r}, not a ckpt-<n> folder)")
  path = os.path.join(directory, name)
  if not os.path.isdir(path):
    raise CheckpointError(f"{path}: missing (named by {pointer})")
  return path


def _write_json(path: str, obj: Any) -> None:
  with open(path, "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())


def _read_json(path: str) -> Dict[str, Any]:
  if not os.path.isfile(path):
    raise CheckpointError(f"{path}: missing")
  try:
    with open(path) as f:
      obj = json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f"{path}: corrupt ({e})") from e
  if not isinstance(obj, dict):
    raise CheckpointError(f"{path}: corrupt (not a JSON object)")
  return obj


class TaskTables(abc.ABC):
  """Two replay tables ('adapt', 'full') per task, behind one interface.

  Args:
    num_tasks: number of tasks (task ids are 0 .. num_tasks - 1).
    observation_dim: size of an observation vector.
    action_dim: size of an action vector.
    adapt_capacity: FIFO bound of each task's 'adapt' table.
    full_capacity: FIFO bound of each task's 'full' table.
    seed: seed of the sampling random stream (where the backend controls it).
  """

  TABLES = ("adapt", "full")

  def __init__(self, num_tasks: int, observation_dim: int, action_dim: int,
               adapt_capacity: int = 50_000, full_capacity: int = 200_000, seed: int = 0):
    for name, value in (("num_tasks", num_tasks), ("observation_dim", observation_dim),
                        ("action_dim", action_dim), ("adapt_capacity", adapt_capacity),
                        ("full_capacity", full_capacity)):
      if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    self.num_tasks = int(num_tasks)
    self.observation_dim = int(observation_dim)
    self.action_dim = int(action_dim)
    self.capacities = {"adapt": int(adapt_capacity), "full": int(full_capacity)}
    self.seed = int(seed)
    widths = (observation_dim, action_dim, 1, observation_dim, 1)
    offsets = np.concatenate([[0], np.cumsum(widths)])
    # field -> (start, stop, is_scalar) in the packed row.
    self._layout = {field: (int(offsets[i]), int(offsets[i + 1]),
                            field in ("reward", "discount"))
                    for i, field in enumerate(FIELDS)}
    self.row_dim = int(offsets[-1])

  # --- What every backend provides ---------------------------------------------------------

  @abc.abstractmethod
  def add(self, task: int, table: TableSpec, transitions: Mapping[str, np.ndarray]) -> None:
    """Appends transitions to one task's table(s), evicting the oldest beyond capacity.

    Args:
      task: task id.
      table: 'adapt', 'full', or a tuple of both (prior-context data goes into both).
      transitions: the five fields of `FIELDS`, each with a leading batch dimension N.
    """

  @abc.abstractmethod
  def sample(self, tasks: Sequence[int], table: str, batch_size: int) -> Dict[str, np.ndarray]:
    """Draws `batch_size` transitions per task, uniformly with replacement.

    Args:
      tasks: task ids (repeats allowed).
      table: 'adapt' or 'full'.
      batch_size: transitions per task.

    Returns:
      The five fields, float32, each of shape [len(tasks), batch_size, ...].

    Raises:
      ValueError: if a requested table is empty.
    """

  @abc.abstractmethod
  def sizes(self) -> np.ndarray:
    """Current number of transitions, int64 [num_tasks, 2] (columns in `TABLES` order)."""

  @abc.abstractmethod
  def num_added(self) -> np.ndarray:
    """Transitions ever added (evicted ones included), int64 [num_tasks, 2]."""

  def size(self, task: int, table: str) -> int:
    """Current number of transitions of one table.

    Args:
      task: task id.
      table: 'adapt' or 'full'.
    """
    self._check_task(task)
    return int(self.sizes()[task, self._table_index(table)])

  def close(self) -> None:
    """Releases what the backend holds (a server, a client). Idempotent."""

  def __enter__(self) -> "TaskTables":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  # --- Checkpoints -------------------------------------------------------------------------

  @abc.abstractmethod
  def _write_checkpoint(self, path: str) -> Dict[str, Any]:
    """Writes the backend's files into the empty folder `path`; returns manifest entries."""

  @abc.abstractmethod
  def _read_checkpoint(self, path: str, manifest: Dict[str, Any]) -> None:
    """Replaces the contents with the checkpoint in `path` (its manifest already checked)."""

  def _config(self) -> Dict[str, Any]:
    return {"backend": self.BACKEND, "num_tasks": self.num_tasks,
            "observation_dim": self.observation_dim, "action_dim": self.action_dim,
            "adapt_capacity": self.capacities["adapt"],
            "full_capacity": self.capacities["full"]}

  def save(self, directory: str) -> None:
    """Checkpoints the exact contents, atomically (see the module docstring).

    Args:
      directory: folder to write into; created if missing; may hold earlier checkpoints,
        which are removed once the new one is complete.
    """
    os.makedirs(directory, exist_ok=True)
    numbers = [int(m.group(1)) for m in map(_CHECKPOINT_NAME.fullmatch, os.listdir(directory))
               if m]
    number = max(numbers, default=0) + 1
    staging = tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=directory)
    try:
      entries = self._write_checkpoint(staging)
      _write_json(os.path.join(staging, MANIFEST),
                  {"format_version": _FORMAT_VERSION, **self._config(), **entries})
      files.fsync_path(staging)
      final = os.path.join(directory, f"ckpt-{number:06d}")
      os.rename(staging, final)
    except BaseException:
      shutil.rmtree(staging, ignore_errors=True)
      raise
    files.atomic_write(os.path.join(directory, LATEST),  # The commit point.
                       os.path.basename(final) + "\n")
    for name in os.listdir(directory):  # Older checkpoints, and staging left by kills.
      if (name.startswith(_STAGING_PREFIX) or _CHECKPOINT_NAME.fullmatch(name)) and \
          name != os.path.basename(final):
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    logging.info("Saved replay tables (%s) to %s", self.BACKEND, final)

  def restore(self, directory: str) -> None:
    """Replaces the contents with the last checkpoint `save` completed in `directory`.

    Args:
      directory: the folder given to `save`.

    Raises:
      CheckpointError: naming the file at fault, if there is no complete checkpoint, a file
        is missing or corrupt, or the checkpoint was written for other tables (another
        backend, task count, dimension or capacity).
    """
    path = latest_checkpoint(directory)
    if path is None:
      raise CheckpointError(f"{os.path.join(directory, LATEST)}: missing (no complete "
                            "replay checkpoint in this folder)")
    manifest_path = os.path.join(path, MANIFEST)
    manifest = _read_json(manifest_path)
    expected = {"format_version": _FORMAT_VERSION, **self._config()}
    found = {key: manifest.get(key) for key in expected}
    if found != expected:
      differ = {k: (found[k], v) for k, v in expected.items() if found[k] != v}
      raise CheckpointError(f"{manifest_path}: written for other tables "
                            f"(checkpoint vs these tables: {differ})")
    self._read_checkpoint(path, manifest)
    logging.info("Restored replay tables (%s) from %s", self.BACKEND, path)

  # --- Helpers for the backends -------------------------------------------------------------

  BACKEND = "abstract"

  @staticmethod
  def table_name(task: int, table: str) -> str:
    """The name of one table, as Reverb and the checkpoint files call it."""
    return f"task{task:03d}_{table}"

  def _table_index(self, table: str) -> int:
    if table not in self.TABLES:
      raise ValueError(f"unknown table {table!r}: expected one of {self.TABLES}")
    return self.TABLES.index(table)

  def _table_list(self, table: TableSpec) -> Tuple[str, ...]:
    names = (table,) if isinstance(table, str) else tuple(table)
    if not names or len(set(names)) != len(names):
      raise ValueError(f"table must be one of {self.TABLES} or a tuple of distinct ones, "
                       f"got {table!r}")
    for name in names:
      self._table_index(name)
    return names

  def _check_task(self, task: int) -> int:
    if int(task) != task or not 0 <= task < self.num_tasks:
      raise ValueError(f"task {task!r} out of range [0, {self.num_tasks})")
    return int(task)

  def _check_tasks(self, tasks: Sequence[int]) -> np.ndarray:
    ids = np.asarray(tasks)
    if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
      raise ValueError(f"tasks must be a non-empty 1-D sequence of ints, got {tasks!r}")
    if ids.min() < 0 or ids.max() >= self.num_tasks:
      raise ValueError(f"task ids {ids.tolist()} out of range [0, {self.num_tasks})")
    return ids.astype(np.int64)

  def _pack(self, transitions: Mapping[str, np.ndarray]) -> np.ndarray:
    """Validates the five fields and packs them into float32 rows [N, row_dim]."""
    missing = [f for f in FIELDS if f not in transitions]
    extra = sorted(set(transitions) - set(FIELDS))
    if missing or extra:
      raise ValueError(f"transitions must have exactly the keys {FIELDS}; missing "
                       f"{missing}, unexpected {extra}")
    arrays = {f: np.asarray(transitions[f], dtype=np.float32) for f in FIELDS}
    if arrays["reward"].ndim != 1:
      raise ValueError(f"transitions['reward'] has shape {arrays['reward'].shape}, "
                       "expected [N]")
    n = arrays["reward"].shape[0]
    for field, (start, stop, scalar) in self._layout.items():
      want = (n,) if scalar else (n, stop - start)
      if arrays[field].shape != want:
        raise ValueError(f"transitions[{field!r}] has shape {arrays[field].shape}, "
                         f"expected {want} (N = {n} from 'reward')")
    rows = np.empty((n, self.row_dim), np.float32)
    for field, (start, stop, scalar) in self._layout.items():
      rows[:, start:stop] = arrays[field][:, None] if scalar else arrays[field]
    return rows

  def _unpack(self, rows: np.ndarray) -> Dict[str, np.ndarray]:
    """Splits packed rows [..., row_dim] into the five fields (contiguous arrays)."""
    return {field: np.ascontiguousarray(rows[..., start] if scalar else rows[..., start:stop])
            for field, (start, stop, scalar) in self._layout.items()}

  def _check_batch_size(self, batch_size: int) -> int:
    if int(batch_size) != batch_size or batch_size < 1:
      raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)
