"""mier_tf.results: the MIER against MIER-wR tables, on results worked out by hand."""
import json
import os
import shutil

import pytest

from mier_tf import plotting
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


def test_runs_not_yet_relabeled_get_a_table_of_mier_wr_over_every_test_task(tmp_path):
  """A campaign's run is saved after meta-training, before Algorithm 2 ran on it."""
  root = str(tmp_path)
  _write(root, "s0", {0: (-500, -400, None), 1: (-520, -450, None), 2: (-510, -420, None)}, 0.74)
  table = results.comparison(results.load_runs(root))
  assert table["tasks"] == [] and table["per_seed"][0]["mier"] is None
  text = results.markdown(table)
  assert text.startswith("No test task went through Algorithm 2 yet")
  # (-500 - 520 - 510) / 3 = -510.0; (-400 - 450 - 420) / 3 = -423.3
  assert "| s0 | 1,000 | 0.740 | 3 | -510.0 | -423.3 |" in text


def test_a_folder_without_runs_is_named():
  with pytest.raises(FileNotFoundError, match="no <seed>/eval/results.json under /nowhere"):
    results.load_runs("/nowhere")


def test_oracle_columns_from_the_references(tmp_path):
  root = str(tmp_path)
  _write(root, "s0", {0: (-500, -400, -300), 3: (-520, -450, -460)}, 0.9)
  os.makedirs(os.path.join(root, "references"))
  with open(os.path.join(root, "references", "task_0.json"), "w") as f:
    json.dump({"index": 0, "oracle_same_data": {"greedy_return": -610.0},
               "oracle_long": {"returns": {"10000": -450.0, "50000": -150.0}}}, f)
  with open(os.path.join(root, "references", "task_3.json"), "w") as f:
    json.dump({"index": 3, "oracle_same_data": {"greedy_return": -590.0}}, f)
  table = results.comparison(results.load_runs(root), results.load_references(root))
  first, second = table["tasks"]
  assert (first["oracle_same_data"], first["oracle_long"], first["oracle_long_steps"]) == (
      -610.0, -150.0, 50000)  # the long run's last checkpoint, not its first
  assert (second["oracle_same_data"], second["oracle_long"]) == (-590.0, None)
  text = results.markdown(table)
  assert "| MIER − MIER-wR | oracle, MIER's data | oracle, 50k steps |" in text
  assert "| 0 (v=0) | -500.0 | -400.0 | -300.0 | 100.0 | -610.0 | -150.0 |" in text
  assert "| 3 (v=3) | -520.0 | -450.0 | -460.0 | -10.0 | -590.0 | – |" in text
  assert "| **mean** | -510.0 | -425.0 | -380.0 | 45.0 | -600.0 | -150.0 (1 of 2) |" in text
  assert "reward NLL" not in text  # no per-block NLLs in these results
  # Without references the table has no oracle columns.
  assert "oracle" not in results.markdown(results.comparison(results.load_runs(root)))


def test_per_block_nlls_of_each_seed(tmp_path):
  root = str(tmp_path)
  _write(root, "s0", {0: (-500, -400, -300)}, 0.9)
  path = os.path.join(root, "s0", "eval", "results.json")
  with open(path) as f:
    run = json.load(f)
  run["identification"].update(spread_ratio=25.84, nll_state_before=640.71,
                               nll_state_after=-16.09, nll_reward_before=20.656,
                               nll_reward_after=-0.874)
  with open(path, "w") as f:
    json.dump(run, f)
  text = results.markdown(results.comparison(results.load_runs(root)))
  assert "| s0 | 0.900 | 25.8 | 640.7 → -16.1 | 20.66 → -0.87 |" in text


def _with_protocol(root, seeds):
  """The ends' tasks carry the protocol a milestone's standing still is matched on."""
  for seed in seeds:
    path = os.path.join(root, seed, "eval", "results.json")
    with open(path) as f:
      end = json.load(f)
    for entry in end["test_tasks"].values():
      entry["protocol"] = {"seed": 0}
    with open(path, "w") as f:
      json.dump(end, f)


