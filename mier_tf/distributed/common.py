"""What the roles of a distributed run share: the server's tables, the rate limiter's ratio,
the variables the learner publishes, and bounded waits for the server.

The server holds, besides the per-task 'adapt' and 'full' tables of `make_reverb_tables`:

  variables  the learner's latest weights (max_size 1; TF-Agents' ReverbVariableContainer
             pushes and pulls them): the version (the learner's train_step), the SAC actor
             network and the dynamics model (weights, normaliser and prior context phi);
  rate       rate tickets. A collector inserts one per task round it collected (Algorithm
             1's prior-context and adapted-context data of one task: prior_steps +
             posterior_steps environment steps); the learner samples one per training step.
             Its `SampleToInsertRatio` rate limiter blocks the learner when it would train
             more than the tickets paid for, and blocks collectors when they run more than
             `slack_train_steps` training steps ahead of the learner.

`samples_per_insert` is the single-process run's own ratio: `train_steps_per_epoch`
training steps per `tasks_per_epoch` task rounds, so a distributed run learns from the
same data ratio (see `RateLimit`). Initial exploration is not ticketed: the learner waits
for all of it before its first step, as the single-process run does.
"""
import logging
import math
import time
from typing import Dict, List, Optional

import gin
import numpy as np
import reverb
import tensorflow as tf

VARIABLES_TABLE = "variables"  # tf_agents.experimental.distributed's DEFAULT_TABLE
RATE_TABLE = "rate"
_RATE_TABLE_SIZE = 1000  # tickets kept (FIFO): only their counts matter to the limiter


@gin.configurable
class RateLimit:
  """The ratio of training steps to environment steps, held by the 'rate' table.

  Args:
    train_steps_per_env_step: None (default): the single-process ratio of the config,
      train_steps_per_epoch / (tasks_per_epoch * (prior_steps + posterior_steps)).
    slack_train_steps: how many training steps the collectors may run ahead of the
      learner, and the learner (briefly) behind them: the limiter's error buffer. None: one
      epoch of training steps.
  """

  def __init__(self, train_steps_per_env_step: Optional[float] = None,
               slack_train_steps: Optional[float] = None):
    for name, value in (("RateLimit.train_steps_per_env_step", train_steps_per_env_step),
                        ("RateLimit.slack_train_steps", slack_train_steps)):
      if value is not None and not value > 0:
        raise ValueError(f"{name} must be > 0 (or None); got {value!r}")
    self.train_steps_per_env_step = train_steps_per_env_step
    self.slack_train_steps = slack_train_steps

  def settings(self, run) -> Dict[str, float]:
    """samples_per_insert (training steps per ticket), the error range, and the ratio."""
    steps_per_round = run.prior_steps + run.posterior_steps
    ratio = (self.train_steps_per_env_step if self.train_steps_per_env_step is not None else
             run.train_steps_per_epoch / (run.tasks_per_epoch * steps_per_round))
    per_ticket = ratio * steps_per_round
    slack = (self.slack_train_steps if self.slack_train_steps is not None else
             run.train_steps_per_epoch)
    slack = max(float(slack), 2.0 * max(1.0, per_ticket))  # Reverb's least workable buffer
    return {"samples_per_insert": per_ticket, "min_diff": 0.0, "max_diff": slack,
            "train_steps_per_env_step": ratio}


def published_variables(run) -> dict:
  """The nest the learner pushes and collectors pull (the train_step is its version)."""
  actor_network = run.agent.policy._actor_network  # pylint: disable=protected-access
  return {"version": run.train_step, "policy": list(actor_network.variables),
          "model": list(run.model.variables)}


def server_tables(run) -> List[reverb.Table]:
  """Every table of the server of `run`'s config: per-task data, variables, rate."""
  from mier_tf.replay import reverb_tables  # pylint: disable=import-outside-toplevel
  tables = reverb_tables.make_reverb_tables(
      run.tables.num_tasks, run.tables.observation_dim, run.tables.action_dim,
      run.tables.capacities["adapt"], run.tables.capacities["full"])
  signature = tf.nest.map_structure(lambda v: tf.TensorSpec(v.shape, v.dtype),
                                    published_variables(run))
  tables.append(reverb.Table(
      name=VARIABLES_TABLE, sampler=reverb.selectors.Uniform(),
      remover=reverb.selectors.Fifo(), max_size=1,
      rate_limiter=reverb.rate_limiters.MinSize(1), signature=signature))
  rate = RateLimit().settings(run)
  tables.append(reverb.Table(
      name=RATE_TABLE, sampler=reverb.selectors.Uniform(), remover=reverb.selectors.Fifo(),
      max_size=_RATE_TABLE_SIZE,
      rate_limiter=reverb.rate_limiters.SampleToInsertRatio(
          rate["samples_per_insert"], 1, (rate["min_diff"], rate["max_diff"])),
      signature=tf.TensorSpec([2], tf.int64)))  # (collector index, weights version)
  return tables


def wait_for_server(address: str, timeout_s: float, what: str = "") -> reverb.Client:
  """A client of the server at `address` once it answers.

  Raises:
    ConnectionError: in one line, if it did not answer within `timeout_s` seconds.
  """
  client = reverb.Client(address)
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      client.server_info(timeout=max(1, int(min(5, timeout_s))))
      return client
    except Exception as e:  # pylint: disable=broad-except  (Deadline, Unavailable...)
      if time.monotonic() >= deadline:
        raise ConnectionError(
            f"Reverb server at {address} did not answer within {timeout_s:g} s"
            f"{' (' + what + ')' if what else ''}; is it running (scripts/launch.py "
            "--role=server) and reachable?") from e
      time.sleep(0.5)


def table_info(client: reverb.Client, name: str, timeout_s: float):
  return client.server_info(timeout=max(1, int(timeout_s)))[name]


def bind_external_tables(address: str) -> None:
  """Makes the run's replay tables those of the server at `address` (gin bindings)."""
  gin.bind_parameter("make_task_tables.backend", "reverb")
  gin.bind_parameter("make_task_tables.address", address)
  gin.bind_parameter("make_task_tables.keep_external_on_restore", True)


def ceil_div(a: int, b: int) -> int:
  return int(math.ceil(a / b))


def share(num_tasks: int, index: int, count: int) -> np.ndarray:
  """Collector `index` of `count`'s share of the training tasks: every count-th one."""
  return np.arange(index, num_tasks, count)


def log_every(seconds: float):
  """A function that logs its message at most once per `seconds`."""
  last = [-math.inf]

  def log(message, *args):
    if time.monotonic() - last[0] >= seconds:
      last[0] = time.monotonic()
      logging.info(message, *args)
  return log
