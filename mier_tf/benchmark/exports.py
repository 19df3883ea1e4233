"""Stage "agent export": export/agent against the three exports it replaces (size, load, write)."""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Sequence

import gin

from mier_tf import cli
from mier_tf.benchmark.harness import Row, Sizes, at_most, make_row, stage
from mier_tf.train import export
from mier_tf.train import job  # noqa: F401  pylint: disable=unused-import  (its gin configurables)
from mier_tf.train import meta_train

# The replaced exports: TF-Agents' PolicySaver policies (loading them needs `import tf_agents`
# for the distribution specs) and the model's signatures.
REPLACED = ("policy", "collect_policy", "model")

# A fresh process: seconds to import TensorFlow, to import tf_agents (when asked), and to
# load the SavedModels given (tf.saved_model.load, one after the other).
_LOAD_PROBE = """
import json, sys, time
start = time.perf_counter()
import tensorflow as tf
imported = time.perf_counter()
if sys.argv[1] == "tf_agents":
  import tf_agents
ready = time.perf_counter()
for path in sys.argv[2:]:
  tf.saved_model.load(path)
done = time.perf_counter()
print(json.dumps(dict(import_tf=imported - start, import_tf_agents=ready - imported,
                      load=done - ready)))
"""


def _bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _probe(imports: str, paths: Sequence[str]) -> Dict[str, float]:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
  proc = subprocess.run([sys.executable, "-c", _LOAD_PROBE, imports, *paths], env=env,
                        capture_output=True, text=True, check=True, timeout=600)
  return json.loads(proc.stdout.strip().splitlines()[-1])


@stage("agent export")
def bench_agent_export(sizes: Sizes) -> List[Row]:
  """export/agent against policy + collect_policy + model, the exports it replaces.

  A MetaTrainingRun built under gin from gin/cheetah_vel_hard.gin (base.gin's networks:
  model 4 x 200, SAC 3 x 300; --quick: gin/smoke.gin's 32-wide ones), untrained (the sizes
  and load times depend on the shapes, not the values), exported by mier_tf/train/export.py
  as training's end does. Size: bytes on disk. Load: fresh processes (`_LOAD_PROBE`), the
  agent export with TensorFlow alone, the three with `import tf_agents` as their users need;
  run in turn, after one untimed pair (the page cache), medians. Write: one export each.
  """
  repeats = sizes.pick(5, 1)
  config = sizes.pick("cheetah_vel_hard", "smoke")
  gin.clear_config()
  try:
    with tempfile.TemporaryDirectory() as root:
      cli.parse_gin([os.path.join(cli.REPO_GIN_DIR, f"{config}.gin")], [], root_dir=root)
      run = meta_train.MetaTrainingRun(root_dir=root)
      out = os.path.join(root, "export")
      start = time.perf_counter()
      export.export_policy(run.agent, out)
      export.export_model(run.model, out, run.inner)
      written = time.perf_counter()
      export.export_agent(run.model, run.agent, run.inner, out)
      write_three, write_agent = written - start, time.perf_counter() - written

      agent_path = os.path.join(out, "agent")
      replaced = [os.path.join(out, name) for name in REPLACED]
      agent_bytes, replaced_bytes = _bytes(agent_path), sum(_bytes(p) for p in replaced)
      by_name = ", ".join(f"{name} {_bytes(p) / 2**20:.2f}" for name, p in zip(REPLACED, replaced))
      if not sizes.quick:  # untimed: the files into the page cache
        _probe("tensorflow", [agent_path])
        _probe("tf_agents", replaced)
      agent_runs, replaced_runs = [], []
      for _ in range(repeats):
        agent_runs.append(_probe("tensorflow", [agent_path]))
        replaced_runs.append(_probe("tf_agents", replaced))
  finally:
    gin.clear_config()

  def median(runs, *keys):
    return statistics.median(sum(r[k] for k in keys) for r in runs)

  load_agent, load_replaced = median(agent_runs, "load"), median(replaced_runs, "load")
  ready_agent = median(agent_runs, "import_tf", "import_tf_agents", "load")
  ready_replaced = median(replaced_runs, "import_tf", "import_tf_agents", "load")
  import_tf = median(agent_runs + replaced_runs, "import_tf")
  import_tf_agents = median(replaced_runs, "import_tf_agents")
  sizes_note = f"{config}.gin networks, untrained"
  return [
      at_most("agent export size", agent_bytes / 2**20, replaced_bytes / 2**20, 1.0, (
          f"MiB on disk: export/agent / export/policy + collect_policy + model ({by_name}); "
          f"{sizes_note}"),
              agent_bytes=agent_bytes, replaced_bytes=replaced_bytes),
      at_most("agent export load", load_agent, load_replaced, 1.0, (
          f"s: tf.saved_model.load of export/agent / of the three, in a fresh process after "
          f"its imports, median of {repeats}; {sizes_note}")),
      at_most("agent export ready", ready_agent, ready_replaced, 1.0, (
          f"s: a fresh process's import tensorflow + load of export/agent / import "
          f"tensorflow + import tf_agents + load of the three, median of {repeats} (import "
          f"tensorflow {import_tf:.2f} s, import tf_agents {import_tf_agents:.2f} s)")),
      make_row("agent export write", write_agent, write_three, detail=(
          f"s: export_agent / export_policy + export_model, once each in the benchmark's "
          f"process; {sizes_note}")),
  ]