def _milestone(root, seed, step, tasks):
  """A milestone's results as Algorithm 2 writes them: no standing still of its own."""
  path = os.path.join(root, seed, results.MILESTONES, f"step_{step}", "eval")
  os.makedirs(path)
  entries = {str(i): {"task": f"v={i}", "mier_wr": wr, "mier": mier, "protocol": {"seed": 0}}
             for i, (wr, mier) in tasks.items()}
  with open(os.path.join(path, "results.json"), "w") as f:
    json.dump({"test_tasks": entries}, f)


def test_mier_against_mier_wr_as_the_budget_grows(tmp_path):
  root = str(tmp_path)
  for seed in ("s0", "s1"):
    _write(root, seed, {0: (-500, -400, -300), 3: (-520, -450, -460)}, 0.9)  # at 1,000 steps
    for entry in results.load_runs(root)[seed]["test_tasks"].values():
      assert "protocol" not in entry
  _with_protocol(root, ("s0", "s1"))
  _milestone(root, "s0", 500, {0: (-450, -470), 3: (-480, -400)})
  _milestone(root, "s1", 500, {0: (-430, -410), 3: (-470, -450)})
  _milestone(root, "s0", 250, {0: (-490, -495)})  # one seed, one task so far
  table = results.budget(results.load_budget(root))
  assert [s["env_steps"] for s in table["steps"]] == [250, 500, 1000]
  at_500 = table["steps"][1]
  # s0: wr (-450 - 480) / 2 = -465, mier (-470 - 400) / 2 = -435, gain 30, 1 won;
  # s1: wr -450, mier -430, gain 20, 2 won. Standing still from the ends: (-500 - 520) / 2.
  assert at_500["mier_wr"] == [-465.0, -450.0] and at_500["mier"] == [-435.0, -430.0]
  assert at_500["gain"] == [30.0, 20.0] and at_500["wins"] == [1, 2]
  assert at_500["standing_still"] == [-510.0, -510.0]
  text = results.budget_markdown(table)
  assert "| 500 | 2 | -510.0 | -457.5 ± 7.5 | -432.5 ± 2.5 | 25.0 ± 5.0 | 3 of 4 |" in text
  assert "| 250 | 1 | -500.0 | -490.0 | -495.0 | -5.0 | 0 of 1 |" in text
  assert "| s0 | 1,000 | 2 | -425.0 | -380.0 | 45.0 | 1 of 2 |" in text
  assert "oracle" not in text.lower()
  # The figure's mean line: gains (-5), (30 + 20) / 2 and at 1,000 (s0 45, s1 10: the
  # ends' (-400 + 300 ... ) as the table above); 250 has one seed of the line's two.
  points = plotting.mean_points(table, "gain", None)
  assert [(x, m, n) for x, _, m, n in points] == [(250, 1, 2), (500, 2, 2), (1000, 2, 2)]
  assert points[0][1] == -5.0 and points[1][1] == 25.0
  assert plotting.plot_budget(root, table=table)
  # References of another task under the same index are refused, not averaged in.
  refs = {0: {"task": "v=7", "oracle_long": {"returns": {"50000": -100.0}}}}
  with pytest.raises(ValueError, match="task_0.json is of task 'v=7'.*test task 0 is 'v=0'"):
    results.budget(results.load_budget(root), refs)
  refs[0]["task"] = "v=0"
  table = results.budget(results.load_budget(root), refs)
  assert (table["oracle_long"], table["oracle_tasks"], table["relabeled_tasks"]) == (-100.0, 1, 2)


