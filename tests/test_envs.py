"""Task families: registry, task draws, rewards recomputed from the physics, terminations."""
import hashlib
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from mier_tf import envs
from mier_tf.envs import robots

NAMES = [
    "ant_dir", "ant_dir_ood", "ant_negjoints", "cheetah_dir", "cheetah_negjoints",
    "cheetah_vel", "cheetah_vel_hard", "cheetah_vel_medium", "humanoid_dir",
    "walker_rand_params", "walker_rand_params_ood",
]
# name -> (observation dim, action dim, action bound, #train, #test)
SHAPES = {
    "cheetah_vel_medium": (17, 6, 1.0, 100, 30),
    "cheetah_vel_hard": (17, 6, 1.0, 100, 30),
    "cheetah_vel": (17, 6, 1.0, 100, 30),
    "cheetah_dir": (17, 6, 1.0, 2, 2),
    "ant_dir_ood": (27, 8, 1.0, 100, 10),
    "ant_dir": (27, 8, 1.0, 2, 2),
    "cheetah_negjoints": (17, 6, 1.0, 10, 10),
    "ant_negjoints": (27, 8, 1.0, 35, 35),
    "humanoid_dir": (348, 17, 0.4, 100, 30),
    "walker_rand_params": (17, 6, 1.0, 40, 10),
    "walker_rand_params_ood": (17, 6, 1.0, 40, 20),
}


