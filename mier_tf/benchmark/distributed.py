"""Stage "distributed collection": env steps/s of 1, 2 and 4 collector processes on a Reverb
server against collection in one process, on the quickstart config (cheetah_vel_hard).

Both sides do the same work, Algorithm 1's data step (`MetaTrainingRun.collect_epoch`: prior
context data, context adaptation, adapted-context data, into the replay tables), with the
same freshly built networks:

* single process: `collect_epoch` on 5 random training tasks at a time (in-process tables);
* distributed: `scripts/launch.py --role=server`, the weights pushed once by this process
  (in place of a learner), N `--role=collector` processes. The rate limiter's slack is
  raised so that collectors never wait for a learner: this measures collection alone. The
  rate is read from the collectors' status files after their initial exploration: the
  environment steps of the rounds they finished inside the window, over the window.

On a 2-core machine the cores are the limit: one collector uses about one core, so 2
collectors can at most double the rate and 4 share the same 2 cores.
"""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, Iterator, List, Sequence

import gin

from mier_tf import cli
from mier_tf.benchmark.harness import Row, Sizes, make_row, stage

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_LAUNCH = os.path.join(_REPO, "scripts", "launch.py")


def _config(sizes: Sizes) -> List[str]:
  if sizes.quick:  # 2 training tasks, 40-step rounds: the shape of the output only
    return ["--gin_file=gin/smoke.gin",
            "--gin_bindings=MetaTrainingRun.family='cheetah_dir'"]
  return ["--gin_file=gin/quickstart.gin"]


def _parse(config: Sequence[str], extra: Sequence[str] = ()) -> None:
  # Every configurable of the config is registered before gin parses it.
  # pylint: disable=import-outside-toplevel,unused-import
  from mier_tf.distributed import collector, learner, server
  from mier_tf.train import job
  # pylint: enable=import-outside-toplevel,unused-import
  gin.clear_config()
  gin.add_config_file_search_path(cli.REPO_GIN_DIR)
  files = [os.path.join(_REPO, c.split("=", 1)[1]) for c in config if c.startswith("--gin_file")]
  bindings = [c.split("=", 1)[1] for c in config if c.startswith("--gin_bindings")]
  gin.parse_config_files_and_bindings(files, bindings + list(extra), finalize_config=False)


def _single_process_rate(config: Sequence[str], seconds: float, root: str) -> float:
  from mier_tf.train import meta_train  # pylint: disable=import-outside-toplevel
  _parse(config, ["make_task_tables.backend='in_process'"])
  run = meta_train.MetaTrainingRun(os.path.join(root, "single"))
  num_tasks = len(run.family.train_tasks)
  per_round = min(num_tasks, run.tasks_per_epoch)
  steps = per_round * (run.prior_steps + run.posterior_steps)
  run.collect_epoch(run.rng.choice(num_tasks, per_round, replace=False))  # warm-up, traces
  done, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    run.collect_epoch(run.rng.choice(num_tasks, per_round, replace=False))
    done += steps
  rate = done / (time.perf_counter() - start)
  run.collector.close()
  return rate


@contextlib.contextmanager
def _processes() -> Iterator[list]:
  procs: list = []
  try:
    yield procs
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
      try:
        proc.wait(timeout=20)
      except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _status(root: str, index: int) -> Dict[str, object]:
  from mier_tf.distributed import collector  # pylint: disable=import-outside-toplevel
  from mier_tf.distributed import launch  # pylint: disable=import-outside-toplevel
  return collector.read_status(launch.collector_dir(root, index))


def _distributed_rate(config: Sequence[str], num_collectors: int, seconds: float,
                      root: str) -> float:
  # pylint: disable=import-outside-toplevel
  from tf_agents.experimental.distributed import reverb_variable_container
  from mier_tf.distributed import common, launch
  from mier_tf.train import meta_train
  # pylint: enable=import-outside-toplevel
  root = os.path.join(root, f"collectors_{num_collectors}")
  config = list(config) + ["--gin_bindings=RateLimit.slack_train_steps=1e9"]
  port = launch.free_port()
  address = f"localhost:{port}"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  base = [sys.executable, _LAUNCH] + config
  os.makedirs(root, exist_ok=True)
  with _processes() as procs, open(os.path.join(root, "roles.log"), "w") as log:
    start = lambda argv: procs.append(subprocess.Popen(
        base + argv, cwd=_REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
    start(["--role=server", f"--root_dir={root}", f"--port={port}"])
    common.wait_for_server(address, 300, "the benchmark's server")
    _parse(config)
    common.bind_external_tables(address)
    run = meta_train.MetaTrainingRun(os.path.join(root, "weights"))
    reverb_variable_container.ReverbVariableContainer(
        address, table_names=(common.VARIABLES_TABLE,)).push(
            common.published_variables(run), table=common.VARIABLES_TABLE)
    for i in range(num_collectors):
      start(["--role=collector", f"--root_dir={launch.collector_dir(root, i)}",
             f"--server={address}", f"--collector_index={i}",
             f"--collectors={num_collectors}"])
    deadline = time.monotonic() + 600
    while not all(_status(root, i).get("rounds", 0) >= 1 for i in range(num_collectors)):
      if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
        raise RuntimeError(f"the collectors did not finish a round: see {log.name}")
      time.sleep(0.5)
    first = [_status(root, i) for i in range(num_collectors)]
    time.sleep(seconds)
    last = [_status(root, i) for i in range(num_collectors)]
  # Each collector's rate over the rounds it finished in the window, summed.
  return float(sum((b["env_steps"] - a["env_steps"]) / max(1e-9, b["time"] - a["time"])
                   for a, b in zip(first, last) if b["rounds"] > a["rounds"]))


@stage("distributed collection")
def bench_distributed(sizes: Sizes) -> List[Row]:
  """Env steps/s of N collector processes against one process (see the module docstring)."""
  config = _config(sizes)
  seconds = sizes.pick(90.0, 5.0)
  root = tempfile.mkdtemp(prefix="mier-bench-distributed-")
  try:
    single = _single_process_rate(config, seconds, root)
    rows = []
    for n in sizes.pick((1, 2, 4), (1,)):
      rate = _distributed_rate(config, n, seconds, root)
      rows.append(make_row(
          f"distributed collection, {n} collector{'s' if n > 1 else ''}", rate, single,
          detail=(f"env steps/s of {n} collector processes on a Reverb server (collection "
                  f"alone: no learner, weights pushed once) / one process's collect_epoch "
                  f"({single:.0f} steps/s), {seconds:g} s windows, {config[0][11:]}; "
                  f"{os.cpu_count()} cores")))
    return rows
  finally:
    gin.clear_config()
    shutil.rmtree(root, ignore_errors=True)