def test_seeds_evaluated_with_other_context_steps_are_not_averaged(tmp_path):
  """A campaign's bindings can change between seeds (a seed whose checkpoints are gone keeps
  the evaluation of its day): seeds are averaged only where they took the same context
  steps, and the tables then name the count."""
  root = str(tmp_path)
  for seed, count in (("s0", 10), ("s1", 100), ("s2", 100)):
    _write(root, seed, {0: (-500, -400, -300)}, 0.9)  # at 1,000 steps
    path = os.path.join(root, seed, "eval", "results.json")
    with open(path) as f:
      end = json.load(f)
    end["test_tasks"]["0"].update(adaptation={"context_steps": count}, protocol={"seed": 0})
    with open(path, "w") as f:
      json.dump(end, f)
  path = os.path.join(root, "s2", "eval", "results.json")
  with open(path) as f:
    end = json.load(f)
  end["test_tasks"]["0"]["mier"] = -200
  with open(path, "w") as f:
    json.dump(end, f)
  table = results.budget(results.load_budget(root))
  assert [(s["env_steps"], s["context_steps"], s["seeds"]) for s in table["steps"]] == [
      (1000, 10, ["s0"]), (1000, 100, ["s1", "s2"])]
  text = results.budget_markdown(table)
  # s1 and s2: MIER (-300 - 200) / 2 = -250, gain (100 + 200) / 2 = 150 ± 50.
  assert "| 1,000 | 100 | 2 | -500.0 | -400.0 ± 0.0 | -250.0 ± 50.0 | 150.0 ± 50.0 | 2 of 2 |" \
      in text
  assert "| 1,000 | 10 | 1 | -500.0 | -400.0 | -300.0 | 100.0 | 1 of 1 |" in text
  assert "| s2 | 1,000 | 100 | 1 | -400.0 | -200.0 | 200.0 | 1 of 1 |" in text
  assert text.splitlines()[0].startswith("| env steps | context steps | seeds |")
  _milestone(root, "s1", 500, {0: (-450, -420)})  # no adaptation recorded: a count of its own
  table = results.budget(results.load_budget(root))
  assert [(s["env_steps"], s["context_steps"]) for s in table["steps"]] == [
      (500, None), (1000, 10), (1000, 100)]
  assert "| s1 | 500 | – | 1 | -450.0 | -420.0 | 30.0 | 1 of 1 |" in results.budget_markdown(
      table)
  assert [os.path.basename(p) for p in plotting.plot_budget(root, table=table)] == [
      "mier_vs_budget.png"]
  shutil.rmtree(os.path.join(root, "s1", results.MILESTONES))
  # One count: no column (the table of test_mier_against_mier_wr_as_the_budget_grows).
  shutil.rmtree(os.path.join(root, "s0"))
  text = results.budget_markdown(results.budget(results.load_budget(root)))
  assert "context steps" not in text and "| 1,000 | 2 | -500.0 |" in text
  assert plotting.plot_budget(root) == []  # one checkpoint: no figure


def test_collection_curves_are_drawn_where_a_seed_logged_them(tmp_path):
  """collection.png from the seeds' saved scalars (a run still training included); the
  trailing mean and the training tasks' standing still worked out by hand."""
  assert plotting.rolling_mean([1.0, 2.0, 3.0, 4.0], 2).tolist() == [1.0, 1.5, 2.5, 3.5]
  assert plotting.rolling_mean([3.0, 6.0, 9.0], 10).tolist() == [3.0, 4.5, 6.0]
  root = tmp_path
  (root / "s0").mkdir()
  (root / "s0" / "scalars.json").write_text(json.dumps({"eval": {}, "train": {}}))
  assert plotting.plot_collection(str(root)) == []  # a run from before the collection tags
  (root / "s1").mkdir()
  curve = {"steps": [75000, 80000, 85000], "values": [-40.0, 120.0, 170.0]}
  evaluation = {"Eval/train_return": {"steps": [50, 85000], "values": [-60.0, 150.0]},
                "Eval/train_return_above_still": {"steps": [50, 85000], "values": [-255.0, -40.0]}}
  (root / "s1" / "scalars.json").write_text(json.dumps({"eval": {
      "Collect/return_adapted_context": curve, "Collect/return_prior_context": curve,
      **evaluation}}))
  assert plotting.plot_collection(str(root)) == [str(root / "collection.png")]
  assert (root / "collection.png").stat().st_size > 0
  scalars = plotting.run_scalars(str(root / "s1"), "eval")
  assert plotting.training_standing_still(scalars) == 190.0  # 150 - (-40), the last one
  assert plotting.training_standing_still({}) is None


