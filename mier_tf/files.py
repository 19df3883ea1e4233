"""Files a kill cannot leave half-written: the one home of the project's atomic writes.

A file is written whole to a temporary name beside it, flushed to disk, then renamed over
the target (`os.replace` is atomic), and the folder is flushed too: after a kill, or a
machine crash, the path holds the old contents or the new ones, never a mix.
"""
import json
import os
from typing import Union

from mier_tf.errors import CheckpointError


def fsync_path(path: str) -> None:
  """Flushes a file's or a folder's entry to disk."""
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def atomic_write(path: str, data: Union[str, bytes]) -> str:
  """Writes `data` (text or bytes) to `path` atomically; returns path."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  fsync_path(directory)
  return path


def atomic_write_json(path: str, value) -> str:
  """`atomic_write` of `value` as indented JSON (keys sorted)."""
  return atomic_write(path, json.dumps(value, indent=1, sort_keys=True))


def read_json(path: str):
  """The JSON value in `path`; CheckpointError naming the file if it is unreadable."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f"{path}: missing or corrupt ({e})") from e
