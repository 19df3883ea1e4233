"""Task families over gymnasium MuJoCo robots and the tf_agents adapter."""
from typing import Any

from mier_tf.envs.families import TaskFamily, get_task_family, task_family_names

__all__ = ["GymnasiumPyEnvironment", "TaskFamily", "get_task_family", "task_family_names"]


def __getattr__(name: str) -> Any:
  # The adapter imports tf_agents (and TensorFlow, seconds to load): only on first use,
  # so that processes which only step the robots stay light.
  if name == "GymnasiumPyEnvironment":
    from mier_tf.envs.tf_env import GymnasiumPyEnvironment  # pylint: disable=g-import-not-at-top
    return GymnasiumPyEnvironment
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