def test_algorithm2_per_task_and_per_checkpoint(tmp_path):
  """algorithm2.md: every relabeled task's adaptation, relabeling error and guard, and per
  seed and checkpoint the smallest and mean correlation, the mean and largest next-state
  error, the whole-model steps taken and the guard's choices (worked out by hand)."""
  def entry(wr, mier, corr, rmse, steps, chosen):
    return {"task": "v=2.5", "mier_wr": wr, "mier": mier,
            "adaptation": {"heldout_nll_meta": 100.0, "heldout_nll_context": 50.0,
                           "heldout_nll_model": -2.5, "model_steps": steps},
            "relabel_error": {"reward_corr": corr, "reward_bias": 0.1, "reward_mae": 0.2,
                              "next_state_rmse": rmse},
            "guard": {"chosen": chosen}}
  end = {"test_tasks": {"0": entry(-500, -400, 0.9, 1.0, 3000, "relabeled"),
                        "3": entry(-500, -520, 0.7, 3.0, 1200, "meta_trained"),
                        "6": {"task": "v=2.9", "mier_wr": -510.0}}}  # not relabeled
  before = {"test_tasks": {"0": {"task": "v=2.5", "mier_wr": -1.0, "mier": 0.0}}}
  text = results.algorithm2_markdown({"s0": {1000: end}, "s1": {1000: before}})
  # corr min 0.7, mean 0.8; rmse mean 2.0, max 3.0; steps 1200-3000; 1 of 2 kept;
  # gain (100 - 20) / 2 = 40.
  assert "| s0 | 1,000 | 2 | 0.70 / 0.80 | 2.00 (3.00) | 1200–3000 | 1 of 2 | 40.0 |" in text
  assert ("| s0 | 1,000 | 3 (v=2.5) | 100.0 → 50.0 → -2.50 (1200) | 0.70 | 0.10 | 0.20 | "
          "3.00 | meta_trained | -20.0 |") in text
  assert "| s1 |" not in text  # results from before Algorithm 2 recorded its adaptation
  assert results.algorithm2_markdown({"s1": {1000: before}}) is None
  # Reward-only relabeling keeps the stored next states: their (zero) error is not the model's.
  for e in end["test_tasks"].values():
    e["settings"] = {"relabel_mode": "reward_only"}
  text = results.algorithm2_markdown({"s0": {1000: end}})
  assert "| s0 | 1,000 | 2 | 0.70 / 0.80 | real | 1200–3000 | 1 of 2 | 40.0 |" in text
  assert "| 0.70 | 0.10 | 0.20 | real | meta_trained | -20.0 |" in text


def test_study_over_seeds(tmp_path):
  """relabel_study/<config>.md: a variant's gain averaged over each seed's tasks, the mean
  and sample standard deviation of those means, verdicts over all (seed, task), correlation
  range, means and steps (worked out by hand); a seed with fewer tasks is marked; variants
  best first; a folder not named <config>_s<seed> is not a seed."""
  def row(variant, task, difference, verdict, corr, steps):
    return {"variant": variant, "task": task, "difference": difference, "verdict": verdict,
            "reward_corr": corr, "next_state_rmse": None, "nll_model": -2.0,
            "model_steps": steps, "seconds": 100.0, "cpu_seconds": 90.0 if task else None}
  studies = {
      "cfg_s0": [row("base", 0, 10.0, "won", 0.9, 3000), row("base", 9, 30.0, "won", 0.8, 3000),
                 row("release", 0, -50.0, "lost", 0.2, 100),
                 row("release", 9, -10.0, "tie", 0.4, 100)],
      "cfg_s1": [row("base", 0, 50.0, "won", 0.95, 2000), row("base", 9, 70.0, "won", 0.85, 3000),
                 row("release", 0, 5.0, "tie", -0.3, 100),
                 dict(row("real", 0, 8.0, "tie", 0.5, 0), seed=0),
                 dict(row("real", 0, 2.0, "tie", 0.5, 0), seed=1)],
      "cfg_1175k": [row("base", 0, 999.0, "won", 1.0, 1)]}
  for name, rows in studies.items():
    (tmp_path / name).mkdir()
    (tmp_path / name / "study.json").write_text(json.dumps(rows))
  loaded = results.load_study_seeds(str(tmp_path))
  assert list(loaded) == ["cfg"] and sorted(loaded["cfg"]) == [0, 1]
  text = results.study_seeds_markdown(loaded["cfg"])
  lines = text.splitlines()
  # base: seed means 20 and 60 -> mean 40, sd sqrt(((20)^2 + 20^2) / 1) = 28.3.
  assert lines[2] == ("| base | +20.0 / +60.0 | +40.0 ± 28.3 | 4 / 0 / 0 | 0.80–0.95 | – | "
                      "-2.00 | 2000–3000 | 100 (90) |")
  # release: seed means -30 and +5 (one task) -> mean -12.5, sd 24.7.
  # real: one task under two Algorithm 2 seeds (8 and 2) -> +5.0, named with its seeds.
  assert lines[3] == ("| real (Algorithm 2 seeds 0, 1) | – / +5.0 | +5.0 | 0 / 2 / 0 | "
                      "0.50–0.50 | – | -2.00 | 0 | 100 |")
  assert lines[4] == ("| release | -30.0 / +5.0 (1 tasks) | -12.5 ± 24.7 | 0 / 2 / 1 | "
                      "-0.30–0.40 | – | -2.00 | 100 | 100 (90) |")


