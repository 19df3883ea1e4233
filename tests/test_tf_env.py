"""GymnasiumPyEnvironment: specs, discounts at truncation and termination, auto-reset."""
import numpy as np
import pytest
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from mier_tf import envs


def _adapter(name, task_index=0, seed=0):
  family = envs.get_task_family(name)
  return envs.GymnasiumPyEnvironment(family.make_env(family.train_tasks[task_index]),
                                     seed=seed)


@pytest.mark.parametrize("name,obs_dim,act_dim,bound", [
    ("cheetah_vel", 17, 6, 1.0), ("ant_dir", 27, 8, 1.0), ("humanoid_dir", 348, 17, 0.4)])
def test_specs_are_float32(name, obs_dim, act_dim, bound):
  env = _adapter(name)
  obs_spec, act_spec = env.observation_spec(), env.action_spec()
  assert obs_spec.dtype == np.float32 and obs_spec.shape == (obs_dim,)
  assert isinstance(act_spec, array_spec.BoundedArraySpec)
  assert act_spec.dtype == np.float32 and act_spec.shape == (act_dim,)
  np.testing.assert_array_equal(act_spec.minimum, -bound)
  np.testing.assert_array_equal(act_spec.maximum, bound)
  assert env.reward_spec().dtype == np.float32
  first = env.reset()
  assert first.step_type == ts.StepType.FIRST
  assert first.observation.dtype == np.float32
  step = env.step(np.zeros(act_dim, np.float32))
  array_spec.check_arrays_nest(step, env.time_step_spec())
  assert step.reward.dtype == np.float32 and step.discount.dtype == np.float32
  assert env.gym_env.unwrapped.model.nu == act_dim


def test_rewards_and_observations_are_the_gym_envs():
  family = envs.get_task_family("cheetah_vel_hard")
  gym_env = family.make_env(family.train_tasks[0])
  env = envs.GymnasiumPyEnvironment(family.make_env(family.train_tasks[0]), seed=7)
  obs, _ = gym_env.reset(seed=7)
  np.testing.assert_array_equal(env.reset().observation, obs.astype(np.float32))
  rng = np.random.default_rng(1)
  for _ in range(5):
    action = rng.uniform(-1, 1, size=6).astype(np.float32)
    obs, reward, _, _, info = gym_env.step(action)
    step = env.step(action)
    np.testing.assert_array_equal(step.observation, obs.astype(np.float32))
    assert step.reward == np.float32(reward)
    assert env.get_info()["x_velocity"] == info["x_velocity"]


def test_truncation_keeps_discount_one_and_next_step_resets():
  env = _adapter("cheetah_negjoints", seed=3)
  env.reset()
  action = np.full(6, 0.3, np.float32)
  for _ in range(199):
    step = env.step(action)
    assert step.step_type == ts.StepType.MID and step.discount == 1.0
  last = env.step(action)
  assert last.step_type == ts.StepType.LAST
  assert last.discount == np.float32(1.0)
  first = env.step(action)  # ignored action: tf-agents resets after a last step
  assert first.step_type == ts.StepType.FIRST and first.reward == 0.0
  assert env.step(action).step_type == ts.StepType.MID


def test_termination_has_discount_zero_and_next_step_resets():
  env = _adapter("ant_dir_ood")
  env.reset()
  assert env.step(np.zeros(8, np.float32)).step_type == ts.StepType.MID
  raw = env.gym_env.unwrapped
  qpos = raw.data.qpos.copy()
  qpos[2] = 1.5  # torso above the healthy range [0.2, 1.0]
  raw.set_state(qpos, raw.data.qvel.copy())
  last = env.step(np.zeros(8, np.float32))
  assert last.step_type == ts.StepType.LAST and last.discount == 0.0
  first = env.step(np.zeros(8, np.float32))
  assert first.step_type == ts.StepType.FIRST
  assert 0.2 <= raw.data.qpos[2] <= 1.0


def test_seed_fixes_the_first_reset_only():
  obs_a = _adapter("ant_negjoints", seed=11).reset().observation
  env_b = _adapter("ant_negjoints", seed=11)
  np.testing.assert_array_equal(obs_a, env_b.reset().observation)
  assert not np.array_equal(obs_a, _adapter("ant_negjoints", seed=12).reset().observation)
  # Later resets draw new reset noise from the seeded stream.
  assert not np.array_equal(obs_a, env_b.reset().observation)
