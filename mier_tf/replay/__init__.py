"""Per-task replay tables ('adapt' and 'full' per task) behind one interface.

  base.py           the interface (`TaskTables`), the packed row format, the checkpoint format
  in_process.py     the default backend: numpy, opens no port
  reverb_tables.py  a Reverb server, for distributed collection (trusted networks only)

`make_task_tables(backend=...)` builds them from the registry below, the one place that
knows the backends. Reverb is imported only when its backend is asked for (by the factory
or by the names `ReverbTaskTables` / `make_reverb_tables`): it loads TensorFlow and native
libraries the default backend does not need.
"""
import importlib
from typing import Callable, Dict, Type

import gin

from mier_tf.replay.base import FIELDS, CheckpointError, TaskTables, latest_checkpoint
from mier_tf.replay.in_process import InProcessTaskTables

__all__ = ["FIELDS", "CheckpointError", "InProcessTaskTables", "ReverbTaskTables",
           "TaskTables", "latest_checkpoint", "make_reverb_tables", "make_task_tables"]


def _reverb_module():
  return importlib.import_module("mier_tf.replay.reverb_tables")


_BACKENDS: Dict[str, Callable[[], Type[TaskTables]]] = {
    "in_process": lambda: InProcessTaskTables,
    "reverb": lambda: _reverb_module().ReverbTaskTables,
}


@gin.configurable
def make_task_tables(backend: str = "in_process", **kwargs) -> TaskTables:
  """Builds the per-task tables of the chosen backend.

  Args:
    backend: 'in_process' (default; numpy, opens no port) or 'reverb' (a Reverb server:
      see `ReverbTaskTables` for its network exposure).
    **kwargs: the backend's constructor arguments (`TaskTables` ones, plus `address` and
      `checkpoint_dir` for Reverb).

  Raises:
    ValueError: for an unknown backend, listing the valid names.
  """
  if backend not in _BACKENDS:
    raise ValueError(f"unknown replay backend {backend!r}; valid: {sorted(_BACKENDS)}")
  return _BACKENDS[backend]()(**kwargs)


def __getattr__(name: str):
  if name in ("ReverbTaskTables", "make_reverb_tables"):
    return getattr(_reverb_module(), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