def test_tasks_won_tied_and_lost_are_counted_by_the_paired_verdicts(tmp_path):
  """A task whose MIER is above MIER-wR within twice its paired error is a tie, not a win:
  the tables count what results.json's paired verdicts say."""
  root = str(tmp_path)
  for seed, verdicts in (("s0", ["won", "tie", "lost"]), ("s1", ["won", "won", "tie"])):
    _write(root, seed, {0: (-500, -400, -300), 3: (-520, -450, -440), 5: (-510, -420, -430)},
           0.9)
    path = os.path.join(root, seed, "eval", "results.json")
    with open(path) as f:
      end = json.load(f)
    for entry, verdict in zip(end["test_tasks"].values(), verdicts):
      entry["difference"] = {"mean": entry["mier"] - entry["mier_wr"], "se": 8.0,
                             "verdict": verdict}
      entry["protocol"] = {"seed": 0}
    with open(path, "w") as f:
      json.dump(end, f)
  assert results.paired_verdicts([{"difference": {"verdict": "tie"}}, {}]) is None
  table = results.comparison(results.load_runs(root))
  assert [s["verdicts"] for s in table["per_seed"]] == [[1, 1, 1], [2, 1, 0]]
  text = results.markdown(table)
  # s0: MIER above MIER-wR on tasks 0 and 3 (wins 2), but task 3's +10 is within noise.
  # MIER-wR (-400 - 450 - 420) / 3 = -423.3, MIER (-300 - 440 - 430) / 3 = -390.0.
  assert table["per_seed"][0]["wins"] == 2
  assert "| MIER | won / tie / lost (paired) |" in text
  assert "| s0 | 1,000 | 0.900 | -423.3 | -390.0 | 1 / 1 / 1 |" in text
  budget_text = results.budget_markdown(results.budget(results.load_budget(root)))
  assert "| 1,000 | 2 | -510.0 | -423.3 ± 0.0 | -390.0 ± 0.0 | 33.3 ± 0.0 | 3 / 2 / 1 |" in \
      budget_text
  assert "| s1 | 1,000 | 3 | -423.3 | -390.0 | 33.3 | 2 / 1 / 0 |" in budget_text


