"""The job `scripts/train.py` runs: meta-training, then (if configured) Algorithm 2 per test task."""
import logging
import os

import gin
import tensorflow as tf

from mier_tf import report_text
from mier_tf import results as results_lib
from mier_tf import summaries
from mier_tf import tags
from mier_tf.train import adapt_ood
from mier_tf.train import meta_train as meta_train_lib
from mier_tf.train import run_dir


def write_operative_config(root_dir: str) -> str:
  """Saves the gin config actually used to ROOT/operative_config.gin; returns its text."""
  os.makedirs(root_dir, exist_ok=True)
  # Every binding parsed (also those of steps not run yet, such as adaptation), then the
  # values every configurable that ran actually used, defaults included.
  config = ("# All bindings parsed.\n" + gin.config_str() +
            "\n# Operative values (defaults included).\n" + gin.operative_config_str())
  run_dir.atomic_write(os.path.join(root_dir, "operative_config.gin"), config)
  return config


# Configurables whose bindings are a run's hyperparameters in TensorBoard's HParams tab.
HPARAM_CONFIGURABLES = ("MetaTrainingRun", "meta_train", "ContextualDynamicsModel",
                        "MetaTrainer", "create_sac_agent", "adapt_ood")


def hparams_from_gin() -> dict:
  """Every binding of the configs and flags to HPARAM_CONFIGURABLES ("Name.param": value)."""
  return {f"{name}.{param}": value for name in HPARAM_CONFIGURABLES
          for param, value in sorted(gin.get_bindings(name).items())}


def show_config(run, config: str, adapting: bool = False) -> None:
  """The config in TensorBoard, once per run directory: as text (train/, step 0) and as
  hyperparameters (HParams tab, written in ROOT); and the Custom Scalars layout (eval/,
  step 0)."""
  summaries.write_hparams(run.root_dir, hparams_from_gin())
  if not summaries.has_tag(os.path.join(run.root_dir, "eval"), tags.CUSTOM_SCALARS_LAYOUT):
    with run.eval_writer.as_default():
      summaries.write_layout([run.family.describe_task(t) for t in run.family.test_tasks])
    run.eval_writer.flush()
    # TensorBoard colours runs in the order they start: started here, before train/, MIER-wR
    # (eval/), MIER (eval/mier/) and standing still (eval/standing_still/) take its first
    # colours after ROOT's (blue, red, cyan).
    if adapting:
      tf.summary.create_file_writer(os.path.join(run.root_dir, tags.MIER_WRITER)).close()
    run.standing_still_writer.flush()
  if summaries.has_tag(os.path.join(run.root_dir, "train"), tags.CONFIG):
    return  # a resumed run: its config is the same (run_config.gin) and already shown
  with run.train_writer.as_default(step=0):
    lines = [f"    {line}" for line in config.splitlines()]  # markdown code block
    tf.summary.text(tags.CONFIG, "\n".join(lines))
  run.train_writer.flush()


@gin.configurable
def train_and_adapt(root_dir: str, adapt_test_tasks: bool = False,
                    meta_train_fn=None) -> str:
  """Meta-trains on the configured family, then optionally runs experience relabeling.

  Holds the root_dir's lock throughout; refuses a root_dir of another configuration before
  writing anything; resumes an interrupted job where it stopped (meta-training from its
  checkpoint, relabeling at the first test task without a MIER result); and on a job that
  already finished with this configuration says so and changes nothing.

  Args:
    root_dir: the run's output directory.
    adapt_test_tasks: after meta-training, run out-of-distribution adaptation (MIER,
      Algorithm 2) on every test task and add its returns to eval/results.json.
    meta_train_fn: what meta-trains, called as `meta_train_fn(root_dir, on_start=...)` and
      returning the run (default `meta_train.meta_train`; the distributed learner passes its
      own, which trains on a Reverb server's data instead of collecting).

  Returns:
    The run's summary (`summary`), which the script prints.
  """
  config = gin.config_str()
  results_file = os.path.join(root_dir, "eval", "results.json")
  with run_dir.RunDirectoryLock(root_dir):
    run_dir.check_identity(root_dir, config)
    if run_dir.finished(root_dir, config) is not None:
      logging.info("%s already finished with this configuration; nothing to do. Results in %s",
                   root_dir, results_file)
      return summary(root_dir)
    def on_start(run) -> None:  # the config is valid: the run was built from it
      run_dir.record_identity(run.root_dir, config)
      show_config(run, write_operative_config(run.root_dir), adapt_test_tasks)

    run = (meta_train_fn or meta_train_lib.meta_train)(root_dir, on_start=on_start)
    done = results_lib.read_results(root_dir)["test_tasks"]
    if run.epochs_run or not any("mier_wr" in entry for entry in done.values()):
      meta_train_lib.write_results(run)
    if adapt_test_tasks:
      adapt_ood.adapt_all_test_tasks(root_dir, skip_done=True)
    write_operative_config(root_dir)
    run_dir.mark_finished(root_dir, config, {"epoch": int(run.epoch.numpy()),
                                             "env_steps": int(run.env_steps.numpy())})
  logging.info("Results in %s", results_file)
  return summary(root_dir)


def summary(root_dir: str, max_tasks: int = 12) -> str:
  """A short text of what the run produced, from eval/results.json (for the scripts' end):
  what was measured and which way is better (`mier_tf/report_text.py`)."""
  return report_text.run_summary(root_dir, results_lib.read_results(root_dir), max_tasks)
