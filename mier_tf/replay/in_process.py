"""The in-process backend of the per-task tables: numpy rings, no server, no port.

The interface, the packed row format and the checkpoint format are in `base`.
"""
import os
import zipfile
from typing import Any, Dict, Mapping, Sequence

import numpy as np

from mier_tf.replay.base import MANIFEST, CheckpointError, TableSpec, TaskTables


class _Ring:
  """One FIFO table of packed rows, grown on demand up to its capacity.

  While not full, rows sit in insertion order at [0, size) and `cursor == size`; once full,
  `cursor` is the slot of the oldest row, which the next add overwrites.
  """

  _MIN_ALLOCATION = 1024

  def __init__(self, capacity: int, row_dim: int):
    self.capacity = capacity
    self.rows = np.empty((0, row_dim), np.float32)
    self.size = 0
    self.cursor = 0
    self.num_added = 0

  def add(self, rows: np.ndarray) -> None:
    n = rows.shape[0]
    kept = rows[-self.capacity:]  # Rows beyond capacity in one batch would be evicted at once.
    needed = min(self.capacity, self.size + kept.shape[0])
    if needed > self.rows.shape[0]:
      # Grow geometrically (amortised O(1) per row) but never past the capacity, so memory
      # stays proportional to what was added rather than to the capacity.
      allocation = min(self.capacity, max(needed, 2 * self.rows.shape[0], self._MIN_ALLOCATION))
      grown = np.empty((allocation, self.rows.shape[1]), np.float32)
      grown[:self.size] = self.rows[:self.size]
      self.rows = grown
    start = (self.cursor + n - kept.shape[0]) % self.capacity
    slots = (start + np.arange(kept.shape[0])) % self.capacity
    self.rows[slots] = kept
    self.cursor = (self.cursor + n) % self.capacity
    self.size = needed
    self.num_added += n


class InProcessTaskTables(TaskTables):
  """Numpy tables in this process; opens no port. The default backend.

  Memory is proportional to what was added (arrays grow geometrically up to the capacity):
  a packed HalfCheetah row is 42 float32 = 168 bytes, so 2 M transitions take about 340 MB,
  at most twice that while an array grows. `save` writes one .npz per table plus a JSON
  manifest holding the sampling random state, so `restore` reproduces later samples too.

  Args: as `TaskTables`.
  """

  BACKEND = "in_process"

  def __init__(self, num_tasks: int, observation_dim: int, action_dim: int,
               adapt_capacity: int = 50_000, full_capacity: int = 200_000, seed: int = 0):
    super().__init__(num_tasks, observation_dim, action_dim, adapt_capacity, full_capacity,
                     seed)
    self._rng = np.random.default_rng(seed)
    self._rings = {table: [_Ring(self.capacities[table], self.row_dim)
                           for _ in range(self.num_tasks)] for table in self.TABLES}

  @property
  def nbytes(self) -> int:
    """Bytes held by the table arrays (allocated, not just used)."""
    return sum(ring.rows.nbytes for rings in self._rings.values() for ring in rings)

  def add(self, task: int, table: TableSpec, transitions: Mapping[str, np.ndarray]) -> None:
    task = self._check_task(task)
    names = self._table_list(table)
    rows = self._pack(transitions)
    for name in names:
      self._rings[name][task].add(rows)

  def sample(self, tasks: Sequence[int], table: str, batch_size: int) -> Dict[str, np.ndarray]:
    ids = self._check_tasks(tasks)
    self._table_index(table)
    batch_size = self._check_batch_size(batch_size)
    rings = [self._rings[table][t] for t in ids]
    sizes = np.array([ring.size for ring in rings])
    if not sizes.all():
      empty = [self.table_name(int(t), table) for t, s in zip(ids, sizes) if not s]
      raise ValueError(f"cannot sample from empty table(s) {empty}")
    index = self._rng.integers(0, sizes[:, None], size=(len(ids), batch_size))
    out = np.empty((len(ids), batch_size, self.row_dim), np.float32)
    for i, ring in enumerate(rings):
      np.take(ring.rows, index[i], axis=0, out=out[i])
    return self._unpack(out)

  def sizes(self) -> np.ndarray:
    return np.array([[self._rings[t][i].size for t in self.TABLES]
                     for i in range(self.num_tasks)], np.int64).reshape(self.num_tasks, 2)

  def num_added(self) -> np.ndarray:
    return np.array([[self._rings[t][i].num_added for t in self.TABLES]
                     for i in range(self.num_tasks)], np.int64).reshape(self.num_tasks, 2)

  def _write_checkpoint(self, path: str) -> Dict[str, Any]:
    for table in self.TABLES:
      for task, ring in enumerate(self._rings[table]):
        file = os.path.join(path, self.table_name(task, table) + ".npz")
        with open(file, "wb") as f:
          np.savez(f, rows=ring.rows[:ring.size], cursor=np.int64(ring.cursor),
                   num_added=np.int64(ring.num_added))
          f.flush()
          os.fsync(f.fileno())
    # PCG64's state holds 128-bit integers, which JSON keeps exactly.
    return {"rng_state": self._rng.bit_generator.state}

  def _read_checkpoint(self, path: str, manifest: Dict[str, Any]) -> None:
    rings = {table: [] for table in self.TABLES}
    for table in self.TABLES:  # Read everything before replacing anything.
      for task in range(self.num_tasks):
        rings[table].append(self._read_ring(
            os.path.join(path, self.table_name(task, table) + ".npz"), table))
    rng = np.random.default_rng()
    try:
      rng.bit_generator.state = manifest["rng_state"]
    except (KeyError, TypeError, ValueError) as e:
      raise CheckpointError(f"{os.path.join(path, MANIFEST)}: corrupt rng_state ({e})") from e
    self._rings, self._rng = rings, rng

  def _read_ring(self, file: str, table: str) -> _Ring:
    if not os.path.isfile(file):
      raise CheckpointError(f"{file}: missing")
    ring = _Ring(self.capacities[table], self.row_dim)
    try:
      with np.load(file, allow_pickle=False) as data:
        rows, cursor, num_added = data["rows"], int(data["cursor"]), int(data["num_added"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
      raise CheckpointError(f"{file}: corrupt ({type(e).__name__}: {e})") from e
    size = rows.shape[0] if rows.ndim == 2 else -1
    consistent = (rows.dtype == np.float32 and rows.ndim == 2 and
                  rows.shape[1] == self.row_dim and size <= ring.capacity and
                  num_added >= size and 0 <= cursor < ring.capacity and
                  (size == ring.capacity or cursor == size))
    if not consistent:
      raise CheckpointError(f"{file}: corrupt (rows {rows.dtype}{list(rows.shape)}, cursor "
                            f"{cursor}, num_added {num_added} for capacity {ring.capacity}, "
                            f"row size {self.row_dim})")
    ring.rows = np.array(rows, np.float32)  # Exactly `size` rows; grows again on add.
    ring.size, ring.cursor, ring.num_added = size, cursor, num_added
    return ring