def test_the_headline_takes_each_familys_half_budget_and_end_into_the_results_page(tmp_path):
  """headline_markdown: per family the checkpoint nearest half its budget (35-65% of its last)
  and the last; with_headline writes it between the page's markers, and nothing else."""
  a, b = str(tmp_path / "a_paper"), str(tmp_path / "b_paper")
  for seed in ("s0", "s1"):
    _write(a, seed, {0: (-500, -400, -300), 3: (-520, -450, -460)}, 0.9)  # end: 1,000 steps
  _milestone(a, "s0", 500, {0: (-450, -470), 3: (-480, -400)})
  _milestone(a, "s1", 500, {0: (-430, -410), 3: (-470, -450)})
  _milestone(a, "s0", 250, {0: (-490, -495)})  # 25%: not in the headline
  _write(b, "s0", {1: (10, 100, 150)}, 0.9)
  _with_protocol(a, ("s0", "s1"))
  _with_protocol(b, ("s0",))
  _milestone(b, "s0", 900, {1: (90, 80)})  # 90%: no half-budget row
  tables = {os.path.basename(d): results.budget(results.load_budget(d)) for d in (a, b)}
  text = results.headline_markdown(tables)
  lines = text.splitlines()
  assert lines[0].startswith("| family | env steps | seeds | standing still | MIER-wR |")
  # a at 500: s0 wr -465, mier -435; s1 wr -450, mier -430 (worked out in
  # test_mier_against_mier_wr_as_the_budget_grows); standing still (-500 - 520) / 2.
  # a at 1,000: wr (-400 - 450) / 2 = -425 and mier (-300 - 460) / 2 = -380 in both seeds.
  # b at 1,000: one task, wr 100, mier 150.
  assert lines[2:] == [
      "| a_paper | 500 | 2 | -510.0 | -457.5 ± 7.5 | -432.5 ± 2.5 | 25.0 ± 5.0 | 3 of 4 | – |",
      "| a_paper | 1,000 | 2 | -510.0 | -425.0 ± 0.0 | -380.0 ± 0.0 | 45.0 ± 0.0 | 2 of 4 | – |",
      "| b_paper | 1,000 | 1 | 10.0 | 100.0 | 150.0 | 50.0 | 1 of 1 | – |"]
  page = "# Results\n\nBefore.\n\n" + results.HEADLINE_BEGIN + "\nold table\n" + \
      results.HEADLINE_END + "\n\nAfter.\n"
  written = results.with_headline(page, text)
  assert written == ("# Results\n\nBefore.\n\n" + results.HEADLINE_BEGIN + "\n" + text +
                     results.HEADLINE_END + "\n\nAfter.\n")
  assert results.with_headline(written, text) == written
  with pytest.raises(ValueError, match="no .*headline.* block"):
    results.with_headline("# Results\n", text)
  assert results.headline_markdown({}) == ""