def test_registry_names_and_unknown_name():
  assert envs.task_family_names() == NAMES
  with pytest.raises(ValueError) as error:
    envs.get_task_family("cheetah_velocity")
  message = str(error.value)
  assert "\n" not in message
  assert all(name in message for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_split_sizes(name):
  obs_dim, act_dim, bound, num_train, num_test = SHAPES[name]
  family = envs.get_task_family(name)
  assert family.name == name
  assert (family.observation_dim, family.action_dim) == (obs_dim, act_dim)
  assert (len(family.train_tasks), len(family.test_tasks)) == (num_train, num_test)
  assert family.max_episode_steps == 200
  env = family.make_env(family.test_tasks[-1])
  obs, _ = env.reset(seed=0)
  assert obs.shape == (obs_dim,)
  np.testing.assert_array_equal(env.action_space.low, -bound)
  np.testing.assert_array_equal(env.action_space.high, bound)
  assert env.action_space.shape == (act_dim,)
  obs, _, _, _, _ = env.step(env.action_space.sample())
  assert obs.shape == (obs_dim,)
  assert isinstance(family.describe_task(family.train_tasks[0]), str)


def _sign_vectors(n):
  return [np.array(signs) for signs in itertools.product([1.0, -1.0], repeat=n)]


@pytest.mark.parametrize("name,num_joints,free,train_negated,test_negated", [
    ("cheetah_negjoints", 6, 5, 3, 2),
    ("ant_negjoints", 8, 7, 4, 3),
])
def test_negated_joint_masks(name, num_joints, free, train_negated, test_negated):
  family = envs.get_task_family(name)
  # Expected sets by brute force over every sign vector, not by combinations.
  expected_train = {tuple(m) for m in _sign_vectors(num_joints)
                    if m[-1] == 1 and np.sum(m[:free] < 0) == train_negated}
  expected_test = {tuple(m) for m in _sign_vectors(num_joints)
                   if m[-1] == -1 and np.sum(m[:free] < 0) == test_negated}
  train = [tuple(m) for m in family.train_tasks]
  test = [tuple(m) for m in family.test_tasks]
  assert len(set(train)) == len(train) and set(train) == expected_train
  assert len(set(test)) == len(test) and set(test) == expected_test
  assert all(m[-1] == 1.0 for m in train) and all(m[-1] == -1.0 for m in test)
  # itertools.combinations order: the first mask negates the lowest joints.
  first = np.ones(num_joints)
  first[:train_negated] = -1
  np.testing.assert_array_equal(family.train_tasks[0], first)


@pytest.mark.parametrize("name,train_range,test_range", [
    ("cheetah_vel_medium", (0.0, 2.5), (2.5, 3.0)),
    ("cheetah_vel_hard", (0.0, 1.5), (2.5, 3.0)),
    ("cheetah_vel", (0.0, 3.0), (0.0, 3.0)),
    ("ant_dir_ood", (0.0, 1.5 * np.pi), (1.5 * np.pi, 2 * np.pi)),
    ("humanoid_dir", (0.0, 2 * np.pi), (0.0, 2 * np.pi)),
])
def test_uniform_task_ranges(name, train_range, test_range):
  family = envs.get_task_family(name)
  for tasks, (low, high) in [(family.train_tasks, train_range),
                             (family.test_tasks, test_range)]:
    values = np.array(tasks)
    assert all(isinstance(t, float) for t in tasks)
    assert np.all((values >= low) & (values <= high))
    assert len(set(tasks)) == len(tasks)
    # Spread over the whole range, not a sliver of it.
    assert values.min() < low + 0.2 * (high - low)
    assert values.max() > high - 0.2 * (high - low)


def test_discrete_directions():
  np.testing.assert_allclose(envs.get_task_family("ant_dir_ood").test_tasks,
                             np.linspace(1.5 * np.pi, 2 * np.pi, 10))
  for name, expected in [("cheetah_dir", {-1.0, 1.0}), ("ant_dir", {0.0, np.pi})]:
    family = envs.get_task_family(name)
    assert set(family.train_tasks) == expected and set(family.test_tasks) == expected


def test_walker_parameter_draws():
  defaults = robots.walker_default_params()
  family = envs.get_task_family("walker_rand_params")
  ood = envs.get_task_family("walker_rand_params_ood")
  assert ood.train_tasks is family.train_tasks or all(
      all(np.array_equal(a[k], b[k]) for k in a)
      for a, b in zip(ood.train_tasks, family.train_tasks))
  base = {"body_mass": 1.5, "body_inertia": 1.5, "dof_damping": 1.3, "geom_friction": 1.5}
  for task in family.train_tasks + family.test_tasks:
    assert set(task) == set(base)
    for name, value in task.items():
      nonzero = defaults[name] != 0
      np.testing.assert_array_equal(value[~nonzero], 0.0)
      exponent = np.log(value[nonzero] / defaults[name][nonzero]) / np.log(base[name])
      assert np.all(np.abs(exponent) <= 3.0)
  # Exponents fill U(-3, 3): mean 0, variance 3.
  exponents = np.concatenate([
      np.log(t[n][defaults[n] != 0] / defaults[n][defaults[n] != 0]) / np.log(base[n])
      for t in family.train_tasks for n in base])
  assert abs(exponents.mean()) < 0.15 and abs(exponents.var() - 3.0) < 0.3
  # OOD: abs(Normal(mean_train + 5 std_train, std_train)) entry by entry.
  z_scores = []
  for name in base:
    values = np.stack([t[name] for t in family.train_tasks])
    mean, std = values.mean(axis=0), values.std(axis=0)
    for task in ood.test_tasks:
      assert np.all(task[name] >= 0)
      varies = std > 0
      z_scores.append((task[name] - mean - 5 * std)[varies] / std[varies])
  z_scores = np.concatenate(z_scores)
  assert abs(z_scores.mean()) < 0.1 and abs(z_scores.std() - 1.0) < 0.1


def _tasks_digest_source():
  return (
      "import hashlib, numpy as np\n"
      "from mier_tf.envs import families\n"
      "h = hashlib.sha256()\n"
      "for name in families.task_family_names():\n"
      "  f = families.get_task_family(name)\n"
      "  for t in f.train_tasks + f.test_tasks:\n"
      "    parts = [t[k] for k in sorted(t)] if isinstance(t, dict) else [t]\n"
      "    for p in parts:\n"
      "      h.update(np.asarray(p, dtype=np.float64).tobytes())\n"
      "print(h.hexdigest())\n")


def test_task_parameters_identical_in_another_process():
  namespace = {}
  source = _tasks_digest_source().replace("print(h.hexdigest())", "digest = h.hexdigest()")
  exec(source, namespace)  # pylint: disable=exec-used
  result = subprocess.run([sys.executable, "-c", _tasks_digest_source()],
                          capture_output=True, text=True, check=True, timeout=120)
  assert result.stdout.strip() == namespace["digest"]
  assert hashlib.sha256(b"").hexdigest() != namespace["digest"]


# Table formulas, written out from the physics state before / after the step.

def _mass_centre(model, data):
  mass = model.body_mass[:, None]
  return (np.sum(mass * data.xipos, axis=0) / np.sum(mass))[:2]


def _cheetah_reward(name, task, before, env, action):
  x_vel = (env.data.qpos[0] - before["qpos"][0]) / (5 * env.model.opt.timestep)
  if name.startswith("cheetah_vel"):
    return -abs(x_vel - task) - 0.05 * np.sum(action**2)
  if name == "cheetah_dir":
    return task * x_vel - 0.05 * np.sum(action**2)
  return x_vel - 0.1 * np.sum(action**2)


def _ant_reward(name, task, before, env, action):
  torso = env.data.body("torso").xpos[:2]
  velocity = (torso - before["torso"]) / env.dt
  direction = np.array([1.0, 0.0]) if name == "ant_negjoints" else np.array(
      [np.cos(task), np.sin(task)])
  contact = 5e-4 * np.sum(np.clip(env.data.cfrc_ext, -1, 1)**2)
  return velocity @ direction - 0.5 * np.sum(action**2) - contact + 1.0


def _humanoid_reward(name, task, before, env, action):
  del name
  displacement = _mass_centre(env.model, env.data) - before["com"]
  forward = 0.25 * displacement @ np.array([np.cos(task), np.sin(task)])
  forward /= env.model.opt.timestep
  contact = min(0.5e-6 * np.sum(env.data.cfrc_ext**2), 10.0)
  return forward - 0.1 * np.sum(action**2) - contact + 5.0


def _walker_reward(name, task, before, env, action):
  del name, task
  x_vel = (env.data.qpos[0] - before["qpos"][0]) / (4 * env.model.opt.timestep)
  z, angle = env.data.qpos[1:3]
  healthy = 0.8 < z < 2.0 and -1.0 < angle < 1.0
  return x_vel + float(healthy) - 1e-3 * np.sum(action**2)


@pytest.mark.parametrize("name,task_index,formula", [
    ("cheetah_vel_hard", 3, _cheetah_reward),
    ("cheetah_dir", 0, _cheetah_reward),
    ("cheetah_negjoints", 4, _cheetah_reward),
    ("ant_dir_ood", 7, _ant_reward),
    ("ant_dir", 1, _ant_reward),
    ("ant_negjoints", 20, _ant_reward),
    ("humanoid_dir", 5, _humanoid_reward),
    ("walker_rand_params", 2, _walker_reward),
    ("walker_rand_params_ood", 1, _walker_reward),
])
def test_reward_matches_table(name, task_index, formula):
  family = envs.get_task_family(name)
  task = family.test_tasks[task_index]
  env = family.make_env(task)
  raw = env.unwrapped
  env.reset(seed=task_index)
  rng = np.random.default_rng(0)
  low, high = env.action_space.low, env.action_space.high
  touched_ground = False
  for _ in range(16):  # the humanoid's feet reach the ground after about 10 steps
    action = rng.uniform(low, high)
    before = {"qpos": raw.data.qpos.copy(), "com": _mass_centre(raw.model, raw.data)}
    if name.startswith("ant"):
      before["torso"] = raw.data.body("torso").xpos[:2].copy()
    _, reward, terminated, truncated, _ = env.step(action)
    assert not terminated and not truncated
    assert reward == pytest.approx(formula(name, task, before, raw, action), rel=1e-9,
                                   abs=1e-9)
    expected_ctrl = action * task if name.endswith("negjoints") else action
    np.testing.assert_allclose(raw.data.ctrl, expected_ctrl)
    touched_ground |= bool(np.any(raw.data.cfrc_ext != 0))
  assert touched_ground  # so the contact costs above were not all zero
  if name.startswith("walker"):
    for key, value in task.items():
      np.testing.assert_array_equal(getattr(raw.model, key), value)


def test_set_task_switches_without_rebuilding():
  # Target velocity: same physics, rewards differ by the formula.
  family = envs.get_task_family("cheetah_vel")
  env = family.make_env(1.0)
  raw, model = env.unwrapped, env.unwrapped.model
  action = np.full(6, 0.5)
  rewards, infos = [], []
  for v in (1.0, 2.5):
    raw.set_task(v)
    env.reset(seed=3)
    _, reward, _, _, info = env.step(action)
    rewards.append(reward)
    infos.append(info)
  x_vel = infos[0]["x_velocity"]
  assert infos[1]["x_velocity"] == x_vel
  assert rewards[0] - rewards[1] == pytest.approx(abs(x_vel - 2.5) - abs(x_vel - 1.0))
  assert raw.model is model

  # Joint mask: the actuators receive the new mask times the action.
  family = envs.get_task_family("ant_negjoints")
  env = family.make_env(family.train_tasks[0])
  raw = env.unwrapped
  for mask in (family.train_tasks[0], family.test_tasks[-1]):
    raw.set_task(mask)
    env.reset(seed=0)
    env.step(np.linspace(-0.5, 0.5, 8))
    np.testing.assert_allclose(raw.data.ctrl, mask * np.linspace(-0.5, 0.5, 8))

  # Walker parameters: written to the model; the defaults come back with the next task.
  family = envs.get_task_family("walker_rand_params")
  env = family.make_env(family.train_tasks[0])
  raw, model = env.unwrapped, env.unwrapped.model
  np.testing.assert_array_equal(model.body_mass, family.train_tasks[0]["body_mass"])
  raw.set_task({"dof_damping": family.train_tasks[1]["dof_damping"]})
  assert raw.model is model
  defaults = robots.walker_default_params()
  np.testing.assert_array_equal(model.body_mass, defaults["body_mass"])
  np.testing.assert_array_equal(model.geom_friction, defaults["geom_friction"])
  np.testing.assert_array_equal(model.dof_damping, family.train_tasks[1]["dof_damping"])
  with pytest.raises(ValueError):
    raw.set_task({"body_mass": np.ones(3)})
  with pytest.raises(ValueError):
    envs.get_task_family("cheetah_negjoints").make_env(np.array([1, -1, 0.5, 1, 1, 1]))


@pytest.mark.parametrize("name,height", [
    ("ant_dir", 1.5), ("ant_negjoints", 1.2), ("humanoid_dir", 0.6),
    ("walker_rand_params", 0.5)])
def test_falling_out_of_the_healthy_range_terminates(name, height):
  family = envs.get_task_family(name)
  env = family.make_env(family.train_tasks[0])
  raw = env.unwrapped
  env.reset(seed=0)
  _, _, terminated, _, _ = env.step(np.zeros(family.action_dim))
  assert not terminated
  qpos = raw.data.qpos.copy()
  qpos[1 if name.startswith("walker") else 2] = height
  raw.set_state(qpos, np.zeros_like(raw.data.qvel))
  _, _, terminated, truncated, _ = env.step(np.zeros(family.action_dim))
  assert terminated and not truncated


def test_episode_is_truncated_at_200_steps():
  family = envs.get_task_family("cheetah_negjoints")
  env = family.make_env(family.train_tasks[0])
  env.reset(seed=0)
  for step in range(1, 201):
    _, _, terminated, truncated, _ = env.step(env.action_space.sample())
    assert not terminated
    assert truncated == (step == 200)


def test_mujoco_warnings_do_not_write_a_log_file(tmp_path):
  source = (
      "import numpy as np, mujoco\n"
      "import mier_tf.envs.robots\n"
      "m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><body><joint type=\"slide\"/>"
      "<geom size=\".1\"/></body></worldbody></mujoco>')\n"
      "d = mujoco.MjData(m); d.qvel[:] = np.nan; mujoco.mj_step(m, d)\n")
  result = subprocess.run([sys.executable, "-c", source], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
  assert result.returncode == 0, result.stderr
  assert "Nan, Inf or huge value" in result.stderr  # logged, not lost
  assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


# Ant's contact cost depends on the solver's warm start, which no observation holds.
@pytest.mark.parametrize("name, reward_tolerance", [
    ("cheetah_vel_hard", 1e-6), ("cheetah_negjoints", 1e-6), ("ant_dir_ood", 0.03)])
def test_a_step_from_an_observation_is_the_simulators_step(name, reward_tolerance):
  """Stepping from the state an observation describes gives what the episode gave."""
  family = envs.get_task_family(name)
  task = family.test_tasks[0]
  env = family.make_env(task)
  rng = np.random.default_rng(0)
  obs, _ = env.reset(seed=1)
  steps = []
  for _ in range(30):
    action = rng.uniform(-1, 1, family.action_dim).astype(np.float32)
    next_obs, reward, terminated, _, _ = env.step(action)
    steps.append((obs, action, next_obs, reward))
    obs = next_obs
    if terminated:
      break
  replay = family.make_env(task)
  replay.reset(seed=2)
  assert len(steps) > 10
  for obs, action, next_obs, reward in steps[5:]:
    got_obs, got_reward = robots.step_from_observation(replay, obs, action)
    np.testing.assert_allclose(got_obs, next_obs, atol=1e-6)
    assert got_reward == pytest.approx(reward, abs=reward_tolerance)


def test_a_step_from_an_observation_needs_the_state_in_the_observation():
  family = envs.get_task_family("walker_rand_params")
  env = family.make_env(family.train_tasks[0])
  obs, _ = env.reset(seed=0)
  with pytest.raises(NotImplementedError, match="not its state"):
    robots.step_from_observation(env, obs, np.zeros(family.action_dim))


# --- Terminations on (predicted) next observations: TaskFamily.termination ---------------

TERMINATING = ("ant_dir", "ant_dir_ood", "ant_negjoints", "humanoid_dir", "walker_rand_params",
               "walker_rand_params_ood")


@pytest.mark.parametrize("name", NAMES)
def test_only_the_robots_that_fall_have_a_termination_rule(name):
  rule = envs.get_task_family(name).termination
  assert (rule is not None) == (name in TERMINATING)


def test_ant_termination_rule_by_hand():
  """Ant: the torso z (obs[0]: qpos[2], x and y excluded) must lie in [0.2, 1.0]."""
  family = envs.get_task_family("ant_negjoints")
  rule = family.termination
  states = np.zeros((3, 27), np.float32)
  states[:, 0] = [0.1, 0.5, 1.2]
  states[:, 1:] = 0.3  # the other entries never matter while finite
  np.testing.assert_array_equal(rule.terminated(states), [True, False, True])
  np.testing.assert_array_equal(rule.healthy(states), [False, True, False])
  # The bounds are healthy (gymnasium: min_z <= z <= max_z); a non-finite entry is not.
  edges = np.zeros((5, 27))
  edges[:, 0] = [0.2, 1.0, 0.1999, 1.0001, 0.5]
  edges[4, 20] = np.nan
  np.testing.assert_array_equal(rule.terminated(edges), [False, False, True, True, True])
  # Batched: any leading shape.
  np.testing.assert_array_equal(rule.terminated(states.reshape(1, 3, 27)), [[True, False, True]])


def test_humanoid_and_walker_termination_rules_by_hand():
  humanoid = envs.get_task_family("humanoid_dir").termination
  states = np.zeros((5, 348))
  states[:, 0] = [0.9, 1.0, 1.4, 2.0, 2.1]  # torso z, strictly inside (1, 2)
  states[:, 5] = np.nan  # gymnasium's humanoid checks no finiteness
  np.testing.assert_array_equal(humanoid.terminated(states), [True, True, False, True, True])
  walker = envs.get_task_family("walker_rand_params").termination
  states = np.zeros((6, 17))
  states[:, 0] = [1.2, 0.8, 2.0, 1.2, 1.2, 0.5]    # torso z (qpos[1]) in (0.8, 2)
  states[:, 1] = [0.0, 0.0, 0.0, 1.0, -0.99, 0.0]  # torso angle (qpos[2]) in (-1, 1)
  np.testing.assert_array_equal(walker.terminated(states),
                                [False, True, True, True, False, True])


# family, qpos index of the torso height, qpos index of an angle gymnasium checks (or None)
_HEALTH_CASES = [("ant_negjoints", 2, None), ("humanoid_dir", 2, None),
                 ("walker_rand_params_ood", 1, 2)]


@pytest.mark.parametrize("name,z_index,angle_index", _HEALTH_CASES)
def test_termination_rule_is_gymnasiums_is_healthy(name, z_index, angle_index):
  """The rule on the observation decides as gymnasium's `is_healthy` on the physics state,
  for states set at and around the bounds (and non-finite velocities)."""
  family = envs.get_task_family(name)
  env = family.make_env(family.train_tasks[0])
  raw, rule = env.unwrapped, family.termination
  env.reset(seed=0)
  base_qpos, base_qvel = raw.data.qpos.copy(), raw.data.qvel.copy()
  heights = [-0.1, 0.1, 0.2, 0.5, 0.8, 1.0, 1.2, 1.5, 2.0, 2.5]
  angles = [-1.5, -1.0, 0.0, 0.99, 1.0, 1.5] if angle_index is not None else [None]
  decisions = set()
  for z in heights:
    for angle in angles:
      qpos = base_qpos.copy()
      qpos[z_index] = z
      if angle is not None:
        qpos[angle_index] = angle
      raw.set_state(qpos, base_qvel)
      healthy = bool(raw.is_healthy)
      assert bool(rule.healthy(raw._get_obs())) == healthy, (z, angle)
      decisions.add(healthy)
  assert decisions == {True, False}
  # A non-finite velocity (set without stepping: MuJoCo would reset it): only Ant's
  # gymnasium rule checks finiteness, and so does ours.
  raw.set_state(base_qpos, base_qvel)
  raw.data.qvel[3] = np.nan
  assert bool(rule.healthy(raw._get_obs())) == bool(raw.is_healthy)
  assert bool(raw.is_healthy) == (name != "ant_negjoints")


@pytest.mark.parametrize("name,z_index,angle_index", _HEALTH_CASES)
def test_termination_rule_agrees_with_the_simulators_terminated(name, z_index, angle_index):
  """Dropped from several heights (the robot falls through, or flies out of, the healthy
  range), then random actions: on every step the rule on the next observation says what the
  env's `terminated` says."""
  del angle_index
  family = envs.get_task_family(name)
  env = family.make_env(family.train_tasks[0])
  raw, rule = env.unwrapped, family.termination
  rng = np.random.default_rng(0)
  outcomes = []
  starts = [0.1, 0.5, 1.2, 2.5] if name.startswith("ant") else [0.5, 1.25, 2.5]
  for z in starts:
    env.reset(seed=1)
    qpos = raw.data.qpos.copy()
    qpos[z_index] = z
    raw.set_state(qpos, np.zeros_like(raw.data.qvel))
    for t in range(40):
      action = (np.zeros(family.action_dim) if t < 20 else
                rng.uniform(env.action_space.low, env.action_space.high))
      obs, _, terminated, _, _ = raw.step(action)
      assert bool(rule.terminated(obs)) == terminated, (z, t, obs[:2])
      outcomes.append(terminated)
  assert any(outcomes) and not all(outcomes)
