"""mier_tf: MIER (Model Identification and Experience Relabeling) in TensorFlow 2.

Mendonca, Geng, Finn, Levine (2020), "Meta-Reinforcement Learning Robust to
Distributional Shift via Model Identification and Experience Relabeling".
"""
import os as _os

# TensorFlow prints CUDA factory lines on CPU-only machines; they are not errors.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# MuJoCo picks its OpenGL backend when imported: EGL renders without a display (software
# rendering where there is no GPU), which is what videos on a server need. A user's own
# MUJOCO_GL wins.
_os.environ.setdefault("MUJOCO_GL", "egl")
# PyOpenGL (imported with MuJoCo's EGL backend) logs "No OpenGL_accelerate module loaded" at
# INFO, which absl's handler shows: an optional speed-up we do not need.
import logging as _logging  # pylint: disable=g-import-not-at-top,wrong-import-position
_logging.getLogger("OpenGL.acceleratesupport").setLevel(_logging.WARNING)

__version__ = "0.1.0"


def _import_gym_quietly() -> None:
  """tf_agents imports the unmaintained `gym`, which prints a deprecation notice on import.

  We use gymnasium; importing gym once here with stderr silenced keeps the notice away.
  """
  import contextlib
  import io
  try:
    with contextlib.redirect_stderr(io.StringIO()):
      import gym  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
  except ImportError:
    pass


_import_gym_quietly()

# AutoGraph compiles tf_agents code that compares with `is ()`; Python 3.8+ warns about it.
import warnings as _warnings  # pylint: disable=g-import-not-at-top,wrong-import-position
_warnings.filterwarnings("ignore", category=SyntaxWarning)