def test_a_seed_still_training_is_in_the_budget_with_its_milestones_alone(tmp_path):
  """A campaign's run saved before its end (evaluated milestones, no eval/results.json):
  load_budget takes its milestones with the references' standing still, the tables mark it
  (training), and a family with no finished seed has a headline row of its last milestone
  alone; `make results` writes its budget.md but no per-seed table."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  results_dir = tmp_path / "results"
  a, b = str(results_dir / "a_paper"), str(results_dir / "b_paper")
  _write(a, "s0", {0: (-500, -400, -300)}, 0.9)  # s0 finished at 1,000 steps
  _with_protocol(a, ("s0",))
  _milestone(a, "s0", 500, {0: (-450, -470)})
  _milestone(a, "s1", 500, {0: (-430, -410)})  # s1 still training
  os.makedirs(os.path.join(a, "references"))
  with open(os.path.join(a, "references", "task_0.json"), "w") as f:
    json.dump({"index": 0, "task": "v=0", "standing_still": -480.0}, f)
  budget_runs = results.load_budget(a)
  assert sorted(budget_runs) == ["s0", "s1"] and list(budget_runs["s1"]) == [500]
  entry = budget_runs["s1"][500]["test_tasks"]["0"]
  assert (entry["standing_still"], entry["standing_still_from"]) == (-480.0, "reference")
  assert "standing_still_from" not in budget_runs["s0"][500]["test_tasks"]["0"]  # the end's
  table = results.budget(budget_runs)
  assert [(r["seed"], r["env_steps"], r["training"]) for r in table["rows"]] == [
      ("s0", 500, False), ("s0", 1000, False), ("s1", 500, True)]
  text = results.budget_markdown(table)
  # At 500: standing still (-500 - 480) / 2, MIER-wR (-450 - 430) / 2 = -440 ± 10, MIER
  # (-470 - 410) / 2 = -440 ± 30, gains -20 and 20; won by s1 alone.
  assert "| 500 | 2 | -490.0 | -440.0 ± 10.0 | -440.0 ± 30.0 | 0.0 ± 20.0 | 1 of 2 |" in text
  assert "| s1 (training) | 500 | 1 | -430.0 | -410.0 | 20.0 | 1 of 1 |" in text
  assert "| s0 | 1,000 | 1 | -400.0 | -300.0 | 100.0 | 1 of 1 |" in text
  assert "still meta-training" in text
  _milestone(b, "s0", 375, {1: (90, 80)})
  _milestone(b, "s0", 750, {1: (100, 130)})  # no end, no references: no standing still
  b_table = results.budget(results.load_budget(b))
  assert "| 750 | 1 | – | 100.0 | 130.0 | 30.0 | 1 of 1 |" in results.budget_markdown(b_table)
  lines = results.headline_markdown({"a_paper": table, "b_paper": b_table}).splitlines()
  assert lines[2:] == [
      "| a_paper | 500 | 2 | -490.0 | -440.0 ± 10.0 | -440.0 ± 30.0 | 0.0 ± 20.0 | 1 of 2 | – |",
      "| a_paper | 1,000 | 1 | -500.0 | -400.0 | -300.0 | 100.0 | 1 of 1 | – |",
      "| b_paper | 750 (training) | 1 | – | 100.0 | 130.0 | 30.0 | 1 of 1 | – |"]
  proc = subprocess.run(
      [sys.executable, os.path.join(os.path.dirname(__file__), "..", "scripts",
                                    "regenerate_results.py"), f"--results_dir={results_dir}"],
      capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert os.path.exists(os.path.join(a, "table.md")) and os.path.exists(
      os.path.join(a, "budget.md"))
  assert not os.path.exists(os.path.join(b, "table.md"))  # no finished seed: no per-seed table
  with open(os.path.join(b, "budget.md")) as f:
    assert "| s0 (training) | 750 | 1 | 100.0 | 130.0 | 30.0 | 1 of 1 |" in f.read()
  with open(results_dir / "headline.md") as f:
    assert f.read().splitlines()[2:] == lines[2:]


def test_saving_a_run_still_training_keeps_its_evaluated_milestones(tmp_path):
  """plotting.save_run of a campaign's run before its end: the milestones whose evaluation
  completed, no end; nothing to save, or an out_dir holding another run's end, is refused."""
  root, out = tmp_path / "run", tmp_path / "saved" / "s0"
  done, busy = root / "milestones" / "step_5", root / "milestones" / "step_9"
  for milestone in (done, busy):
    (milestone / "eval").mkdir(parents=True)
    (milestone / "eval" / "results.json").write_text('{"test_tasks": {}}')
  with pytest.raises(FileNotFoundError, match="no eval/results.json and no evaluated milestone"):
    plotting.save_run(str(root), str(out))
  (done / "evaluated.json").write_text("{}")
  plotting.save_run(str(root), str(out))
  assert (out / "milestones" / "step_5" / "eval" / "results.json").exists()
  assert not (out / "milestones" / "step_9").exists() and not (out / "eval" / "results.json").exists()
  (out / "eval" / "results.json").write_text('{"test_tasks": {}}')
  with pytest.raises(ValueError, match="holds a finished run's eval/results.json"):
    plotting.save_run(str(root), str(out))


