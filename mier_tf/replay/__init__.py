"""Per-task replay tables ('adapt' and 'full' per task) behind one interface.

`make_task_tables(backend=...)` builds them: 'in_process' (default, numpy, opens no port)
or 'reverb' (a Reverb server, for distributed collection; trusted networks only).
`ReverbTaskTables` is imported on first use, so the default backend never loads Reverb.
"""
from mier_tf.replay.task_tables import (FIELDS, CheckpointError, InProcessTaskTables,
                                        TaskTables, latest_checkpoint, make_task_tables)

__all__ = ["FIELDS", "CheckpointError", "InProcessTaskTables", "ReverbTaskTables",
           "TaskTables", "latest_checkpoint", "make_reverb_tables", "make_task_tables"]


def __getattr__(name: str):
  if name in ("ReverbTaskTables", "make_reverb_tables"):
    from mier_tf.replay import reverb_tables  # pylint: disable=import-outside-toplevel
    return getattr(reverb_tables, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
