"""Every test starts from the same TensorFlow and numpy seeds, so runs repeat exactly."""
import fcntl
import os
import pathlib
import shutil
import subprocess
import sys

# Three xdist workers share two cores (pytest.ini), and most tests start TensorFlow processes
# of their own: one intra-op thread each instead of a pool per process as wide as the machine
# (set before TensorFlow is imported here; the subprocesses inherit it). `make test` beside
# the campaign on the 2-core AMD EPYC: 9 min 41 s against 10 min 39 s, 73 CPU-seconds less.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _fixed_seeds():
  tf.random.set_seed(0)
  np.random.seed(0)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
  """`make test` runs the suite on three pytest-xdist workers (pytest.ini: -n 3 --dist
  loadgroup): the tests sharing a module-scoped run stay on one worker, so it is trained
  once and they read it in file order."""
  for item in items:
    if "run_dir" in item.fixturenames:
      item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}:run_dir"))
  # The longest tests start first: one of them started last keeps a worker busy alone at the
  # end (the kill-window test alone takes about 3 minutes). A stable sort keeps the rest in
  # file order.
  items.sort(key=lambda item: item.get_closest_marker("long") is None)


def pytest_configure(config):
  config.addinivalue_line("markers", "long: one of the suite's longest tests; starts first")



@pytest.fixture(scope="session")
def smoke_run_source(tmp_path_factory) -> pathlib.Path:
  """One plain smoke run (`scripts/train.py --gin_file=gin/smoke.gin`), trained once per test
  session however many modules and xdist workers ask for it (a file lock in the directory the
  workers' temporary directories share). Read-only: a module copies it (`copy_run`)."""
  base = tmp_path_factory.getbasetemp()
  shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
  run = shared / "smoke_run"
  with open(shared / "smoke_run.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (run / "finished.json").exists():
      partial = shared / "smoke_run.partial"
      shutil.rmtree(partial, ignore_errors=True)
      env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
      proc = subprocess.run([sys.executable, "scripts/train.py", "--gin_file=gin/smoke.gin",
                             f"--root_dir={partial}"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=900)
      assert proc.returncode == 0, proc.stderr[-3000:]
      partial.rename(run)
  return run


def copy_run(source: pathlib.Path, dest: pathlib.Path) -> str:
  """A private copy of a run directory (runs record no absolute paths)."""
  shutil.copytree(source, dest)
  return str(dest)
