"""Per-task replay tables on a Reverb server (the optional backend).

Security: `reverb.Server` listens on every network interface (`*:<port>`, no bind-address
option) with no authentication or encryption. Anyone who can reach the port can read,
insert into, reset or checkpoint the tables. Use this backend only on a trusted network
(or behind a firewall); the in-process backend, which opens no port, is the default.
gRPC also binds with SO_REUSEPORT, so another server of the same user can share the port.

Tables are named `task{t:03d}_{adapt|full}`: uniform sampler, FIFO remover,
`max_size` = capacity, rate limiter MinSize(1); each item is one transition, stored as the
packed float32 row of `TaskTables` (one column instead of five: about 5x faster to insert
and 2x faster to sample). Data added to both tables of a task is stored once and
referenced by an item in each table.

Sampling uses one Reverb sampler per (task, table), kept open between calls (opening one
costs about a millisecond, as much as sampling a few hundred rows). It is Reverb's own
`Sampler` (reached through `reverb.Client`'s binding, as `Client.sample` does, but with a
buffer of `_SAMPLER_BUFFER` rows instead of one: twelve times faster), not a
`reverb.TrajectoryDataset` iterator: TF iterators cost about ten threads each, and with a
few hundred open (100 tasks x tables x batch sizes) closing one took seconds and the
process stalled (measured on cheetah_vel_hard: docs/DISTRIBUTED.md). A sampler fetches up to
`_SAMPLER_BUFFER` rows ahead, so samples can lag other writers by that much; `add` through
this object closes the affected samplers, so what it added (and evicted) is visible to the
next `sample`. The tasks of one `sample` are read on `_SAMPLING_THREADS` daemon threads
(a sampler waits without the GIL): 60 ms for a cheetah_vel_hard meta-step's batches over
gRPC, 95 ms one after the other. Sampling randomness is the server's own: `seed` has no
effect and a restore does not reproduce later samples exactly (the in-process backend does).

A server that goes away: Reverb's samplers and writer wait for it forever, and pick it up
again when it comes back (a restarted server). `add` and `sample` wait for it at most
`reconnect_timeout_s`, then raise a ConnectionError naming it.

Checkpoints: `save` has the server write a Reverb checkpoint (`client.checkpoint()`), moves
it into the save folder and records each file's size and CRC-32 in the manifest. Reverb
loads a checkpoint only when a server starts, so `restore` stops the local server and
starts a new one (on a new port: read `address` again) whose DefaultCheckpointer has the
saved checkpoint as its fallback path. The sizes and CRCs are checked first because Reverb
silently starts empty from a missing or incomplete checkpoint and reports a corrupt one
without naming the file. An external server cannot be restarted from here: `save` records
the path of the checkpoint it wrote (on the server's machine) and `restore` says how to
restart that server from it, unless `keep_external_on_restore`: then `restore` keeps what the
external server holds (a distributed learner resuming beside a server that kept running, or
that restored its own checkpoint when it restarted: its contents are at least as new).
"""
import concurrent.futures
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
import zlib
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import reverb
import tensorflow as tf

from mier_tf.replay.base import CheckpointError, TableSpec, TaskTables

_REVERB_DIR = "reverb"
_SAMPLER_BUFFER = 64  # Rows a sampler fetches ahead of `sample`.
_SAMPLING_THREADS = 4  # Tasks sampled at once.
_UNLIMITED = 2**62  # A sampler's sample budget: it stays open until closed.
_FLUSH_EVERY = 24  # Items a writer may have in flight before `add` waits for the server
# (an add puts up to as many again in the queue: at 50 pending Reverb logs "the number of
# pending items is alarmingly high" every 10 items).


def make_reverb_tables(num_tasks: int, observation_dim: int, action_dim: int,
                       adapt_capacity: int = 50_000,
                       full_capacity: int = 200_000) -> List[reverb.Table]:
  """The Reverb tables `ReverbTaskTables` expects, e.g. to start an external server with.

  Args: as `TaskTables`.
  """
  row_dim = 2 * observation_dim + action_dim + 2
  signature = tf.TensorSpec([row_dim], tf.float32)
  capacities = {"adapt": adapt_capacity, "full": full_capacity}
  return [reverb.Table(name=TaskTables.table_name(task, table),
                       sampler=reverb.selectors.Uniform(),
                       remover=reverb.selectors.Fifo(),
                       max_size=capacities[table],
                       rate_limiter=reverb.rate_limiters.MinSize(1),
                       signature=signature)
          for task in range(num_tasks) for table in TaskTables.TABLES]


