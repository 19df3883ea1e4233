"""A collector of a distributed run: Algorithm 1's data step, on the learner's weights.

Each round it pulls the learner's latest weights (the SAC actor and the dynamics model, with
their version), then for a few training tasks collects with the prior context, adapts the
context on that data and collects with the adapted context (`MetaTrainingRun.collect_epoch`,
writing into the server's 'adapt' and 'full' tables), and pays one rate ticket per task
(`common`): when the learner falls behind, the ticket waits and so does the collector.

Collector `index` of `num_collectors` first explores its share of the training tasks (every
`num_collectors`-th one) with the prior context, skipping the tasks whose initial exploration
the server already holds (a restarted collector rejoins without redoing it). Its rounds then
draw from its share ('share') or from all training tasks ('random'). Each start seeds its
environments and exploration noise afresh (from the run's seed, the index and the number of
earlier starts), so a restarted collector does not repeat its episodes.

ROOT/status.json says what it did (pid, starts, rounds, environment steps, the weight
versions it collected with); it is rewritten atomically after every round. ROOT/eval/ holds
each round's mean returns with the prior and the adapted context
(Collect/return_{prior,adapted}_context), at the run's environment steps then.
"""
import logging
import os
import signal
import threading
import time
from typing import Optional

import gin
import numpy as np
import reverb
import tensorflow as tf
from tf_agents.experimental.distributed import reverb_variable_container

from mier_tf import files
from mier_tf.distributed import common

STATUS_FILE = "status.json"
_VERSIONS_KEPT = 200
_MAX_FAILED_ROUNDS = 3


def read_status(root_dir: str) -> dict:
  path = os.path.join(root_dir, STATUS_FILE)
  return files.read_json(path) if os.path.exists(path) else {}


def _seed(index: int, starts: int) -> int:
  try:
    base = int(gin.query_parameter("MetaTrainingRun.seed"))
  except ValueError:
    base = 0
  return int(np.random.SeedSequence([base, index, starts]).generate_state(1)[0] % (2**31 - 1))


class _Weights:
  """The learner's published weights, pulled into this process's run."""

  def __init__(self, server: str, run, timeout_s: float):
    self._client = reverb.Client(server)
    self._timeout_s = timeout_s
    self._container = reverb_variable_container.ReverbVariableContainer(
        server, table_names=(common.VARIABLES_TABLE,))
    self._variables = common.published_variables(run)
    self._log = common.log_every(30.0)

  def pull(self, stop: threading.Event) -> int:
    """Waits for published weights (the learner pushes at its start), reads them."""
    while common.table_info(self._client, common.VARIABLES_TABLE,
                            self._timeout_s).current_size < 1:
      self._log("Waiting for the learner to publish its weights")
      if stop.wait(1.0):
        return -1
    self._container.update(self._variables, table=common.VARIABLES_TABLE)
    return int(self._variables["version"].numpy())


