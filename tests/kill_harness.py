"""Runs scripts/train.py and kills it (SIGKILL, no cleanup) at one chosen point.

    python tests/kill_harness.py WINDOW N [train.py flags...]

The process kills itself the N-th time (counting in this process) it reaches WINDOW, one of
the moments where a kill could leave a half-written run behind:

  replay_data        the replay tables' arrays are written, their manifest is not
  checkpoint_write   replay tables and host state are written, the TF checkpoint is not
  checkpoint_index   TF's checkpoint files are written, its `checkpoint` index is not
  export_model       the policy SavedModel is written, the model SavedModel is not
  relabeling         a test task's relabeling (Algorithm 2) is about to start
  results            eval/results.json is about to be written

Each window is a function the run calls; it is wrapped where it lives, so every caller
reaches the wrapper. Only tests use this file.
"""
import importlib
import os
import runpy
import signal
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# window: (module, attribute path, kill before the call or after it returns)
WINDOWS = {
    "replay_data": ("mier_tf.replay.in_process", "InProcessTaskTables._write_checkpoint",
                    "after"),
    "checkpoint_write": ("tensorflow.python.checkpoint.checkpoint_management",
                         "CheckpointManager.save", "before"),
    "checkpoint_index": ("tensorflow.python.checkpoint.checkpoint_management",
                         "update_checkpoint_state_internal", "before"),
    "export_model": ("mier_tf.train.export", "export_model", "before"),
    "relabeling": ("mier_tf.train.adapt_ood", "adapt_ood", "before"),
    "results": ("mier_tf.results", "write_results_file", "before"),
}


def arm(window: str, n: int) -> None:
  """Wraps the window's function so that its n-th call kills this process."""
  module_name, path, when = WINDOWS[window]
  owner = importlib.import_module(module_name)
  *parents, name = path.split(".")
  for parent in parents:
    owner = getattr(owner, parent)
  original = getattr(owner, name)
  calls = [0]

  def kill():
    sys.stderr.write(f"kill_harness: SIGKILL at {window} #{n}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)

  def wrapper(*args, **kwargs):
    calls[0] += 1
    if calls[0] == n and when == "before":
      kill()
    out = original(*args, **kwargs)
    if calls[0] == n and when == "after":
      kill()
    return out

  setattr(owner, name, wrapper)


def main() -> None:
  window, n, *flags = sys.argv[1:]
  sys.path.insert(0, REPO)
  arm(window, int(n))
  sys.argv = [os.path.join(REPO, "scripts", "train.py")] + flags
  runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
  main()
