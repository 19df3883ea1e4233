"""scripts/benchmark.py runs cheap stages at --quick sizes and writes well-formed rows.

No speed is asserted (the machines are shared and noisy): only the output's shape and its
internal consistency (ratio = measured / reference, `met` agrees with the goal).
"""
import json
import math
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
KEYS = ("stage", "measured", "reference", "ratio", "goal", "met")


def _bench(*args):
  return subprocess.run([sys.executable, "scripts/benchmark.py", *args], cwd=REPO, env=ENV,
                        capture_output=True, text=True, timeout=300)


def _assert_consistent(row):
  """A row's keys and types, ratio = measured / reference, and `met` agreeing with its goal."""
  assert set(KEYS) <= set(row), row
  assert isinstance(row["stage"], str) and isinstance(row["goal"], str)
  for key in ("measured", "reference", "ratio"):
    assert isinstance(row[key], float) and math.isfinite(row[key]), (key, row)
  assert row["measured"] > 0 and row["reference"] > 0, row
  assert row["met"] is None or isinstance(row["met"], bool), row
  # ratio is measured / reference (both rounded to 3 decimals in the file).
  assert math.isclose(row["ratio"], row["measured"] / row["reference"], rel_tol=0.02,
                      abs_tol=2e-3), row
  bound = re.fullmatch(r"ratio (<=|>=) ([0-9.]+)", row["goal"])
  if bound:
    limit = float(bound.group(2))
    assert row["met"] == (row["ratio"] <= limit if bound.group(1) == "<=" else
                          row["ratio"] >= limit), row
  elif row["goal"] == "report":
    assert row["met"] is None, row


def test_quick_stages_write_consistent_rows(tmp_path):
  out = tmp_path / "bench.json"
  proc = _bench("--only", "relabeling", "--only", "memory", "--only", "distributed collection",
                "--quick", "--out", str(out))
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out) as f:
    result = json.load(f)
  assert result["quick"] is True
  assert result["machine"]["cpus"] >= 1
  rows = result["rows"]
  assert [row["stage"] for row in rows] == ["relabeling", "memory replay peak RSS",
                                            "distributed collection, 1 collector"]
  for row in rows:
    _assert_consistent(row)
  memory = rows[1]
  assert memory["met"] is True  # A few thousand rows are far below 4 GiB.
  # 2 tasks x 2 rounds x (40 + 40 + 60) rows of 42 float32, allocated in 1,024-row chunks.
  assert memory["data_bytes"] == 2 * 2 * 140 * 42 * 4
  assert memory["data_bytes"] <= memory["allocated_bytes"] < memory["peak_bytes"]
  # The table is printed, one line per row, under the header.
  lines = proc.stdout.splitlines()
  header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["stage", "measured"])
  assert lines[header + 2].startswith("relabeling ")
  assert lines[header + 3].startswith("memory replay peak RSS ")


def test_agent_export_stage_compares_the_export_with_the_three_it_replaces(tmp_path):
  out = tmp_path / "bench.json"
  proc = _bench("--only", "agent export", "--quick", "--out", str(out))
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out) as f:
    rows = json.load(f)["rows"]
  assert [row["stage"] for row in rows] == ["agent export size", "agent export load",
                                            "agent export ready", "agent export write"]
  for row in rows:
    _assert_consistent(row)
  size, load, ready, _ = rows
  # The size row is in MiB of the bytes it records; export/agent is the smaller on disk.
  assert size["measured"] == round(size["agent_bytes"] / 2**20, 3)
  assert 0 < size["agent_bytes"] < size["replaced_bytes"] and size["met"] is True
  # A process that is ready to act has imported TensorFlow (and tf_agents) before loading.
  assert ready["measured"] > load["measured"] and ready["reference"] > load["reference"]


def test_unknown_stage_is_refused_with_the_list(tmp_path):
  proc = _bench("--only", "no such stage", "--out", str(tmp_path / "x.json"))
  assert proc.returncode == 2
  assert "invalid choice" in proc.stderr and "'collection'" in proc.stderr
  assert not (tmp_path / "x.json").exists()


def test_learning_benchmark_script_runs_a_tiny_single_task_stage(tmp_path):
  # One seed of one setting to a 200-step checkpoint: collection and the greedy evaluation
  # run (the SAC updates start after 1,000 steps), then learning.json and learning.png.
  proc = subprocess.run(
      [sys.executable, "scripts/benchmark_learning.py", "--stages=single_task_sac",
       "--seeds=1", "--settings=ours", "--checkpoints=200", f"--out={tmp_path}"],
      cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / "learning.json") as f:
    (row,) = json.load(f)
  assert row["stage"] == "single_task_sac" and row["settings"] == "ours"
  assert list(row["returns"]) == ["200"] and math.isfinite(row["returns"]["200"])
  assert (tmp_path / "learning.png").exists()