def test_own_data_pairs_over_seeds(tmp_path):
  """relabel_study/own_data.md (claim 3): in studies named <config>_s<seed>_<k>k, a variant
  beside its `+real_only` twin (base beside real_only), on the tasks both ran with Algorithm 2
  seed 0; per row the means and differences, and over seeds the mean and population sd of
  relabeled − own data (worked out by hand). Other folders and unpaired variants are left
  out; bindings every row shares are named once."""
  def row(variant, task, mier_wr, mier, seed=0):
    return {"variant": variant, "seed": seed, "task": task, "mier_wr": mier_wr, "mier": mier}
  studies = {
      "cfg_s0_1500k": ([row("model_3000", 0, -400.0, -300.0), row("model_3000", 9, -420.0, -340.0),
                        row("model_3000+real_only", 0, -400.0, -450.0),
                        row("model_3000+real_only", 9, -420.0, -410.0),
                        row("model_3000+critic_reset", 0, -400.0, -600.0)],
                       {"gin_bindings": ["adapt_ood.num_epochs = 5"],
                        "variants": {"model_3000": ["adapt_ood.model_steps = 3000",
                                                    "adapt_ood.patience = 100"]}}),
      "cfg_s1_1500k": ([row("base", 0, -500.0, -350.0), row("base", 9, -480.0, -470.0),
                        row("base", 18, -450.0, -300.0),  # no own-data twin on task 18
                        row("base", 9, -480.0, 0.0, seed=1),  # another Algorithm 2 seed
                        row("real_only", 0, -500.0, -550.0), row("real_only", 9, -480.0, -460.0)],
                       {"gin_bindings": ["adapt_ood.num_epochs = 5", "adapt_ood.model_steps = 3000",
                                         "adapt_ood.patience = 3000"],
                        "variants": {"base": []}}),
      "cfg_s1_850k": ([row("base", 0, -520.0, -200.0)], {}),  # no twin: not a pair
      "cfg_s0_1500k_agent_from_850k": ([row("base", 0, 0.0, 1.0), row("real_only", 0, 0.0, 0.0)],
                                       {})}
  for name, (rows, config) in studies.items():
    (tmp_path / name).mkdir()
    (tmp_path / name / "study.json").write_text(json.dumps(rows))
    if config:
      (tmp_path / name / "study_config.json").write_text(json.dumps(config))
  pairs = results.load_own_data(str(tmp_path))
  assert [(p["config"], p["seed"], p["env_steps"], p["variant"]) for p in pairs] == [
      ("cfg", 0, 1_500_000, "model_3000"), ("cfg", 1, 1_500_000, "base")]
  lines = results.own_data_markdown(pairs).splitlines()
  assert lines[0] == "**cfg** (every row: model_steps = 3000, num_epochs = 5)"
  # s0: MIER-wR -410, own data -430, relabeled -320: -20 and +110, ahead on both tasks.
  assert lines[4] == ("| s0 | 1,500,000 | patience = 100 | 0, 9 | -410.0 | -430.0 | -320.0 | "
                      "-20.0 | **+110.0** | 2 of 2 |")
  # s1 on tasks 0 and 9 (its seed-0 rows): MIER-wR -490, own -505, relabeled -410: ahead on
  # task 0 (-350 > -550), behind on 9 (-470 < -460).
  assert lines[5] == ("| s1 | 1,500,000 | patience = 3000 | 0, 9 | -490.0 | -505.0 | -410.0 | "
                      "-15.0 | **+95.0** | 1 of 2 |")
  # Over seeds: (110 + 95) / 2 = 102.5, population sd 7.5.
  assert lines[9] == "| 1,500,000 | 2 | +102.5 ± 7.5 | 3 of 4 |"


def test_training_tasks_per_checkpoint(tmp_path):
  """training_tasks.md: per seed and checkpoint, MIER-wR and standing still on the training
  tasks evaluated, the tasks above standing still and the mean reward parts (worked out by
  hand), from <seed>/training_tasks/step_<n>.json (other files there are not checkpoints)."""
  def task(index, ret, still, forward, ctrl):
    return {"index": index, "return": ret, "standing_still": still,
            "reward_parts": {"return": ret, "forward": forward, "ctrl": ctrl, "contact": -1.0,
                             "survive": 200.0, "length": 200.0}}
  folder = tmp_path / "s0" / "training_tasks"
  folder.mkdir(parents=True)
  (folder / "step_850000.json").write_text(json.dumps({"tasks": [
      task(0, 230.0, 200.0, 80.0, -49.0), task(25, 180.0, 196.0, 10.0, -29.0)]}))
  (folder / "step_525000.json").write_text(json.dumps({"tasks": [task(0, 150.0, 200.0, 6.0, -55.0)]}))
  (folder / "notes.json").write_text("{}")
  reports = results.load_training_tasks(str(tmp_path))
  assert list(reports) == ["s0"] and sorted(reports["s0"]) == [525_000, 850_000]
  lines = results.training_tasks_markdown(reports).splitlines()
  assert lines[2] == "| s0 | 525,000 | 0 | 150.0 | 200.0 | 0 of 1 | 6.0 | -55.0 | -1.0 | 200.0 | 200 |"
  # (230 + 180) / 2 = 205, (200 + 196) / 2 = 198; forward 45, ctrl -39; one task above.
  assert lines[3] == ("| s0 | 850,000 | 0, 25 | 205.0 | 198.0 | 1 of 2 | 45.0 | -39.0 | -1.0 | "
                      "200.0 | 200 |")
  assert results.training_tasks_markdown({}) is None