class _DaemonPool:
  """Threads that run `submit`ted calls. Daemon threads, unlike ThreadPoolExecutor's: a
  thread left waiting on a server that went away must not keep the process from exiting."""

  def __init__(self, size: int):
    self._size, self._work, self._threads = size, queue.SimpleQueue(), []

  def submit(self, fn, *args) -> concurrent.futures.Future:
    if len(self._threads) < self._size:
      thread = threading.Thread(target=self._run, daemon=True, name="reverb-sample")
      thread.start()
      self._threads.append(thread)
    future = concurrent.futures.Future()
    self._work.put((future, fn, args))
    return future

  def _run(self) -> None:
    while (item := self._work.get()) is not None:
      future, fn, args = item
      if future.set_running_or_notify_cancel():
        try:
          future.set_result(fn(*args))
        except BaseException as e:  # pylint: disable=broad-except
          future.set_exception(e)

  def close(self) -> None:
    for _ in self._threads:
      self._work.put(None)
    self._threads = []


def _file_digest(path: str) -> Dict[str, int]:
  crc, size = 0, 0
  with open(path, "rb") as f:
    while chunk := f.read(1 << 22):
      crc, size = zlib.crc32(chunk, crc), size + len(chunk)
    os.fsync(f.fileno())
  return {"bytes": size, "crc32": crc}


