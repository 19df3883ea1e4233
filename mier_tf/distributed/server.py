"""The replay server of a distributed run: per-task tables, weights and rate tickets.

It restores its newest complete checkpoint when it starts (Reverb's DefaultCheckpointer
loads the newest checkpoint of its folder), so a restarted server holds what it held at its
last checkpoint: the learner has it write one with each of its own checkpoints, and the
server writes one more when it is stopped (SIGTERM or Ctrl-C). It keeps the newest
`keep_checkpoints` complete ones.

A Reverb server listens on every interface without authentication: anyone who can reach
the port can read, write, reset or checkpoint the tables. Run it on a trusted network only.
"""
import logging
import os
import shutil
import signal
import tempfile
import threading
from typing import Optional

import gin
import reverb

from mier_tf import files
from mier_tf.distributed import common

SERVER_DIR = "server"  # in the run's root_dir: checkpoints/ and address
ADDRESS_FILE = "address"


def checkpoint_dir(root_dir: str) -> str:
  return os.path.join(root_dir, SERVER_DIR, "checkpoints")


def make_tables():
  """The server's tables for the parsed gin config (builds the run's parts to read the
  shapes of its weights; the replay of that throwaway run is in-process)."""
  from mier_tf.train import meta_train  # pylint: disable=import-outside-toplevel
  gin.bind_parameter("make_task_tables.backend", "in_process")
  scratch = tempfile.mkdtemp(prefix="mier-server-spec-")
  try:
    run = meta_train.MetaTrainingRun(scratch)
    return common.server_tables(run), common.RateLimit().settings(run)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


def prune_checkpoints(directory: str, keep: int) -> None:
  """Removes all but the newest `keep` complete checkpoints (and older incomplete ones)."""
  if not os.path.isdir(directory):
    return
  names = sorted(n for n in os.listdir(directory)  # Reverb names them by ISO time
                 if os.path.isdir(os.path.join(directory, n)))
  complete = [n for n in names if os.path.exists(os.path.join(directory, n, "DONE"))]
  kept = set(complete[-keep:])
  newest = kept and max(kept)
  for name in names:
    if name not in kept and (name in complete or name < newest):
      shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


@gin.configurable
def serve(root_dir: str, port: Optional[int] = None, keep_checkpoints: int = 2,
          stop: Optional[threading.Event] = None) -> None:
  """Runs the replay server until SIGTERM, SIGINT or `stop` is set.

  Args:
    root_dir: the run's directory; the server keeps ROOT/server/checkpoints and writes its
      address to ROOT/server/address.
    port: the port to listen on (on every interface); None: a free one.
    keep_checkpoints: complete Reverb checkpoints kept.
    stop: an event that stops the server (tests); signals stop it too.
  """
  tables, rate = make_tables()
  directory = checkpoint_dir(root_dir)
  os.makedirs(directory, exist_ok=True)
  server = reverb.Server(tables, port=port,
                         checkpointer=reverb.checkpointers.DefaultCheckpointer(directory))
  address = f"localhost:{server.port}"
  files.atomic_write(os.path.join(root_dir, SERVER_DIR, ADDRESS_FILE), address + "\n")
  logging.warning("Reverb server on port %d listens on all interfaces without "
                  "authentication: use it on a trusted network only", server.port)
  logging.info("Replay server ready at %s: %d task tables, rate %.4g training steps per "
               "environment step (%.3g per ticket), checkpoints in %s", address,
               len(tables) - 2, rate["train_steps_per_env_step"], rate["samples_per_insert"],
               directory)
  stop = stop or threading.Event()
  if threading.current_thread() is threading.main_thread():
    for sig in (signal.SIGTERM, signal.SIGINT):
      signal.signal(sig, lambda *_: stop.set())
  try:
    while not stop.wait(2.0):
      prune_checkpoints(directory, keep_checkpoints)
  finally:
    try:
      logging.info("Stopping: checkpointed the tables to %s",
                   reverb.Client(address).checkpoint())
    except Exception:  # pylint: disable=broad-except
      logging.exception("The final checkpoint of the replay server failed")
    prune_checkpoints(directory, keep_checkpoints)
    server.stop()
