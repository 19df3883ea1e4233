"""mier_tf.references and scripts/references.py: the floor and the oracles of the results."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mier_tf import envs
from mier_tf import references

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_SAC = dict(actor_fc_layers=(8,), critic_fc_layers=(8,))


def test_standing_still_on_a_velocity_task_is_minus_the_target_speed_per_step():
  # Zero torque: the cheetah stays where it fell, v ~ 0, so each of the 200 steps pays
  # -|0 - v_target| and nothing for control.
  family = envs.get_task_family("cheetah_vel_hard")
  v = family.test_tasks[12]
  assert references.standing_still(family, v) == pytest.approx(-200 * v, rel=0.01)


def test_the_ring_keeps_the_last_rows_and_samples_one_task_batches():
  ring = references.TransitionRing(3, 2, 1, np.random.default_rng(0))
  rows = lambda start, n: dict(observation=np.arange(start, start + n)[:, None].repeat(2, 1),
                               action=np.zeros((n, 1)), reward=np.arange(start, start + n),
                               next_observation=np.zeros((n, 2)), discount=np.ones(n))
  ring.add(rows(0, 2))
  ring.add(rows(2, 2))  # wraps: row 3 overwrites row 0
  assert len(ring) == 3
  batch = ring.sample(50)
  assert batch["observation"].shape == (1, 50, 2) and batch["reward"].shape == (1, 50)
  assert set(batch["reward"].numpy().ravel()) == {1.0, 2.0, 3.0}


def test_oracle_checkpoints_must_be_whole_episodes():
  family = envs.get_task_family("cheetah_vel_hard")
  with pytest.raises(ValueError, match="multiples of the episode length 200"):
    references.oracle_long(family, family.test_tasks[0], [300])


def test_the_oracle_on_mier_s_data_is_seeded_and_uses_its_budget(monkeypatch):
  # What each run spent, counted as it runs: the transitions put in its replay, and the
  # SAC updates its agent counted (read at its end).
  added, updates = [], []
  single_task_sac = references._SingleTaskSac  # pylint: disable=protected-access
  add, close = references.TransitionRing.add, single_task_sac.close
  monkeypatch.setattr(references.TransitionRing, "add",
                      lambda ring, rows: added.append(len(rows["reward"])) or add(ring, rows))
  monkeypatch.setattr(single_task_sac, "close",
                      lambda run: updates.append(int(run.agent.train_step_counter)) or close(run))
  family = envs.get_task_family("cheetah_vel_hard")
  task = family.test_tasks[0]
  first = references.oracle_same_data(family, task, 200, 4, seed=1, batch_size=16,
                                      sac_kwargs=SMALL_SAC)
  again = references.oracle_same_data(family, task, 200, 4, seed=1, batch_size=16,
                                      sac_kwargs=SMALL_SAC)
  assert added == [200, 200] and updates == [4, 4]  # each run's, one after the other
  assert np.isfinite(first["greedy_return"])
  assert first["greedy_return"] == again["greedy_return"]


def _family_dir(root):
  """A saved run of one seed that relabeled test task 3, with tiny SAC settings."""
  os.makedirs(os.path.join(root, "s0", "eval"))
  with open(os.path.join(root, "s0", "eval", "results.json"), "w") as f:
    json.dump({"env_steps": 1, "test_tasks": {
        "3": {"task": "v=2.559", "standing_still": -420.0, "mier_wr": -400.0, "mier": -380.0},
        "4": {"task": "v=2.2", "standing_still": -440.0, "mier_wr": -400.0}}}, f)
  with open(os.path.join(root, "s0", "operative_config.gin"), "w") as f:
    f.write("MetaTrainingRun.family = 'cheetah_vel_hard'\n"
            "adapt_ood.adapt_data_steps = 200\nadapt_ood.num_epochs = 1\n"
            "adapt_ood.steps_per_epoch = 3\nadapt_ood.updates_per_step = 1\n"
            "adapt_ood.batch_size = 16\ncreate_sac_agent.actor_fc_layers = (8,)\n"
            "create_sac_agent.critic_fc_layers = (8,)\ncreate_sac_agent.target_entropy = -3.0\n")


def test_the_script_writes_each_relabeled_task_once_and_the_table_shows_it(tmp_path):
  root = str(tmp_path / "family")
  _family_dir(root)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
  command = [sys.executable, "scripts/references.py", f"--family_dir={root}",
             "--oracle_steps=200,400"]
  proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert os.listdir(os.path.join(root, "references")) == ["task_3.json"]  # 4: not relabeled
  with open(os.path.join(root, "references", "task_3.json")) as f:
    entry = json.load(f)
  assert entry["sac"] == {"actor_fc_layers": [8], "critic_fc_layers": [8],
                          "target_entropy": -3.0}
  assert (entry["oracle_same_data"]["data_steps"], entry["oracle_same_data"]["updates"]) == (
      200, 3)
  assert sorted(entry["oracle_long"]["returns"]) == ["200", "400"]
  v = envs.get_task_family("cheetah_vel_hard").test_tasks[3]
  assert entry["standing_still"] == pytest.approx(-200 * v, rel=0.01)
  # Run again: every part is there with the same settings, so nothing is recomputed (a
  # recomputed oracle would record other CPU seconds).
  again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
  assert again.returncode == 0, again.stderr[-2000:]
  with open(os.path.join(root, "references", "task_3.json")) as f:
    assert json.load(f) == entry
  table = subprocess.run([sys.executable, "scripts/results_table.py", f"--family_dir={root}"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert "| oracle, MIER's data |" in table.stdout and "| 3 (v=2.559) |" in table.stdout
  # `make results` writes the same table beside the runs (no plots: no scalars were saved).
  regen = subprocess.run([sys.executable, "scripts/regenerate_results.py",
                          f"--results_dir={tmp_path}"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
  assert regen.returncode == 0, regen.stderr[-2000:]
  with open(os.path.join(root, "table.md")) as f:
    assert f.read() == table.stdout
  assert not os.path.exists(os.path.join(root, "mier_vs_mier_wr.png"))
  bad = subprocess.run(command + ["--tasks=99"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120)
  assert bad.returncode != 0 and "test task 99 out of range" in bad.stderr


def test_references_of_runs_still_training_use_the_config_and_the_evaluation_bindings(
    tmp_path):
  """With --tasks only a seed's operative config is read (no results yet), and
  --gin_bindings override it as the campaign's Algorithm 2 does."""
  root = str(tmp_path / "family")
  _family_dir(root)
  os.remove(os.path.join(root, "s0", "eval", "results.json"))
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
  command = [sys.executable, "scripts/references.py", f"--family_dir={root}",
             "--only=same_data", "--tasks=4", "--gin_bindings=adapt_ood.num_epochs = 2",
             "--gin_bindings=adapt_ood.updates_per_step = 3"]
  proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(os.path.join(root, "references", "task_4.json")) as f:
    entry = json.load(f)
  # 2 epochs x 3 steps x 3 updates (the config alone: 1 x 3 x 1).
  assert entry["oracle_same_data"]["updates"] == 18
  assert entry["oracle_same_data"]["data_steps"] == 200 and "oracle_long" not in entry
  bad = subprocess.run(command + ["--gin_bindings=num_epochs"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
  assert bad.returncode != 0 and "not a binding" in bad.stderr.strip().splitlines()[-1]
  no_tasks = subprocess.run(command[:4], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
  assert no_tasks.returncode != 0 and "no <seed>/eval/results.json" in no_tasks.stderr


def test_one_command_per_family_runs_the_seeds_then_the_references_then_the_tables():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
  proc = subprocess.run([sys.executable, "scripts/reproduce_results.py",
                         "--gin_file=gin/cheetah_negjoints_cpu.gin", "--seeds=1,2",
                         "--oracle_steps=10000,50000", "--dry_run"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.splitlines() == [
      "$ scripts/train.py --gin_file=gin/cheetah_negjoints_cpu.gin --seed=1 "
      "--root_dir=runs/cheetah_negjoints_cpu_s1",
      "$ scripts/save_run.py --root_dir=runs/cheetah_negjoints_cpu_s1 "
      "--out_dir=docs/results/cheetah_negjoints_cpu/s1",
      "$ scripts/train.py --gin_file=gin/cheetah_negjoints_cpu.gin --seed=2 "
      "--root_dir=runs/cheetah_negjoints_cpu_s2",
      "$ scripts/save_run.py --root_dir=runs/cheetah_negjoints_cpu_s2 "
      "--out_dir=docs/results/cheetah_negjoints_cpu/s2",
      "$ scripts/references.py --family_dir=docs/results/cheetah_negjoints_cpu "
      "--oracle_steps=10000,50000",
      "$ scripts/regenerate_results.py --results_dir=docs/results"]
  bad = subprocess.run([sys.executable, "scripts/reproduce_results.py",
                        "--gin_file=gin/nope.gin"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=60)
  assert bad.returncode == 2 and "gin file not found: gin/nope.gin" in bad.stderr