class ReverbTaskTables(TaskTables):
  """Per-task tables on a Reverb server: a local one it starts, or an external one.

  Only on a trusted network: the server listens on all interfaces without authentication
  (see the module docstring).

  Args:
    num_tasks, observation_dim, action_dim, adapt_capacity, full_capacity: as `TaskTables`.
    seed: unused (the server samples with its own random stream); kept for the interface.
    address: None starts a local server on a free port; 'host:port' connects to an
      external server that already has the tables of `make_reverb_tables` (checked).
    checkpoint_dir: scratch folder for Reverb's DefaultCheckpointer (local server only);
      put it on the filesystem of the `save` folder so that `save` moves rather than copies.
      Default: a temporary folder, removed by `close`.
    timeout_s: how long to wait for the server to answer, and for an empty table to
      receive data before `sample` gives up.
    keep_external_on_restore: with an external server, `restore` keeps the server's
      contents instead of refusing (see the module docstring).
    reconnect_timeout_s: how long `add` and `sample` wait for a server that stopped
      answering (a restarted server is picked up again by the open writer and samplers)
      before they raise a ConnectionError.
  """

  BACKEND = "reverb"

  def __init__(self, num_tasks: int, observation_dim: int, action_dim: int,
               adapt_capacity: int = 50_000, full_capacity: int = 200_000, seed: int = 0,
               address: Optional[str] = None, checkpoint_dir: Optional[str] = None,
               timeout_s: float = 10.0, keep_external_on_restore: bool = False,
               reconnect_timeout_s: float = 120.0):
    super().__init__(num_tasks, observation_dim, action_dim, adapt_capacity, full_capacity,
                     seed)
    self._timeout_s = timeout_s
    self._reconnect_timeout_s = reconnect_timeout_s
    self._pool = _DaemonPool(_SAMPLING_THREADS)
    self._server: Optional[reverb.Server] = None
    self._writer = None
    self._samplers: Dict[Tuple[int, str], Any] = {}
    self._external = address is not None
    self._keep_external_on_restore = keep_external_on_restore
    self._scratch: Optional[str] = None
    if self._external:
      if checkpoint_dir is not None:
        raise ValueError("checkpoint_dir applies to a local server only; an external "
                         "server has its own checkpointer")
      self.address = address
      self._client = reverb.Client(address)
      self._check_server_tables()
    else:
      if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
      self._scratch = tempfile.mkdtemp(prefix="reverb-scratch-", dir=checkpoint_dir)
      self._start_server()

  # --- Server and client -------------------------------------------------------------------

  def _start_server(self, fallback_checkpoint: Optional[str] = None) -> None:
    # A fresh, empty checkpointer root each time: DefaultCheckpointer loads the newest
    # checkpoint of its root if there is one and only otherwise the fallback.
    root = tempfile.mkdtemp(prefix="server-", dir=self._scratch)
    checkpointer = reverb.checkpointers.DefaultCheckpointer(
        root, fallback_checkpoint_path=fallback_checkpoint)
    self._server = reverb.Server(
        make_reverb_tables(self.num_tasks, self.observation_dim, self.action_dim,
                           self.capacities["adapt"], self.capacities["full"]),
        checkpointer=checkpointer)
    self.address = f"localhost:{self._server.port}"
    self._client = reverb.Client(self.address)
    logging.warning("Reverb server on port %d listens on all interfaces without "
                    "authentication: use it on a trusted network only", self._server.port)

  def _stop_server(self) -> None:
    self._samplers.clear()
    self._close_writer()
    if self._server is not None:
      self._server.stop()
      self._server = None

  def _server_info(self) -> Dict[str, Any]:
    try:
      return self._client.server_info(timeout=max(1, int(self._timeout_s)))
    except reverb.errors.DeadlineExceededError as e:
      raise ConnectionError(f"Reverb server at {self.address} did not answer within "
                            f"{self._timeout_s} s") from e
    except RuntimeError as e:  # gRPC errors without a Reverb type, e.g. 'Socket closed'
      raise ConnectionError(f"Reverb server at {self.address}: {e}") from e

  def _check_server_tables(self) -> None:
    info = self._server_info()
    expected = {table.name: table for table in make_reverb_tables(
        self.num_tasks, self.observation_dim, self.action_dim, self.capacities["adapt"],
        self.capacities["full"])}
    missing = sorted(set(expected) - set(info))
    wrong = []
    for name in sorted(set(expected) & set(info)):
      table = info[name]
      signature = table.signature
      if (table.max_size != expected[name].info.max_size or
          not table.sampler_options.uniform or not table.remover_options.fifo or
          not isinstance(signature, tf.TensorSpec) or signature.dtype != tf.float32 or
          signature.shape != (self.row_dim,)):
        wrong.append(f"{name} (max_size {table.max_size}, signature {signature})")
    if missing or wrong:
      shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
      raise ValueError(
          f"Reverb server at {self.address} lacks the tables of make_reverb_tables("
          f"num_tasks={self.num_tasks}, observation_dim={self.observation_dim}, "
          f"action_dim={self.action_dim}, capacities={self.capacities}): "
          f"{len(missing)} missing ({shown}); {len(wrong)} configured differently "
          f"{wrong[:3]}; expected uniform sampler, FIFO remover, float32 [{self.row_dim}] rows")

  def reset_connection(self) -> None:
    """Drops the writer and the samplers, e.g. after the server restarted: the
    next `add` and `sample` open new ones (the gRPC channel reconnects by itself)."""
    self._samplers.clear()
    self._writer = None  # A writer to a server that went away cannot be flushed or closed.

  def close(self) -> None:
    self._stop_server()
    self._pool.close()
    if self._scratch is not None:
      shutil.rmtree(self._scratch, ignore_errors=True)
      self._scratch = None

  # --- Adding ------------------------------------------------------------------------------

  def _close_writer(self) -> None:
    if self._writer is not None:
      try:
        self._writer.close()
      except Exception:  # pylint: disable=broad-except
        logging.exception("Closing the Reverb writer failed")
      self._writer = None

  def add(self, task: int, table: TableSpec, transitions: Mapping[str, np.ndarray]) -> None:
    task = self._check_task(task)
    tables = self._table_list(table)
    names = [self.table_name(task, t) for t in tables]
    rows = self._pack(transitions)
    if self._writer is None:
      # Items are checked here (`_pack`), so the writer need not re-validate each one.
      self._writer = self._client.trajectory_writer(num_keep_alive_refs=1,
                                                    validate_items=False)
    rows_per_flush = max(1, _FLUSH_EVERY // len(names))  # each row makes len(names) items
    for i, row in enumerate(rows):
      self._writer.append(row)
      step = self._writer.history[-1]  # One step, squeezed: items hold a row [row_dim].
      for name in names:
        self._writer.create_item(name, 1.0, step)
      if (i + 1) % rows_per_flush == 0:
        self._flush(_FLUSH_EVERY)
    self._flush(0)
    for name in tables:
      self._samplers.pop((task, name), None)

  def _flush(self, block_until_num_items: int) -> None:
    """The writer's flush, bounded: it waits for a restarted server (the writer resends
    what it had not delivered), but not forever for one that went away."""
    down_since = None
    while True:
      try:
        self._writer.flush(block_until_num_items, timeout_ms=int(1000 * self._timeout_s))
        return
      except reverb.errors.DeadlineExceededError:
        pass
      try:  # Nothing confirmed for timeout_s.
        down_since = self._still_there(down_since, "adding")
      except ConnectionError:
        self._writer = None  # It cannot be flushed or closed any more.
        raise

  def _still_there(self, down_since: Optional[float], doing: str) -> Optional[float]:
    """After a wait of timeout_s that brought nothing: None if the server answers, else since
    when it has not; a ConnectionError once that is reconnect_timeout_s."""
    try:
      self._server_info()
      return None
    except ConnectionError:
      down_since = down_since or time.monotonic() - self._timeout_s
      if time.monotonic() - down_since > self._reconnect_timeout_s:
        raise ConnectionError(
            f"Reverb server at {self.address} went away while {doing} and did not come "
            f"back within {self._reconnect_timeout_s:g} s") from None
      logging.warning("Reverb server at %s does not answer; %s waits for it (up to %g s)",
                      self.address, doing, self._reconnect_timeout_s)
      return down_since

  # --- Sampling ----------------------------------------------------------------------------

  def _open_samplers(self, tasks: Sequence[int], table: str) -> None:
    """Opens the samplers of `tasks` that are not open, once their tables hold data (a
    sampler of an empty table would wait without a timeout)."""
    missing = sorted({task for task in tasks if (task, table) not in self._samplers})
    deadline = time.monotonic() + self._timeout_s
    while missing:
      info = self._server_info()
      empty = [t for t in missing if info[self.table_name(t, table)].current_size == 0]
      binding = self._client._client  # pylint: disable=protected-access  (Reverb's own)
      for task in sorted(set(missing) - set(empty)):
        self._samplers[(task, table)] = binding.NewSampler(
            self.table_name(task, table), _UNLIMITED, _SAMPLER_BUFFER)
      missing = empty
      if missing and time.monotonic() > deadline:
        raise ValueError(f"cannot sample from table {self.table_name(missing[0], table)}: "
                         f"still empty after {self._timeout_s} s")
      if missing:
        time.sleep(0.05)

  def _fill(self, task: int, table: str, out: np.ndarray, rows: List[int]) -> None:
    sampler = self._samplers[(task, table)]
    for i in rows:
      for j in range(out.shape[1]):
        out[i, j] = sampler.GetNextTrajectory()[-1]  # (key, probability, ..., data)

  def sample(self, tasks: Sequence[int], table: str, batch_size: int) -> Dict[str, np.ndarray]:
    ids = self._check_tasks(tasks).tolist()
    self._table_index(table)
    batch_size = self._check_batch_size(batch_size)
    self._open_samplers(ids, table)
    out = np.empty((len(ids), batch_size, self.row_dim), np.float32)
    rows: Dict[int, List[int]] = {}
    for i, task in enumerate(ids):
      rows.setdefault(task, []).append(i)
    # A thread per task (a sampler is used by one thread at a time): the samplers wait for
    # the server without the GIL, so this is faster than one after the other, and the wait
    # below can give up on a server that went away (a sampler would wait for it forever).
    pending = {self._pool.submit(self._fill, task, table, out, task_rows): task
               for task, task_rows in rows.items()}
    down_since = None
    while pending:
      done, _ = concurrent.futures.wait(pending, timeout=self._timeout_s,
                                        return_when=concurrent.futures.FIRST_EXCEPTION)
      for future in done:
        task = pending.pop(future)
        if future.exception() is not None:
          self._samplers.pop((task, table), None)
          raise future.exception()
      if not pending or done:
        down_since = None
        continue
      try:  # Nothing arrived for timeout_s.
        down_since = self._still_there(
            down_since, f"sampling {self.table_name(next(iter(pending.values())), table)}")
      except ConnectionError:
        for task in pending.values():  # Their threads stay blocked in the old samplers.
          self._samplers.pop((task, table), None)
        raise
    return self._unpack(out)

  # --- Sizes -------------------------------------------------------------------------------

  def _table_stats(self, stat) -> np.ndarray:
    info = self._server_info()
    return np.array([[stat(info[self.table_name(task, table)]) for table in self.TABLES]
                     for task in range(self.num_tasks)], np.int64).reshape(self.num_tasks, 2)

  def sizes(self) -> np.ndarray:
    return self._table_stats(lambda info: info.current_size)

  def num_added(self) -> np.ndarray:
    return self._table_stats(lambda info: info.rate_limiter_info.insert_stats.completed)

  # --- Checkpoints -------------------------------------------------------------------------

  def _write_checkpoint(self, path: str) -> Dict[str, Any]:
    sizes = self.sizes()
    try:
      written = self._client.checkpoint()
    except RuntimeError as e:
      raise ConnectionError(f"Reverb server at {self.address} did not checkpoint: {e}") from e
    if self._external:
      # The files are on the server's machine: record where they are.
      return {"external_checkpoint": written, "sizes": sizes.tolist()}
    target = os.path.join(path, _REVERB_DIR)
    try:
      shutil.move(written, target)  # A rename when both are on one filesystem.
    finally:
      shutil.rmtree(written, ignore_errors=True)
    files = {name: _file_digest(os.path.join(target, name)) for name in os.listdir(target)}
    if "DONE" not in files:
      raise RuntimeError(f"Reverb wrote an incomplete checkpoint {written} (no DONE file)")
    return {"reverb_files": files, "sizes": sizes.tolist()}

  def _read_checkpoint(self, path: str, manifest: Dict[str, Any]) -> None:
    manifest_path = os.path.join(path, "manifest.json")
    if self._external and self._keep_external_on_restore:
      self._check_server_tables()
      logging.info("Kept the contents of the Reverb server at %s (sizes now %s, at the "
                   "checkpoint %s)", self.address, self.sizes().sum(0).tolist(),
                   np.sum(manifest.get("sizes", [[0, 0]]), 0).tolist())
      return
    if self._external:
      raise RuntimeError(
          "restore() cannot reload an external Reverb server: restart that server with "
          "reverb.checkpointers.DefaultCheckpointer(path=<empty dir>, "
          f"fallback_checkpoint_path={manifest.get('external_checkpoint')!r}) "
          f"(recorded in {manifest_path})")
    files = manifest.get("reverb_files")
    if not isinstance(files, dict) or "DONE" not in files or "sizes" not in manifest:
      raise CheckpointError(f"{manifest_path}: corrupt (no Reverb file list and sizes; "
                            "was it written by an external server?)")
    # Reverb would silently start empty or fail without naming the file: check them first.
    reverb_dir = os.path.join(path, _REVERB_DIR)
    for name, digest in sorted(files.items()):
      file = os.path.join(reverb_dir, name)
      if not os.path.isfile(file):
        raise CheckpointError(f"{file}: missing")
      if _file_digest(file) != digest:
        raise CheckpointError(f"{file}: corrupt (size or CRC-32 differs from {manifest_path})")
    # Past this point the previous contents are gone: a checkpoint that passed the checks
    # above but still fails to load leaves the tables empty.
    self._stop_server()
    try:
      self._start_server(fallback_checkpoint=reverb_dir)
    except RuntimeError as e:
      self._start_server()
      raise CheckpointError(f"{reverb_dir}: Reverb cannot load it ({e})") from e
    if self.sizes().tolist() != manifest["sizes"]:
      self._stop_server()
      self._start_server()
      raise CheckpointError(f"{reverb_dir}: loaded table sizes differ from {manifest_path}")
