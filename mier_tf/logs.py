"""Keeping the scripts' log lines visible through TensorFlow's saving code."""
import contextlib
import logging
from typing import Iterator


@contextlib.contextmanager
def levels_kept() -> Iterator[None]:
  """Restores the Python loggers' levels after TensorFlow's checkpoint and SavedModel code.

  Saving sets absl's verbosity to FATAL and back, which leaves the root logger at absl's
  level: every INFO line after the first save (progress, results) would vanish.
  """
  loggers = [logging.getLogger(), logging.getLogger("absl"), logging.getLogger("tensorflow")]
  levels = [logger.level for logger in loggers]
  try:
    yield
  finally:
    for logger, level in zip(loggers, levels):
      logger.setLevel(level)
