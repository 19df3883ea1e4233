"""A MetaTrainingRun with real transitions in its tables (the epoch and training step stages)."""
import os
from typing import Dict, List

import numpy as np

from mier_tf import cli
from mier_tf.benchmark.harness import Sizes
from mier_tf.train import job  # noqa: F401  pylint: disable=unused-import  (its gin configurables)
from mier_tf.train import meta_train


def fill_tables_from(run, data: List[Dict[str, np.ndarray]]) -> None:
  """Puts real collected transitions into every training task's tables (cycling the data)."""
  for task in range(len(run.family.train_tasks)):
    run.tables.add(task, ("adapt", "full"), data[task % len(data)])


def run_with_real_tables(sizes: Sizes, config: str, root: str, bindings: List[str]):
  """A MetaTrainingRun built under gin from gin/<config>.gin, every table filled with real
  transitions (one short prior-context collection, cycled) and the normaliser set.

  Returns (run, the collected per-task transitions).
  """
  cli.parse_gin([os.path.join(cli.REPO_GIN_DIR, f"{config}.gin")], bindings, root_dir=root)
  run = meta_train.MetaTrainingRun(root_dir=root)
  data, _ = run.collector.collect(run.family.train_tasks[:run.collect_slots],
                                  run.prior_contexts(run.collect_slots),
                                  sizes.pick(200, 10), run.explore_actor)
  fill_tables_from(run, data)
  run.refresh_normalizer()
  return run, data
