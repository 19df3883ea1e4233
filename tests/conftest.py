"""Every test starts from the same TensorFlow and numpy seeds, so runs repeat exactly."""
import numpy as np
import pytest
import tensorflow as tf


@pytest.fixture(autouse=True)
def _fixed_seeds():
  tf.random.set_seed(0)
  np.random.seed(0)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
  """`make test` runs the suite on two pytest-xdist workers (pytest.ini: -n 2 --dist
  loadgroup): the tests sharing a module-scoped run stay on one worker, so it is trained
  once and they read it in file order."""
  for item in items:
    if "run_dir" in item.fixturenames:
      item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}:run_dir"))
