"""The learner of a distributed run: `MetaTrainingRun`'s training on a Reverb server's data.

It is `scripts/train.py`'s job (`job.train_and_adapt`: the run directory's lock and
identity, results, Algorithm 2 on the test tasks, the finished record) with meta-training
that does not collect. Per epoch, as `meta_train.meta_train` does after its collection:
refresh the model's normaliser, `train_steps_per_epoch` training steps, evaluate, export,
checkpoint. Before each training step it takes one rate ticket from the server (`common`),
so it trains on the same ratio of training steps to environment steps as a single-process
run; every `publish_every` steps (and at its start) it pushes its weights to the server's
variables table with TF-Agents' `ReverbVariableContainer`.

Its checkpoints are the run's (`RunCheckpointer`); each also has the server write a Reverb
checkpoint. A restarted learner restores its own checkpoint and keeps the server's contents
(`ReverbTaskTables(keep_external_on_restore=True)`): the server either kept running or
restored its own checkpoint, so it holds at least what the learner's checkpoint recorded.
The run's `env_steps` are the environment steps the server's full tables have received.
"""
import inspect
import logging
import os
import time

import gin
import reverb
import tensorflow as tf
import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from tf_agents.experimental.distributed import reverb_variable_container

from mier_tf.distributed import common

_MAX_RECONNECTS = 5  # per step that talks to the server
# What a step raises when the server goes away under it (Reverb's TF ops report a dropped
# stream as InternalError or Cancelled, its Python client as ConnectionError via the tables).
_LOST_SERVER = (ConnectionError, tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                tf.errors.InternalError, tf.errors.CancelledError, tf.errors.AbortedError,
                reverb.errors.ReverbError)
from mier_tf.train import job
from mier_tf.train import meta_train as meta_train_lib


def _meta_train_setting(name: str):
  """A `meta_train` binding of the config (the learner follows the same budget)."""
  try:
    return gin.query_parameter(f"meta_train.{name}")
  except ValueError:
    return inspect.signature(meta_train_lib.meta_train).parameters[name].default


class _Tickets:
  """Rate tickets, one per training step, from the server's rate table."""

  def __init__(self, server: str, wait_s: float, connect_timeout_s: float):
    self._server, self._wait_s, self._connect_timeout_s = server, wait_s, connect_timeout_s
    self._iterator = None
    self.versions = []  # the weight versions the paid-for data was collected with

  def _open(self):
    import reverb  # pylint: disable=import-outside-toplevel
    dataset = reverb.TrajectoryDataset(
        self._server, common.RATE_TABLE, dtypes=tf.int64, shapes=tf.TensorShape([2]),
        max_in_flight_samples_per_worker=1, num_workers_per_iterator=1,
        rate_limiter_timeout_ms=int(1000 * self._wait_s))
    self._iterator = iter(dataset)

  def take(self, n: int) -> None:
    taken, waited = 0, 0.0
    while taken < n:
      if self._iterator is None:
        self._open()
      start = time.monotonic()
      try:
        ticket = next(self._iterator).data.numpy()
      except StopIteration:  # no ticket within wait_s: the collectors are behind
        waited += time.monotonic() - start
        logging.info("Learner waiting for collectors: no rate ticket for %.0f s", waited)
        self._iterator = None
        continue
      except tf.errors.OpError as e:
        logging.warning("Learner lost the server (%s); waiting for it", type(e).__name__)
        common.wait_for_server(self._server, self._connect_timeout_s, "the learner")
        self._iterator = None
        continue
      self.versions.append(int(ticket[1]))
      taken += 1


