"""The campaign's supervisor and status view (mier_tf/campaign.py, scripts/campaign.py)."""
import fcntl
import json
import os
import signal
import subprocess
import sys

import pytest

from mier_tf import campaign

from conftest import copy_run  # the session's one smoke run, copied per test

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script(*args):
  return subprocess.run([sys.executable, os.path.join(REPO, "scripts", "campaign.py"), *args],
                        capture_output=True, text=True, cwd=REPO, timeout=600, check=False)


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"),
                    reason="the kernel has no autogroup scheduling (nothing to lower)")
def test_the_supervisor_lowers_its_whole_session_not_only_its_nice_value():
  """Under autogroup scheduling a nice 19 process in a session of its own still gets an equal
  share of the CPU against another session; the supervisor's session must be ranked last,
  with every process of it (its runs). Read from outside: once lowered, the child may get
  almost no CPU on a busy machine, so it only says what it did and waits."""
  code = ("import subprocess, sys; from mier_tf import campaign; "
          "child = subprocess.Popen(['sleep', '120']); said = campaign.lowest_priority(); "
          "print(child.pid, said, flush=True); sys.stdin.read(); child.kill()")
  proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True)
  try:
    child, said = proc.stdout.readline().strip().split(" ", 1)
    if said.startswith("scheduling group left as it was"):
      pytest.skip(f"this kernel refuses a session's group nice value here: {said}")
    for pid in (proc.pid, int(child)):  # the supervisor and a process it started
      with open(f"/proc/{pid}/autogroup") as f:
        group = f.read().strip()
      assert group.endswith("nice 19"), group
    assert said == f"scheduling group: {group}"
    with open("/proc/self/autogroup") as f:  # the test's own session is left alone
      assert not f.read().strip().endswith("nice 19")
  finally:  # a lowered process may take long to exit on a busy machine: killed
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdin.close()
    proc.stdout.close()


def test_status_reads_progress_milestones_and_finished_runs(tmp_path):
  runs = campaign.get_campaign("smoke")
  first = tmp_path / runs[0].name
  (first / "milestones" / "step_30000").mkdir(parents=True)
  (first / "milestones" / "step_60000").mkdir()
  (first / "milestones" / "not_a_milestone").mkdir()
  (first / "progress.json").write_text(json.dumps(
      {"family": "cheetah_vel_hard", "env_steps": 60_000, "max_env_steps": 90_000,
       "epoch": 4, "planned_epochs": 10, "seconds_per_epoch": 1800.0, "updated": 1000.0}))
  rows = campaign.status("smoke", str(tmp_path), now=1000.0 + 25 * 60)
  assert [r["run"] for r in rows] == [r.name for r in runs]
  row = rows[0]
  assert row["milestones"] == [30_000, 60_000]
  assert row["eta_hours"] == pytest.approx(6 * 1800 / 3600)  # 6 epochs left at 30 min each
  assert row["state"] == "checkpoint 25 min ago" and row["family"] == "cheetah_vel_hard"
  assert rows[1]["state"] == "not started, 2 in the training order" and rows[1]["env_steps"] is None
  (first / "finished.json").write_text("{}")
  assert campaign.status("smoke", str(tmp_path))[0]["state"] == "finished"
  text = campaign.format_status("smoke", str(tmp_path), rows)
  assert "no supervisor running" in text
  assert "60,000 / 90,000" in text and "30k,60k" in text and "3.0" in text


