"""A run directory's own bookkeeping: atomic writes, the lock, the run's identity, "finished".

* Every file the project writes into a run directory goes through `atomic_write` (a
  temporary file, fsync, rename, fsync of the directory): a kill leaves the old file or the
  new one, never a half-written one.
* `RunDirectoryLock` holds an exclusive `flock` on ROOT/.lock for the life of the process:
  a second process on the same root_dir stops at once, naming the PID that holds it. The
  kernel releases the lock when its holder dies, so a killed run never leaves a stale one.
* The run's identity is its whole gin configuration (ROOT/run_config.gin, every binding
  parsed). Resuming with another one is refused before anything is written, naming the
  bindings that differ, except the budget (`RESUMABLE_BINDINGS`), which may grow.
* ROOT/finished.json is written when the whole job ended; a re-run with the same config
  then says so and changes nothing.
"""
import fcntl
import os
import re
from typing import Dict, Optional

from mier_tf.errors import CheckpointError
from mier_tf.files import atomic_write, atomic_write_json, read_json  # noqa: F401  (used here and by callers)

RUN_CONFIG = "run_config.gin"
FINISHED = "finished.json"
LOCK = ".lock"

# Bindings a resumed run may change: the budget (train longer than first planned) and what
# runs after meta-training; and where an external Reverb server is (a distributed run's
# server may come back on another port). Evaluation settings too: evaluation never changes
# what training does (mier_tf/train/evaluation.py), and results record the protocol and the
# checkpoint they came from, so a changed protocol recomputes them instead of mixing them.
# Everything else (seed, sizes, schedule...) is the run's identity.
RESUMABLE_BINDINGS = frozenset({
    "meta_train.num_epochs", "meta_train.max_env_steps", "meta_train.export_at_end",
    "meta_train.export_interval", "meta_train.eval_interval",
    "train_and_adapt.adapt_test_tasks",
    "make_task_tables.address",
    "MetaTrainingRun.eval_train_tasks", "MetaTrainingRun.eval_adapt_steps",
    "MetaTrainingRun.eval_video_steps", "MetaTrainingRun.identification_tasks",
})
# Every binding of these configurables may change on resume (what runs after meta-training).
RESUMABLE_PREFIXES = ("EvalProtocol.", "adapt_ood.", "adapt_all_test_tasks.")


def resumable(binding: str) -> bool:
  return binding in RESUMABLE_BINDINGS or binding.startswith(RESUMABLE_PREFIXES)


class ConfigMismatchError(ValueError):
  """The root_dir holds a run of another configuration."""


class RunDirectoryBusy(ValueError):
  """Another process holds the root_dir's lock."""


class RunDirectoryLock:
  """`with RunDirectoryLock(root_dir):` holds the root_dir for this process."""

  def __init__(self, root_dir: str):
    self.path = os.path.join(root_dir, LOCK)
    self._fd: Optional[int] = None

  def __enter__(self) -> "RunDirectoryLock":
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
      os.close(fd)
      raise RunDirectoryBusy(f"{os.path.dirname(self.path)} is in use by PID {holder}: "
                             "wait for it to end, or choose another --root_dir") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    self._fd = fd
    return self

  def __exit__(self, *exc) -> None:
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None


_STATEMENT_START = re.compile(r"^([A-Za-z_][\w./]*)\s*=\s*", re.MULTILINE)


def config_bindings(text: str) -> Dict[str, str]:
  """`selector = value` statements of a gin config text (as gin.config_str writes it)."""
  starts = list(_STATEMENT_START.finditer(text))
  bindings = {}
  for i, match in enumerate(starts):
    end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
    value = "\n".join(line for line in text[match.end():end].splitlines()
                      if not line.lstrip().startswith("#"))
    bindings[match.group(1)] = " ".join(value.split())
  return bindings


def check_identity(root_dir: str, config_text: str) -> None:
  """Refuses a root_dir whose run had another configuration (writes nothing).

  Raises:
    ConfigMismatchError: naming the bindings that differ (budget bindings may differ).
  """
  path = os.path.join(root_dir, RUN_CONFIG)
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      stored = config_bindings(f.read())
  except OSError as e:
    raise CheckpointError(f"{path}: unreadable ({e.strerror})") from e
  now = config_bindings(config_text)
  differ = sorted(k for k in set(stored) | set(now)
                  if not resumable(k) and stored.get(k) != now.get(k))
  if differ:
    shown = "; ".join(f"{k}: {stored.get(k, '(unset)')} in the run, {now.get(k, '(unset)')} "
                      "now" for k in differ[:4])
    more = f" (and {len(differ) - 4} more)" if len(differ) > 4 else ""
    raise ConfigMismatchError(
        f"{root_dir} holds a run of another configuration ({path}): {shown}{more}. Choose "
        "another --root_dir (only " + ", ".join(sorted(RESUMABLE_BINDINGS)) + " and " +
        ", ".join(p + "*" for p in RESUMABLE_PREFIXES) + " may change on resume).")


def record_identity(root_dir: str, config_text: str) -> None:
  """Stores the run's configuration (once it is validated), or its new budget."""
  path = os.path.join(root_dir, RUN_CONFIG)
  if os.path.exists(path):
    with open(path) as f:
      if f.read() == config_text:
        return
  atomic_write(path, config_text)


def finished(root_dir: str, config_text: str) -> Optional[dict]:
  """The finished.json record if the job ended with this very configuration, else None."""
  path = os.path.join(root_dir, FINISHED)
  if not os.path.exists(path):
    return None
  record = read_json(path)
  if record.get("config") != config_bindings(config_text):
    return None  # a bigger budget (or more to do): the run goes on
  return record


def mark_finished(root_dir: str, config_text: str, summary: dict) -> None:
  """Records that the job ended with this configuration (re-runs then change nothing)."""
  atomic_write_json(os.path.join(root_dir, FINISHED),
                    dict(summary, config=config_bindings(config_text)))