class _Server:
  """Runs the learner's steps that talk to the server again after the server came back
  (`launch.py` restarts a server that died; it restores its last checkpoint)."""

  def __init__(self, address: str, run, connect_timeout_s: float):
    self._address, self._run, self._connect_timeout_s = address, run, connect_timeout_s

  def __call__(self, what: str, fn):
    for attempt in range(_MAX_RECONNECTS + 1):
      try:
        return fn()
      except _LOST_SERVER as e:
        if attempt == _MAX_RECONNECTS:
          raise
        logging.warning("Learner lost the server during %s (%s: %s); waiting for it", what,
                        type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        common.wait_for_server(self._address, self._connect_timeout_s, "the learner")
        self._run.tables.reset_connection()
    raise AssertionError("unreachable")


def _wait_for_initial_exploration(run, log) -> None:
  """Until every training task's adapt table received its initial exploration."""
  needed = run.num_initial_rounds * run.prior_steps
  while True:
    added = run.tables.num_added()[:, 0]
    if (added >= max(needed, 1)).all():
      return
    log("Learner waiting for initial exploration: %d of %d tasks done", int(
        (added >= max(needed, 1)).sum()), len(added))
    time.sleep(1.0)


def make_meta_train_fn(server: str, publish_every: int, ticket_wait_s: float,
                       connect_timeout_s: float):
  """A `meta_train_fn` for `job.train_and_adapt` that trains on the server's data."""

  def meta_train(root_dir: str, on_start=None) -> meta_train_lib.MetaTrainingRun:
    num_epochs = _meta_train_setting("num_epochs")
    eval_interval = _meta_train_setting("eval_interval")
    checkpoint_interval = _meta_train_setting("checkpoint_interval")
    max_env_steps = _meta_train_setting("max_env_steps")
    export_at_end = _meta_train_setting("export_at_end")
    export_interval = _meta_train_setting("export_interval")
    run, resumed = meta_train_lib.open_run(root_dir, on_start)
    container = reverb_variable_container.ReverbVariableContainer(
        server, table_names=(common.VARIABLES_TABLE,))
    variables = common.published_variables(run)
    with_server = _Server(server, run, connect_timeout_s)
    publish = lambda: with_server("publishing the weights", lambda: container.push(
        variables, table=common.VARIABLES_TABLE))
    publish()  # the collectors start from these weights
    rate = common.RateLimit().settings(run)
    logging.info("Learner on %s: %.4g training steps per environment step, weights "
                 "published every %d steps", server, rate["train_steps_per_env_step"],
                 publish_every)
    with_server("waiting for initial exploration",
                lambda: _wait_for_initial_exploration(run, common.log_every(30.0)))
    tickets = _Tickets(server, ticket_wait_s, connect_timeout_s)
    update_env_steps = lambda: with_server("reading the table sizes", lambda: run.env_steps.assign(
        int(run.tables.num_added()[:, 1].sum())))
    checkpoint = lambda: with_server("checkpointing", lambda: run.checkpointer.save(
        run.rng, run.host_state()))
    update_env_steps()
    if not resumed:
      checkpoint()
    run.epochs_run = 0
    spent = lambda: max_env_steps is not None and int(run.env_steps.numpy()) >= max_env_steps
    with logging_redirect_tqdm(), tqdm.tqdm(
        total=num_epochs * run.train_steps_per_epoch,
        initial=int(run.epoch.numpy()) * run.train_steps_per_epoch,
        desc=f"learner {run.family.name}", unit="step", dynamic_ncols=True) as bar:
      while int(run.epoch.numpy()) < num_epochs and not spent():
        with_server("refreshing the normaliser", run.refresh_normalizer)
        left = run.train_steps_per_epoch
        while left:
          chunk = min(left, publish_every)
          tickets.take(chunk)
          update_env_steps()
          end = int(run.train_step.numpy()) + chunk  # a retry trains only the steps left
          with_server("training", lambda: run.train_epoch(  # pylint: disable=cell-var-from-loop
              bar, num_steps=end - int(run.train_step.numpy())))
          publish()
          left -= chunk
        run.epoch.assign_add(1)
        run.epochs_run += 1
        epoch = int(run.epoch.numpy())
        recent = tickets.versions[-run.train_steps_per_epoch:]
        logging.info("Epoch %d: %d env steps on the server; data of the last %d steps "
                     "collected with weights %.1f training steps old on average", epoch,
                     int(run.env_steps.numpy()), len(recent),
                     int(run.train_step.numpy()) - sum(recent) / max(1, len(recent)))
        last = epoch == num_epochs or spent()
        if epoch % eval_interval == 0 or last:
          with_server("evaluating", run.evaluate)
          bar.set_postfix(train_return=f"{run.last_returns['train']:.1f}",
                          test_return=f"{run.last_returns['test']:.1f}")
        if export_interval is not None and epoch % export_interval == 0:
          meta_train_lib._export(run, os.path.join(  # pylint: disable=protected-access
              root_dir, "export", f"step_{int(run.env_steps.numpy())}"))
        if epoch % checkpoint_interval == 0 or last:
          checkpoint()
    meta_train_lib.finish_run(run, export_at_end)
    return run

  return meta_train


@gin.configurable
def learn(root_dir: str, server: str, publish_every: int = 20, ticket_wait_s: float = 30.0,
          connect_timeout_s: float = 60.0) -> str:
  """Runs the learner to the end of the run's budget; returns the job's summary.

  Args:
    root_dir: the run's directory (as scripts/train.py's).
    server: the replay server's address, host:port.
    publish_every: training steps between two pushes of the weights.
    ticket_wait_s: how long one wait for a rate ticket lasts before it is logged (the
      learner then waits again: collectors may be slow or restarting).
    connect_timeout_s: how long to wait for the server, at the start and after it went
      away, before stopping with a ConnectionError.
  """
  if int(publish_every) != publish_every or publish_every < 1:
    raise ValueError(f"learn.publish_every must be an integer >= 1; got {publish_every!r}")
  common.wait_for_server(server, connect_timeout_s, "the learner")
  common.bind_external_tables(server)
  return job.train_and_adapt(root_dir, meta_train_fn=make_meta_train_fn(
      server, int(publish_every), ticket_wait_s, connect_timeout_s))
