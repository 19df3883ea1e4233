"""A whole distributed run on one machine: the server, N collectors and the learner as
processes, supervised.

The server starts first (on a free port unless one is given); once it answers, the
collectors and the learner start. While the learner runs, a collector that exits is started
again (it rejoins: see `collector`), and so is the server (on the same port; it restores
its newest checkpoint, and the learner and the collectors reconnect to it). A learner killed
by a signal other than SIGTERM or SIGINT (the OOM killer, kill -9) is started again and
resumes from its last checkpoint; one that exits by itself ends the run, whatever its exit
status. Each process is restarted at most `_MAX_RESTARTS` times. When the learner exits, or
on Ctrl-C or SIGTERM,
everything is stopped (SIGTERM, then SIGKILL after `grace_s`); the server checkpoints on
its way out. The learner's output goes to the terminal; the server's and collectors' to
ROOT/logs/<role>.log.
"""
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

from mier_tf.distributed import common

_MAX_RESTARTS = 20


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("", 0))
    return s.getsockname()[1]


def collector_dir(root_dir: str, index: int) -> str:
  return os.path.join(root_dir, "collectors", f"collector_{index}")


class _Process:
  def __init__(self, name: str, argv: List[str], log_path: Optional[str]):
    self.name, self.argv, self.log_path = name, argv, log_path
    self.proc: Optional[subprocess.Popen] = None
    self.starts = 0

  def start(self) -> None:
    out = None
    if self.log_path:
      os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
      out = open(self.log_path, "a")  # pylint: disable=consider-using-with
    self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT if out else None)
    if out:
      out.close()
    self.starts += 1
    logging.info("Started %s (pid %d)%s", self.name, self.proc.pid,
                 f", log {self.log_path}" if self.log_path else "")

  def running(self) -> bool:
    return self.proc is not None and self.proc.poll() is None


def _restart(process: _Process, what: str) -> None:
  code = process.proc.returncode
  if process.starts > _MAX_RESTARTS:
    raise RuntimeError(f"{process.name} exited {process.starts} times, the last time with "
                       f"{code}" + (f": see {process.log_path}" if process.log_path else ""))
  logging.warning("%s exited (%s): starting it again (%s)", process.name, code, what)
  process.start()


def _stop(processes: Sequence[_Process], grace_s: float) -> None:
  for p in processes:
    if p.running():
      p.proc.send_signal(signal.SIGTERM)
  deadline = time.monotonic() + grace_s
  for p in processes:
    if p.proc is None:
      continue
    try:
      p.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      logging.warning("%s did not stop within %g s: killed", p.name, grace_s)
      p.proc.kill()
      p.proc.wait()


def launch(command: Sequence[str], config_flags: Sequence[str], root_dir: str,
           num_collectors: int, port: Optional[int] = None, task_choice: str = "share",
           restart_collectors: bool = True, server_timeout_s: float = 180.0,
           grace_s: float = 15.0, learner_flags: Sequence[str] = (),
           collector_flags: Sequence[str] = ()) -> int:
  """Runs server, collectors and learner to the learner's end; returns its exit status.

  Args:
    command: how to start a role, e.g. [python, scripts/launch.py]; `--role=...` and the
      role's flags are appended.
    config_flags: the --gin_file / --gin_bindings flags every role gets.
    root_dir: the run's directory (the collectors work in ROOT/collectors/collector_<i>).
    num_collectors: collectors to start.
    port: the server's port (None: a free one).
    task_choice: the collectors' 'share' or 'random' (see `collector.collect`).
    restart_collectors: start a collector again when it exits before the learner.
    server_timeout_s: how long the server may take to answer before the launch fails.
    grace_s: how long a process may take to stop after SIGTERM.
    learner_flags, collector_flags: more flags for those roles.
  """
  if num_collectors < 1:
    raise ValueError(f"--collectors must be >= 1, got {num_collectors}")
  port = port or free_port()
  address = f"localhost:{port}"
  logs = os.path.join(root_dir, "logs")
  base = list(command) + list(config_flags)
  server = _Process("server", base + ["--role=server", f"--root_dir={root_dir}",
                                      f"--port={port}"], os.path.join(logs, "server.log"))
  collectors = [_Process(
      f"collector {i}", base + [
          "--role=collector", f"--root_dir={collector_dir(root_dir, i)}",
          f"--server={address}", f"--collector_index={i}", f"--collectors={num_collectors}",
          f"--task_choice={task_choice}"] + list(collector_flags),
      os.path.join(logs, f"collector_{i}.log")) for i in range(num_collectors)]
  learner = _Process("learner", base + ["--role=learner", f"--root_dir={root_dir}",
                                        f"--server={address}"] + list(learner_flags), None)
  everything = [learner] + collectors + [server]
  stopping = {"signal": None}

  def on_signal(signum, _):
    stopping["signal"] = signum
    raise KeyboardInterrupt
  previous = signal.signal(signal.SIGTERM, on_signal)
  try:
    server.start()
    deadline = time.monotonic() + server_timeout_s
    while True:
      if not server.running():
        raise RuntimeError(f"the replay server exited ({server.proc.returncode}) before "
                           f"answering: see {server.log_path}")
      try:
        common.wait_for_server(address, 2.0)
        break
      except ConnectionError:
        if time.monotonic() > deadline:
          raise
    for c in collectors:
      c.start()
    learner.start()
    while True:
      while learner.running():
        time.sleep(0.5)
        if not server.running() and learner.running():
          _restart(server, "it restores its newest checkpoint; the others reconnect")
        for c in collectors:
          if not c.running() and learner.running() and restart_collectors:
            _restart(c, "it rejoins")
      code = learner.proc.returncode
      if code < 0 and -code not in (signal.SIGTERM, signal.SIGINT):
        # Killed from outside (the OOM killer, kill -9): it resumes from its checkpoint.
        _restart(learner, "it resumes from its last checkpoint")
        continue
      break
    logging.info("The learner finished (%d): stopping the collectors and the server", code)
    return code
  except KeyboardInterrupt:
    logging.warning("Interrupted: stopping the learner, the collectors and the server")
    return 130
  finally:
    _stop(everything, grace_s)
    signal.signal(signal.SIGTERM, previous)
