"""mier_tf.results: the MIER against MIER-wR tables, on results worked out by hand."""
import json
import os

import pytest

from mier_tf import results


def _write(root, seed, tasks, r2):
  os.makedirs(os.path.join(root, seed, "eval"))
  entries = {str(i): dict(task=f"v={i}", standing_still=still, mier_wr=wr, **(
      {"mier": mier, "mier_curve": [mier]} if mier is not None else {}))
             for i, (still, wr, mier) in tasks.items()}
  with open(os.path.join(root, seed, "eval", "results.json"), "w") as f:
    json.dump({"env_steps": 1000, "identification": {"r2": r2}, "test_tasks": entries}, f)


def test_tables_line_up_relabeled_tasks_over_seeds(tmp_path):
  root = str(tmp_path)
  _write(root, "s0", {0: (-500, -400, -300), 3: (-520, -450, -460), 5: (-510, -420, None)}, 0.9)
  _write(root, "s1", {0: (-500, -380, -200), 3: (-520, -430, -330)}, 0.8)
  table = results.comparison(results.load_runs(root))
  assert [t["index"] for t in table["tasks"]] == [0, 3]  # task 5 was relabeled in one seed only
  assert table["tasks"][0]["mier"] == [-300, -200]
  s0, s1 = table["per_seed"]
  assert (s0["mier_wr"], s0["mier"], s0["wins"]) == (-425.0, -380.0, 1)
  assert (s1["mier_wr"], s1["mier"], s1["wins"]) == (-405.0, -265.0, 2)
  text = results.markdown(table)
  assert "| 0 (v=0) | -500.0 | -390.0 ± 10.0 | -250.0 ± 50.0 | 140.0 ± 40.0 |" in text
  assert "| s1 | 1,000 | 0.800 | -405.0 | -265.0 | 2 of 2 |" in text
  # The mean row: per seed the mean over tasks, then mean ± std over seeds.
  assert "| **mean** | -510.0 | -415.0 ± 10.0 | -322.5 ± 57.5 | 92.5 ± 47.5 |" in text


def test_a_folder_without_runs_is_named():
  with pytest.raises(FileNotFoundError, match="no <seed>/eval/results.json under /nowhere"):
    results.load_runs("/nowhere")