@gin.configurable
def collect(root_dir: str, server: str, index: int = 0, num_collectors: int = 1,
            task_choice: str = "share", connect_timeout_s: float = 60.0,
            max_rounds: Optional[int] = None, stop: Optional[threading.Event] = None) -> dict:
  """Runs collector `index` until SIGTERM/SIGINT, `stop`, or `max_rounds` rounds.

  Args:
    root_dir: this collector's own directory (status.json).
    server: the replay server's address, host:port.
    index: which collector this is, 0 .. num_collectors - 1 (chooses its share of tasks).
    num_collectors: how many collectors share the tasks.
    task_choice: 'share' (rounds draw from this collector's share of the training tasks)
      or 'random' (from all of them).
    connect_timeout_s: how long to wait for the server, at the start and after it went away,
      before stopping with a ConnectionError.
    max_rounds: stop after this many rounds (None: run until stopped).
    stop: an event that stops the collector after its current round (tests).

  Returns:
    The last status (what status.json holds).
  """
  from mier_tf.train import meta_train  # pylint: disable=import-outside-toplevel
  if not 0 <= index < num_collectors:
    raise ValueError(f"collector index {index} out of range [0, {num_collectors})")
  if task_choice not in ("share", "random"):
    raise ValueError(f"task_choice must be 'share' or 'random', got {task_choice!r}")
  stop = stop or threading.Event()
  if threading.current_thread() is threading.main_thread():
    for sig in (signal.SIGTERM, signal.SIGINT):
      signal.signal(sig, lambda *_: stop.set())
  os.makedirs(root_dir, exist_ok=True)
  status = read_status(root_dir)
  status.update(index=index, pid=os.getpid(), starts=status.get("starts", 0) + 1,
                rounds_since_start=0, server=server)
  status.setdefault("rounds", 0)
  status.setdefault("env_steps", 0)
  status.setdefault("versions", [])
  client = common.wait_for_server(server, connect_timeout_s, f"collector {index}")
  common.bind_external_tables(server)
  gin.bind_parameter("MetaTrainingRun.seed", _seed(index, status["starts"]))
  run = meta_train.MetaTrainingRun(root_dir)
  weights = _Weights(server, run, connect_timeout_s)
  num_tasks = len(run.family.train_tasks)
  mine = common.share(num_tasks, index, num_collectors)
  if mine.size == 0:
    raise ValueError(f"collector {index} of {num_collectors} has no share of the "
                     f"{num_tasks} training tasks: use at most {num_tasks} collectors")
  pool = mine if task_choice == "share" else np.arange(num_tasks)
  per_round = min(len(pool), common.ceil_div(run.tasks_per_epoch, num_collectors))
  steps_per_round = run.prior_steps + run.posterior_steps

  def write_status():
    status["time"] = time.time()
    files.atomic_write_json(os.path.join(root_dir, STATUS_FILE), status)

  write_status()
  version = weights.pull(stop)
  needed = run.num_initial_rounds * run.prior_steps
  todo = mine[run.tables.num_added()[mine, 0] < needed] if needed else mine[:0]
  if todo.size and not stop.is_set():
    logging.info("Collector %d: initial exploration of %d tasks", index, todo.size)
    run.collect_initial(todo)
    status["env_steps"] += int(todo.size * needed)
    write_status()
  logging.info("Collector %d: rounds of %d tasks from %s (%d tasks)", index, per_round,
               task_choice, len(pool))
  writer, failures = None, 0
  while not stop.is_set() and (max_rounds is None or status["rounds_since_start"] < max_rounds):
    try:
      version = weights.pull(stop)
      if version < 0:
        break
      ids = run.rng.choice(pool, per_round, replace=False)
      start = time.perf_counter()
      returns = run.collect_epoch(ids)
      seconds = time.perf_counter() - start
      if writer is None:
        writer = client.trajectory_writer(num_keep_alive_refs=1)
      for _ in ids:  # one rate ticket per task round
        writer.append(np.array([index, version], np.int64))
        writer.create_item(common.RATE_TABLE, 1.0, writer.history[-1])
      while True:  # blocks while the learner is behind (the rate limiter)
        try:
          writer.flush(timeout_ms=1000)
          break
        except reverb.errors.DeadlineExceededError:
          if stop.is_set():
            break
      # The round's learning curve, at the run's env steps as the learner counts them (the
      # server's full tables), in this collector's eval/: Collect/return_*_context. Not when
      # stopping: the server may be going too, and asking it would hold the collector up.
      if not stop.is_set():
        run.env_steps.assign(int(run.tables.num_added()[:, 1].sum()))
        run.log_collection(returns)
        run.eval_writer.flush()
      failures = 0
    except (ConnectionError, RuntimeError, tf.errors.OpError, reverb.errors.ReverbError) as e:
      failures += 1
      if failures > _MAX_FAILED_ROUNDS:
        raise
      logging.warning("Collector %d: round failed (%s: %s); waiting for the server",
                      index, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
      client = common.wait_for_server(server, connect_timeout_s, f"collector {index}")
      run.tables.reset_connection()
      writer = None
      continue
    status["rounds"] += 1
    status["rounds_since_start"] += 1
    status["env_steps"] += int(len(ids) * steps_per_round)
    status["versions"] = (status["versions"] + [version])[-_VERSIONS_KEPT:]
    status["env_steps_per_sec"] = len(ids) * steps_per_round / seconds
    write_status()
  run.collector.close()
  return status