def test_a_second_supervisor_does_nothing_while_one_holds_the_lock(tmp_path, capsys):
  fd = os.open(tmp_path / campaign.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
  fcntl.flock(fd, fcntl.LOCK_EX)
  os.write(fd, b"4242")
  try:
    assert campaign.supervisor_pid(str(tmp_path)) == 4242
    assert campaign.supervise("smoke", str(tmp_path)) == 0
    assert "another supervisor holds" in capsys.readouterr().out
    assert campaign.start("smoke", str(tmp_path)) == (
        f"campaign smoke is already running (supervisor PID 4242) in {tmp_path}")
    assert not (tmp_path / campaign.get_campaign("smoke")[0].name).exists()  # nothing ran
  finally:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
  assert campaign.supervisor_pid(str(tmp_path)) is None


def test_the_script_names_the_campaigns_and_plans_the_commands(tmp_path):
  proc = _script("status", "--campaign=nope", f"--runs_dir={tmp_path}")
  assert proc.returncode == 2
  lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(lines) == 1 and "cpu, paper, smoke" in lines[0], proc.stderr
  proc = _script("plan", "--campaign=paper", f"--runs_dir={tmp_path}")
  assert proc.returncode == 0, proc.stderr
  plan = proc.stdout.strip().splitlines()
  assert len(plan) == 14 and plan[0].startswith("cheetah_vel_hard_paper_s0: ")
  assert f"--root_dir={tmp_path / 'ant_negjoints_paper_s2'}" in plan[-1]
  order = [line.split(":")[0] for line in plan]  # one seed of each ant family before the 3rd
  assert order.index("ant_negjoints_paper_s0") < order.index("cheetah_negjoints_paper_s2")
  for line in plan:  # every config the campaign names exists
    gin_file = line.split("--gin_file=")[1].split()[0]
    assert os.path.isfile(gin_file), gin_file
  proc = _script("restart")
  assert proc.returncode == 2 and "usage: scripts/campaign.py {start|status|plan}" in proc.stderr


def _fake_run(runs_dir, run, finished=False, milestones=()):
  root = runs_dir / run.name
  root.mkdir(parents=True)
  if finished:
    (root / "finished.json").write_text("{}")
  for step in milestones:
    (root / "milestones" / f"step_{step}").mkdir(parents=True)
  return root


def test_the_paper_campaign_trains_what_adds_results_then_what_a_study_needs(
    tmp_path, monkeypatch):
  """On a machine without the runs: the runs not committed first (the ant schedule study
  among them), then the committed seeds whose own-data study needs their checkpoints, then
  the optional ant seeds, and the other committed runs last (written out by hand); the
  status names each one's place."""
  committed = {"cheetah_vel_hard_paper_s0", "cheetah_negjoints_paper_s0",
               "cheetah_vel_hard_paper_s1", "cheetah_negjoints_paper_s1",
               "cheetah_vel_hard_paper_s2", "ant_dir_ood_paper_s2"}
  monkeypatch.setattr(campaign, "committed_state",
                      lambda name, run, runs_dir: "yes" if run.name in committed else "no")
  assert [j.run.name for j in campaign.pending_jobs("paper", str(tmp_path))] == [
      "ant_dir_ood_paper_s0", "ant_negjoints_paper_s0", "cheetah_negjoints_paper_s2",
      "ant_negjoints_700k_utd1_s0", "ant_negjoints_700k_entropy1_s0",
      "cheetah_vel_hard_paper_s1", "cheetah_negjoints_paper_s1", "cheetah_vel_hard_paper_s2",
      "ant_dir_ood_paper_s1", "ant_negjoints_paper_s1", "ant_negjoints_paper_s2",
      "cheetah_vel_hard_paper_s0", "cheetah_negjoints_paper_s0", "ant_dir_ood_paper_s2"]
  states = {r["run"]: r["state"] for r in campaign.status("paper", str(tmp_path))}
  assert states["cheetah_negjoints_paper_s2"] == "not started, 3 in the training order"
  assert states["ant_negjoints_paper_s1"] == (
      "not started, 10 in the training order (optional)")
  # A finished run leaves the order; the others move up.
  _fake_run(tmp_path, campaign.CampaignRun("ant_dir_ood_paper", 0), finished=True)
  states = {r["run"]: r["state"] for r in campaign.status("paper", str(tmp_path))}
  assert states["cheetah_negjoints_paper_s2"] == "not started, 2 in the training order"


def test_jobs_train_first_and_evaluate_milestones_as_they_appear(tmp_path):
  s0, s1 = campaign.get_campaign("smoke")
  root0 = _fake_run(tmp_path, s0, finished=True, milestones=(30, 60, 90))
  root1 = _fake_run(tmp_path, s1, milestones=(30,))
  for root in (root0, root1):
    (root / "run_config.gin").write_text("meta_train.milestones = (0.25, 0.5, 0.75)\n")
  jobs = campaign.pending_jobs("smoke", str(tmp_path))
  milestone = lambda root, n: str(root / "milestones" / f"step_{n}")
  # The end of a finished run first, then its milestone at half the budget (the second of
  # its three fractions), then the others from the latest: those are optional, as is the
  # running run's first (25%) milestone.
  assert [(j.kind, j.root, j.optional) for j in jobs] == [
      ("train", str(root1), False),
      ("evaluate", str(root0), False),
      ("evaluate", milestone(root0, 60), False),
      ("evaluate", milestone(root0, 90), True),
      ("evaluate", milestone(root0, 30), True),
      ("evaluate", milestone(root1, 30), True)]
  (root1 / "milestones" / "step_60").mkdir()  # its 50% milestone appears: wanted at once
  assert [j.optional for j in campaign.pending_jobs("smoke", str(tmp_path))
          if j.root.startswith(str(root1 / "milestones"))] == [False, True]
  (root1 / "milestones" / "step_60").rmdir()
  assert [j.kind for j in campaign.pending_jobs("smoke", str(tmp_path), evaluate=False)] == [
      "train"]
  # With both kinds pending, at most half of the slots evaluate.
  train, first_eval = jobs[0], jobs[1]
  next_job = campaign._next_job  # pylint: disable=protected-access
  assert next_job(jobs, []) is train  # the first slot trains
  assert next_job(jobs[1:], [train]) is first_eval  # the second evaluates
  assert next_job(jobs, [first_eval]) is train  # not two evaluations while training waits
  assert next_job(jobs[2:], [first_eval]) is jobs[2]  # nothing to train: evaluate
  optional = [j for j in jobs if j.optional]
  assert next_job([train] + optional, []) is train  # optional ones wait for every training
  assert next_job(optional, [train]) is optional[0]  # ...until no run waits to train
  assert next_job([train] + optional, [train]) is train
  bindings = campaign.EVALUATION_BINDINGS["smoke"]
  (root0 / campaign.EVALUATED).write_text(json.dumps({"env_steps": 90, "bindings": bindings}))
  assert str(root0) not in [j.root for j in campaign.pending_jobs("smoke", str(tmp_path))]
  assert campaign.status("smoke", str(tmp_path))[0]["evaluated"] == [90]
  # Evaluated with other Algorithm 2 settings: due again.
  (root0 / campaign.EVALUATED).write_text(json.dumps({"env_steps": 90, "bindings": []}))
  assert str(root0) in [j.root for j in campaign.pending_jobs("smoke", str(tmp_path))]
  assert campaign.status("smoke", str(tmp_path))[0]["evaluated"] == []
  # The evaluation command runs Algorithm 2 with the campaign's bindings; it keeps the
  # tasks of an interrupted evaluation only if that one had the same bindings.
  command = campaign.evaluate_command(s0, str(root0))
  assert command[1].endswith("scripts/adapt.py") and "--task=all" in command
  assert "--gin_bindings=adapt_all_test_tasks.task_indices = [0]" in command
  assert "--gin_bindings=adapt_all_test_tasks.skip_done = False" in command
  (root0 / campaign.EVALUATING).write_text(json.dumps({"bindings": bindings}))
  assert "--gin_bindings=adapt_all_test_tasks.skip_done = True" in campaign.evaluate_command(
      s0, str(root0))


def test_the_cpu_campaign_is_evaluated_by_its_runs_and_stale_commits_are_named(
    tmp_path, monkeypatch):
  """The CPU configs adapt their test tasks in train.py (train_and_adapt.adapt_test_tasks):
  the campaign only trains them. The status names a committed result that is not the
  finished run's here as stale."""
  runs = campaign.get_campaign("cpu")
  assert [r.name for r in runs[:2]] == ["cheetah_vel_hard_cpu_s0", "cheetah_negjoints_cpu_s0"]
  for run in runs:
    assert os.path.isfile(os.path.join(REPO, "gin", run.config + ".gin"))
  root = _fake_run(tmp_path, runs[0], finished=True)
  (root / "progress.json").write_text(json.dumps({"env_steps": 240_000}))
  # Runs without committed results first, then the committed ones, each in campaign order.
  committed_runs = [r for r in runs[1:] if campaign.committed_state("cpu", r, str(tmp_path)) == "yes"]
  assert committed_runs, "the CPU configs' seed-0 and seed-1 results are committed"
  assert [(j.kind, j.run.name) for j in campaign.pending_jobs("cpu", str(tmp_path))] == [
      ("train", r.name) for r in runs[1:] if r not in committed_runs] + [
      ("train", r.name) for r in committed_runs]
  committed = tmp_path / "committed"
  monkeypatch.setattr(campaign, "committed_dir", lambda name, run: str(committed / run.name))
  row = lambda: campaign.status("cpu", str(tmp_path))[0]
  assert row()["evaluated"] == [240_000] and row()["committed"] == "no"
  saved = committed / runs[0].name / "milestones" / "step_120000" / "eval"
  saved.mkdir(parents=True)
  assert row()["committed"] == "no"  # an empty milestone folder is nothing committed
  (saved / "results.json").write_text('{"test_tasks": {}}')
  assert row()["committed"] == "milestones"  # saved while it was still training
  (committed / runs[0].name / "eval").mkdir(parents=True)
  (committed / runs[0].name / "eval" / "results.json").write_text('{"test_tasks": {"0": 1}}')
  assert row()["committed"] == "yes"  # nothing here to compare with: the committed ones
  (root / "eval").mkdir()
  (root / "eval" / "results.json").write_text('{"test_tasks": {"0": 2}}')
  assert row()["committed"] == "stale"
  (root / "eval" / "results.json").write_text('{"test_tasks": {"0": 1}}')
  assert row()["committed"] == "yes"
  assert "stale" not in campaign.format_status("cpu", str(tmp_path), [row()])


def test_the_supervisor_evaluates_finished_runs_once(smoke_run_source, tmp_path):
  """Two finished smoke runs (copies of the session's): the supervisor runs Algorithm 2 on
  each (test task 0, EVALUATION_BINDINGS['smoke']), marks them evaluated, and a second
  supervisor finds nothing to do."""
  runs = campaign.get_campaign("smoke")
  for run in runs:
    copy_run(smoke_run_source, tmp_path / run.name)
  args = ["supervise", "--campaign=smoke", f"--runs_dir={tmp_path}", "--lowest_priority=false"]
  proc = _script(*args)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "0 runs to train and 2 checkpoints to evaluate" in proc.stdout
  for run in runs:
    with open(tmp_path / run.name / "eval" / "results.json") as f:
      results = json.load(f)
    with open(tmp_path / run.name / campaign.EVALUATED) as f:
      evaluated = json.load(f)
    assert evaluated["tasks"] == [0] and evaluated["env_steps"] == results["env_steps"]
    assert [i for i, t in results["test_tasks"].items() if "mier" in t] == ["0"]
    assert f"{run.name} evaluation of {run.name}: finished" in proc.stdout
  assert [r["evaluated"] for r in campaign.status("smoke", str(tmp_path))] == [
      [results["env_steps"]]] * 2
  again = _script(*args)
  assert "0 runs to train and 0 checkpoints to evaluate" in again.stdout
  assert "started" not in again.stdout
  # Saving the run for docs/results keeps each milestone whose evaluation completed (here
  # one standing in for it, with the end's results), not one still being evaluated.
  from mier_tf import plotting, results as results_lib  # pylint: disable=import-outside-toplevel
  root0 = tmp_path / runs[0].name
  done, busy = root0 / "milestones" / "step_5", root0 / "milestones" / "step_9"
  for milestone in (done, busy):
    (milestone / "eval").mkdir(parents=True)
    (milestone / "eval" / "results.json").write_text(
        (root0 / "eval" / "results.json").read_text())
  (done / campaign.EVALUATED).write_text((root0 / campaign.EVALUATED).read_text())
  saved = tmp_path / "family" / "s0"
  plotting.save_run(str(root0), str(saved))
  assert (saved / "milestones" / "step_5" / "eval" / "results.json").exists()
  assert (saved / "milestones" / "step_5" / campaign.EVALUATED).exists()
  assert not (saved / "milestones" / "step_9").exists()
  assert sorted(results_lib.load_budget(str(tmp_path / "family"))["s0"]) == sorted(
      {5, results["env_steps"]})


def test_a_new_middle_milestone_pauses_its_runs_training_until_it_is_evaluated(
    tmp_path, monkeypatch, capsys):
  """With every slot training, a run's middle milestone is evaluated at once: the supervisor
  pauses that run's training (its milestone is its latest checkpoint), evaluates, then lets
  the training resume. Here on one slot, with commands standing in for train.py (keeps its
  25% and 50% milestones, then trains on until killed; a second start finishes) and
  adapt.py (writes the checkpoint's results)."""
  s0, s1 = campaign.get_campaign("smoke")
  root0 = _fake_run(tmp_path, s0)
  (root0 / "run_config.gin").write_text("meta_train.milestones = (0.25, 0.5, 0.75)\n")
  root1 = _fake_run(tmp_path, s1, finished=True)  # finished and evaluated: nothing to do
  (root1 / campaign.EVALUATED).write_text(json.dumps(
      {"bindings": campaign.EVALUATION_BINDINGS["smoke"]}))
  order = tmp_path / "order.txt"
  train = ("import os, sys, time\n"
           "root, order = sys.argv[1], sys.argv[2]\n"
           "start = os.path.exists(os.path.join(root, 'started'))\n"
           "open(order, 'a').write('train again\\n' if start else 'train\\n')\n"
           "if start:\n"
           "  open(os.path.join(root, 'finished.json'), 'w').write('{}')\n"
           "  sys.exit(0)\n"
           "open(os.path.join(root, 'started'), 'w').close()\n"
           "for n in (30, 60):\n"
           "  os.makedirs(os.path.join(root, 'milestones', f'step_{n}'))\n"
           "time.sleep(120)\n")
  evaluate = ("import json, os, sys\n"
              "root, order = sys.argv[1], sys.argv[2]\n"
              "open(order, 'a').write('evaluate ' + os.path.basename(root) + '\\n')\n"
              "os.makedirs(os.path.join(root, 'eval'), exist_ok=True)\n"
              "json.dump({'test_tasks': {}}, open(os.path.join(root, 'eval', 'results.json'), "
              "'w'))\n")
  monkeypatch.setattr(campaign, "train_command", lambda run, runs_dir: [
      sys.executable, "-c", train, os.path.join(runs_dir, run.name), str(order)])
  monkeypatch.setattr(campaign, "evaluate_command", lambda run, root: [
      sys.executable, "-c", evaluate, root, str(order)])
  real_sleep = campaign.time.sleep
  monkeypatch.setattr(campaign.time, "sleep", lambda s: real_sleep(min(s, 0.3)))
  failed = campaign.supervise("smoke", str(tmp_path), parallel=1, lower_priority=False)
  assert failed == 0
  # The middle milestone before the training's end; the end, then the optional 25%.
  assert order.read_text().split("\n")[:-1] == [
      "train", "evaluate step_60", "train again", f"evaluate {root0.name}", "evaluate step_30"]
  assert f"{s0.name}: paused on core" in capsys.readouterr().out
  assert (root0 / "milestones" / "step_60" / campaign.EVALUATED).exists()


def test_only_a_fresh_middle_milestone_pauses_a_training(tmp_path):
  """_to_pause: nothing while a slot is free or one evaluates, nor for an optional milestone,
  nor for a milestone older than FRESH_MILESTONE_S (a supervisor started hours after it
  would throw away the epochs trained since: it waits for a slot)."""
  s0, s1 = campaign.get_campaign("smoke")
  milestone = tmp_path / "step_60"
  milestone.mkdir()
  train0, train1 = campaign.Job("train", s0, "r0"), campaign.Job("train", s1, "r1")
  middle = campaign.Job("evaluate", s0, str(milestone))
  to_pause = campaign._to_pause  # pylint: disable=protected-access
  now = os.path.getmtime(milestone) + 10
  assert to_pause([middle], [train0, train1], 0, now) == (train0, middle)
  assert to_pause([middle], [train1, train0], 0, now) == (train0, middle)  # its own run's
  assert to_pause([middle], [train0], 1, now) is None  # a free slot takes it
  other = campaign.Job("evaluate", s1, str(milestone))
  assert to_pause([middle], [other, train0], 0, now) is None  # one slot already evaluates
  optional = campaign.Job("evaluate", s0, str(milestone), optional=True)
  assert to_pause([optional], [train0, train1], 0, now) is None
  assert to_pause([middle], [train1], 0, now) is None  # its run is not training here
  assert to_pause([middle], [train0, train1], 0, now + campaign.FRESH_MILESTONE_S) is None


def _smoke_study(monkeypatch, guard=True):
  """The smoke campaign given an own-data study, and EVALUATION_BINDINGS with the guard."""
  bindings = campaign.EVALUATION_BINDINGS["smoke"] + (
      ["adapt_ood.guard_episodes = 1"] if guard else [])
  monkeypatch.setitem(campaign.EVALUATION_BINDINGS, "smoke", bindings)
  monkeypatch.setitem(campaign.STUDIES, "smoke", campaign.Study(("base", "real_only"), (0, 3)))
  return bindings


def _evaluated(checkpoint, env_steps, bindings):
  (checkpoint / campaign.EVALUATED).write_text(
      json.dumps({"env_steps": env_steps, "bindings": bindings}))


def test_an_evaluated_end_or_middle_milestone_gets_its_own_data_study(tmp_path, monkeypatch):
  """STUDIES: once a checkpoint is evaluated, its study is due (the end and the middle
  milestone, not the optional ones), in RUNS/studies/<run>_<k>k, run by relabel_study.py with
  the campaign's Algorithm 2 less the guard; done once STUDIED records today's settings."""
  bindings = _smoke_study(monkeypatch)
  s0, _ = campaign.get_campaign("smoke")
  root = _fake_run(tmp_path, s0, finished=True, milestones=(30_000, 60_000, 90_000))
  (root / "run_config.gin").write_text("meta_train.milestones = (0.25, 0.5, 0.75)\n")
  studies = lambda: [j.root for j in campaign.pending_jobs("smoke", str(tmp_path))
                     if j.kind == "study"]
  assert studies() == []  # nothing evaluated yet
  middle, late = root / "milestones" / "step_60000", root / "milestones" / "step_90000"
  for checkpoint, steps in ((root, 120_000), (middle, 60_000), (late, 90_000)):
    _evaluated(checkpoint, steps, bindings)
  assert studies() == [str(root), str(middle)]  # the optional 75% milestone gets none
  out = campaign.study_dir(s0, str(middle), str(tmp_path))
  assert out == str(tmp_path / "studies" / "smoke_s0_60k")
  command = campaign.study_command(s0, str(middle), out)
  assert command[1].endswith("scripts/relabel_study.py")
  assert command[2:7] == [f"--root_dir={middle}", f"--out={out}", "--variants=base,real_only",
                          "--tasks=0,3", "--nice=0"]
  assert command[7:] == ["--gin_bindings=adapt_all_test_tasks.task_indices = [0]"]  # no guard
  os.makedirs(out)
  (tmp_path / "studies" / "smoke_s0_60k" / campaign.STUDIED).write_text(json.dumps(
      {"variants": ["base", "real_only"], "tasks": [0, 3], "bindings": bindings[:1]}))
  assert studies() == [str(root)]
  assert campaign.status("smoke", str(tmp_path))[0]["studied"] == [60_000]
  assert "60k" in campaign.format_status("smoke", str(tmp_path),
                                         campaign.status("smoke", str(tmp_path)))
  monkeypatch.setitem(campaign.STUDIES, "smoke", campaign.Study(("base",), (0, 3)))
  assert studies() == [str(root), str(middle)]  # other variants: due again
  # A study takes an evaluation's place: it waits for the evaluations and, while a run
  # waits to train, for a slot that no other evaluation or study holds.
  train = campaign.Job("train", s0, "elsewhere")
  evaluation, study = campaign.Job("evaluate", s0, str(late)), campaign.Job("study", s0, str(root))
  next_job = campaign._next_job  # pylint: disable=protected-access
  assert next_job([study, evaluation], []) is evaluation
  assert next_job([train, study], [train]) is study
  assert next_job([train, study], [study]) is train
  # A study on the only other slot keeps a fresh milestone from pausing a training.
  assert campaign._to_pause([evaluation], [train, study], 0, 0) is None  # pylint: disable=protected-access


def test_the_supervisor_studies_each_checkpoint_after_its_evaluation(tmp_path, monkeypatch):
  """One slot, a finished run with its three milestones: the end and the middle milestone are
  evaluated, then studied (commands standing in for adapt.py and relabel_study.py), then the
  optional milestones evaluated; each study's STUDIED record says what it ran."""
  bindings = _smoke_study(monkeypatch, guard=False)
  s0, s1 = campaign.get_campaign("smoke")
  root0 = _fake_run(tmp_path, s0, finished=True, milestones=(30_000, 60_000, 90_000))
  (root0 / "run_config.gin").write_text("meta_train.milestones = (0.25, 0.5, 0.75)\n")
  root1 = _fake_run(tmp_path, s1, finished=True)
  _evaluated(root1, 120_000, bindings)
  (tmp_path / "studies" / "smoke_s1_120k").mkdir(parents=True)
  (tmp_path / "studies" / "smoke_s1_120k" / campaign.STUDIED).write_text(json.dumps(
      campaign.study_spec(s1)))
  order = tmp_path / "order.txt"
  evaluate = ("import json, os, sys\n"
              "root, order = sys.argv[1], sys.argv[2]\n"
              "open(order, 'a').write('evaluate ' + os.path.basename(root) + '\\n')\n"
              "os.makedirs(os.path.join(root, 'eval'), exist_ok=True)\n"
              "steps = int(os.path.basename(root)[5:]) if 'step_' in root else 120000\n"
              "json.dump({'test_tasks': {'0': {'mier': 1.0, 'mier_env_steps': steps}}}, "
              "open(os.path.join(root, 'eval', 'results.json'), 'w'))\n")
  study = ("import os, sys\n"
           "root, out, order = sys.argv[1:4]\n"
           "open(order, 'a').write('study ' + os.path.basename(out) + '\\n')\n")
  monkeypatch.setattr(campaign, "evaluate_command", lambda run, root: [
      sys.executable, "-c", evaluate, root, str(order)])
  monkeypatch.setattr(campaign, "study_command", lambda run, root, out: [
      sys.executable, "-c", study, root, out, str(order)])
  real_sleep = campaign.time.sleep
  monkeypatch.setattr(campaign.time, "sleep", lambda s: real_sleep(min(s, 0.2)))
  assert campaign.supervise("smoke", str(tmp_path), parallel=1, lower_priority=False) == 0
  assert order.read_text().split("\n")[:-1] == [
      f"evaluate {root0.name}", "evaluate step_60000", "study smoke_s0_120k",
      "study smoke_s0_60k", "evaluate step_90000", "evaluate step_30000"]
  for name in ("smoke_s0_120k", "smoke_s0_60k"):
    with open(tmp_path / "studies" / name / campaign.STUDIED) as f:
      done = json.load(f)
    assert (done["variants"], done["tasks"], done["bindings"]) == (
        ["base", "real_only"], [0, 3], bindings)
  assert campaign.status("smoke", str(tmp_path))[0]["studied"] == [60_000, 120_000]
