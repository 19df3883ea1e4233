"""The job `scripts/train.py` runs: meta-training, then (if configured) Algorithm 2 per test task."""
import logging
import os

import gin
import tensorflow as tf

from mier_tf.train import adapt_ood
from mier_tf.train import meta_train as meta_train_lib


def write_operative_config(root_dir: str) -> None:
  """Saves the gin config actually used, and shows it in TensorBoard as text."""
  os.makedirs(root_dir, exist_ok=True)
  # Every binding parsed (also those of steps not run yet, such as adaptation), then the
  # values every configurable that ran actually used, defaults included.
  config = ("# All bindings parsed.\n" + gin.config_str() +
            "\n# Operative values (defaults included).\n" + gin.operative_config_str())
  path = os.path.join(root_dir, "operative_config.gin")
  with open(path + ".tmp", "w") as f:
    f.write(config)
  os.replace(path + ".tmp", path)
  writer = tf.summary.create_file_writer(os.path.join(root_dir, "train"))
  with writer.as_default(step=0):
    lines = [f"    {line}" for line in config.splitlines()]  # markdown code block
    tf.summary.text("Config/operative_gin", "\n".join(lines))
  writer.flush()


@gin.configurable
def train_and_adapt(root_dir: str, adapt_test_tasks: bool = False) -> None:
  """Meta-trains on the configured family, then optionally runs experience relabeling.

  Args:
    root_dir: the run's output directory.
    adapt_test_tasks: after meta-training, run out-of-distribution adaptation (MIER,
      Algorithm 2) on every test task and add its returns to eval/results.json.
  """
  run = meta_train_lib.meta_train(root_dir, on_start=write_operative_config)
  results = meta_train_lib.write_results(run)
  if adapt_test_tasks:
    adapt_ood.adapt_all_test_tasks(root_dir)
  write_operative_config(root_dir)
  logging.info("Results in %s", os.path.join(root_dir, "eval", "results.json"))
  del results
