"""Every test starts from the same TensorFlow and numpy seeds, so runs repeat exactly."""
import numpy as np
import pytest
import tensorflow as tf


@pytest.fixture(autouse=True)
def _fixed_seeds():
  tf.random.set_seed(0)
  np.random.seed(0)
