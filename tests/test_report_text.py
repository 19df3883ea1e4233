"""The human summaries the scripts end with (`mier_tf/report_text.py`), and how they print."""
import json

from mier_tf import cli
from mier_tf import report_text


def _task(mier_wr, still, mier=None, difference=None):
  entry = {"task": "v=2.8", "mier_wr": mier_wr, "standing_still": still}
  if mier is not None:
    entry.update(mier=mier, difference=difference)
  return entry


RESULTS = {
    "family": "cheetah_vel_hard", "env_steps": 12000, "protocol": {"episodes": 3},
    "train_return_mier_wr": -100.0, "train_standing_still": -150.0,
    "identification": {"num_tasks": 40, "r2": 0.93, "spread_ratio": 8.6},
    "test_tasks": {
        "0": _task(-500.0, -550.0, -480.0, {"mean": 20.0, "se": 5.0, "verdict": "won"}),
        "1": _task(-520.0, -560.0, -530.0, {"mean": -10.0, "se": 8.0, "verdict": "tie"}),
        "2": _task(-510.0, -555.0)}}


def test_the_run_summary_says_what_is_better_and_the_paired_difference():
  text = report_text.run_summary("/abs/run", RESULTS)
  flat = " ".join(text.split())  # the explanations wrap
  assert text.startswith("Results of /abs/run (cheetah_vel_hard, 12,000 meta-training env steps)")
  assert "K=3" in flat and "higher is better" in flat and "same K states" in flat
  assert "MIER-wR on 3 test tasks -510.0 (standing still -555.0)" in text
  assert "R^2 0.930 (1: the context is a linear code of the task, 0: chance)" in flat
  assert "spread ratio 8.6 (between tasks over within one task" in flat
  assert ("test task 0 (v=2.8): MIER -480.0, MIER-wR -500.0 (standing still -550.0); "
          "difference +20.0 +- 5.0, won") in text
  assert "difference -10.0 +- 8.0, tie" in text
  assert "over the 2 tasks: difference +5.0 on average; won 1, tie 1, lost 0" in text
  assert "Custom Scalars" in text


def test_a_run_without_results_still_gets_a_summary():
  text = report_text.run_summary("/abs/run", {})
  assert text.startswith("Results of /abs/run (?, 0 meta-training env steps)")
  assert "Files: /abs/run/eval/results.json" in text


def test_a_milestones_summary_reads_its_steps_protocol_and_family_from_what_it_has(tmp_path):
  """A milestone's results.json holds only Algorithm 2's tasks; run.json names the family."""
  (tmp_path / "run.json").write_text('{"family": "ant_negjoints"}')
  task = dict(_task(-500.0, -550.0, -480.0), mier_env_steps=850000,
              protocol={"episodes": 3, "seed": 0, "adapt_steps": 400})
  del task["standing_still"]
  text = report_text.run_summary(str(tmp_path), {"test_tasks": {"0": task}})
  assert text.startswith(f"Results of {tmp_path} (ant_negjoints, 850,000 meta-training env "
                         "steps)")
  assert "K=3" in text
  assert f"Files: {tmp_path}/eval/results.json\n" in text + "\n"  # no export/ to point at


def test_the_evaluation_summary_is_per_task_and_mean_against_standing_still():
  report = {"family": "cheetah_vel_hard", "split": "test",
            "protocol": {"adapt_steps": 400, "episodes": 3, "seed": 0},
            "mean_return": -505.0, "mean_standing_still": -550.0,
            "tasks": [{"index": 0, "task": "v=2.772", "return": -500.0, "standing_still": -540.0},
                      {"index": 3, "task": "v=2.559", "return": -510.0, "standing_still": -560.0}]}
  text = report_text.evaluation_summary(report, "/abs/run/export")
  flat = " ".join(text.split())
  assert text.startswith("MIER-wR of /abs/run/export on 2 test tasks of cheetah_vel_hard")
  assert "N=400" in flat and "K=3" in flat and "higher is better" in flat
  assert "  0 (v=2.772): -500.0, -540.0, +40.0" in text
  assert "  mean over 2: -505.0, -550.0, +45.0" in text


def test_the_identification_summary_explains_the_scores_and_where_test_tasks_land():
  train = [{"index": i, "task": f"v={v}", "parameter": [v], "read": [v + 0.1]}
           for i, v in enumerate((0.0, 0.5, 1.5))]
  test = [{"index": i, "task": f"v={v}", "parameter": [v], "read_after_adapt": [1.4],
           "read_after_10_steps": [v - 0.2]} for i, v in enumerate((1.0, 2.5, 3.0))]
  report = {"export": "/abs/run/export/model", "family": "cheetah_vel_hard",
            "data": "200 random-action transitions per adaptation, 3 training tasks",
            "r2": 0.9, "spread_ratio": 5.0, "train_tasks": train, "test_tasks": test}
  text = report_text.identification_summary(report)
  flat = " ".join(text.split())
  assert "R^2 0.900: 1: the context is a linear code of the task" in flat
  assert "spread ratio 5.00: between tasks over within one task" in flat
  assert "Higher is better" in flat
  assert "(2 of 3 outside the scored training tasks' range 0.00..1.50)" in flat
  # distances: after adapt |1.4-1|, |1.4-2.5|, |1.4-3| -> mean 1.033; after 10 steps 0.2
  assert "1.03 after the export's adapt, 0.2 after Algorithm 2's 10 steps" in flat
  assert "(training tasks: 0.1; lower is better)" in flat
  assert "    2 (v=3.0): 3.00 -> 1.40, 2.80" in text


def test_reports_print_as_a_summary_or_as_json_for_programs(capsys):
  cli.print_report({"a": 1}, "a summary", as_json=False)
  out, err = capsys.readouterr()
  assert out == "a summary\n" and err == ""
  cli.print_report({"a": 1}, "a summary", as_json=True)
  out, err = capsys.readouterr()
  assert json.loads(out) == {"a": 1} and err == "a summary\n"
