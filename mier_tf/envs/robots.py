"""Task-conditioned MuJoCo robots over gymnasium's v5 environments.

Every class here subclasses a gymnasium v5 robot (HalfCheetah, Ant, Humanoid, Walker2d),
keeps its physics, observation and action space, and replaces the reward with the one of
the MIER task families (docs/ALGORITHM.md, table "Task families"). Rewards are recomputed from
the physics state before and after each step with the weights written out here, so they do
not depend on gymnasium's default reward weights.

One env object serves every task of its family: `set_task(task)` switches the target
velocity, direction, joint mask or body parameters in place, without rebuilding MuJoCo.

Action spaces are each robot's own: Box(-1, 1) for HalfCheetah (6), Ant (8) and
Walker2d (6); Box(-0.4, 0.4) for Humanoid (17).
"""
import dataclasses
import functools
import logging
from typing import Any, Dict, Mapping, Optional, Tuple

import mujoco
import numpy as np
import gymnasium
from gymnasium import utils
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.humanoid_v5 import HumanoidEnv, mass_center
from gymnasium.envs.mujoco.mujoco_env import expand_model_path
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

_MUJOCO_LOGGER = logging.getLogger("mujoco")


def _log_mujoco_warning(message: str) -> None:
  _MUJOCO_LOGGER.warning("MuJoCo: %s", message)


# MuJoCo's default warning handler appends every warning (unstable simulation, and in
# MuJoCo 4 the deprecated `settotalmass` of the cheetah model) to MUJOCO_LOG.TXT in the
# current directory. Route warnings to `logging` instead, unless the process installed a
# handler of its own already.
if mujoco.get_mju_user_warning() is None:
  mujoco.set_mju_user_warning(_log_mujoco_warning)

# Weights of the per-step rewards, docs/ALGORITHM.md "Task families".
CHEETAH_VEL_CTRL_COST = 0.05
CHEETAH_NEGJOINTS_CTRL_COST = 0.1
ANT_CTRL_COST = 0.5
ANT_CONTACT_COST = 5e-4
ANT_CONTACT_FORCE_RANGE = (-1.0, 1.0)
ANT_ALIVE_BONUS = 1.0
ANT_HEALTHY_Z_RANGE = (0.2, 1.0)
HUMANOID_FORWARD_WEIGHT = 0.25
HUMANOID_CTRL_COST = 0.1
HUMANOID_CONTACT_COST = 0.5e-6
HUMANOID_CONTACT_COST_MAX = 10.0
HUMANOID_ALIVE_BONUS = 5.0
HUMANOID_HEALTHY_Z_RANGE = (1.0, 2.0)
WALKER_HEALTHY_Z_RANGE = (0.8, 2.0)
WALKER_HEALTHY_ANGLE_RANGE = (-1.0, 1.0)

# Walker random parameters: each entry is multiplied by base ** u, u ~ U(-3, 3).
WALKER_PARAM_BASES: Dict[str, float] = {
    "body_mass": 1.5,
    "body_inertia": 1.5,
    "dof_damping": 1.3,
    "geom_friction": 1.5,
}
WALKER_LOG_SCALE_LIMIT = 3.0
WALKER_XML = "walker2d_v5.xml"


@dataclasses.dataclass(frozen=True)
class HealthyStateRule:
  """A robot's healthy-state rule, read from (batched) observations.

  An episode of the robot ends (`terminated`) when the state after a step is not healthy.
  The rule is gymnasium v5's `is_healthy` of that robot, written on the observation (every
  entry it reads is one, with the translation coordinates excluded), so it also decides
  whether a state that a model predicted (relabeling) ends its episode.

  Attributes:
    ranges: (observation index, low, high, name) of each entry that must lie in its range.
    closed: whether the bounds themselves are healthy (Ant: low <= z <= high) or not
      (Humanoid, Walker2d: low < z < high), as each gymnasium robot compares.
    require_finite: whether every entry must also be finite (Ant: gymnasium checks the whole
      state vector qpos, qvel; x and y are not in the observation, so not checked here).
  """

  ranges: Tuple[Tuple[int, float, float, str], ...]
  closed: bool
  require_finite: bool

  def healthy(self, observation: np.ndarray) -> np.ndarray:
    """Whether each state is healthy: bool [...] for observations [..., observation_dim]."""
    observation = np.asarray(observation, np.float64)
    healthy = np.ones(observation.shape[:-1], bool)
    with np.errstate(invalid="ignore"):
      for index, low, high, _ in self.ranges:
        value = observation[..., index]
        healthy &= ((low <= value) & (value <= high) if self.closed
                    else (low < value) & (value < high))
    if self.require_finite:
      healthy &= np.all(np.isfinite(observation), axis=-1)
    return healthy

  def terminated(self, observation: np.ndarray) -> np.ndarray:
    """Whether a step that ends in each state ends its episode: bool [...]."""
    return ~self.healthy(observation)

  def describe(self) -> str:
    low_op = "<=" if self.closed else "<"
    parts = [f"{low} {low_op} {name} (obs[{index}]) {low_op} {high}"
             for index, low, high, name in self.ranges]
    if self.require_finite:
      parts.append("finite observation")
    return " and ".join(parts)


# Observation indices: gymnasium v5 observations with exclude_current_positions_from_
# observation=True start with qpos less its translation coordinates, so obs[0] is the torso
# height qpos[2] for Ant and Humanoid (qpos[:2] = x, y excluded) and qpos[1] for Walker2d
# (qpos[0] = x excluded), followed there by the torso angle qpos[2] at obs[1].
ANT_HEALTHY_RULE = HealthyStateRule(
    ranges=((0, *ANT_HEALTHY_Z_RANGE, "torso z"),), closed=True, require_finite=True)
HUMANOID_HEALTHY_RULE = HealthyStateRule(
    ranges=((0, *HUMANOID_HEALTHY_Z_RANGE, "torso z"),), closed=False, require_finite=False)
WALKER_HEALTHY_RULE = HealthyStateRule(
    ranges=((0, *WALKER_HEALTHY_Z_RANGE, "torso z"),
            (1, *WALKER_HEALTHY_ANGLE_RANGE, "torso angle")),
    closed=False, require_finite=False)


def _as_mask(task: Any, size: int) -> np.ndarray:
  mask = np.asarray(task, dtype=np.float64)
  if mask.shape != (size,) or not np.all(np.abs(mask) == 1.0):
    raise ValueError(f"A joint mask must be {size} entries of +1 or -1, got {task!r}.")
  return mask


def _describe_mask(mask: Any) -> str:
  negated = [i for i, m in enumerate(np.asarray(mask)) if m < 0]
  return f"negated={negated}"


def step_from_observation(env: gymnasium.Env, observation: np.ndarray,
                          action: np.ndarray) -> Tuple[np.ndarray, float]:
  """The task's next observation and reward from the state an observation describes.

  Scores transitions a model made up (relabeling) against the simulator. The observation
  must be the state less the translation coordinates (`observation_is_state`: cheetah and
  ant); those are set to 0, which the physics does not depend on. Overwrites the env's
  state. Ant's contact cost depends on the contact solver's warm start, which no
  observation holds: it comes out within about 0.02 of the episode's.

  Args:
    env: a task env of this module (wrappers are looked through).
    observation: one observation [observation_dim].
    action: the policy's action [action_dim].
  """
  env = env.unwrapped
  if not getattr(env, "observation_is_state", False):
    raise NotImplementedError(f"{type(env).__name__}: its observation is not its state")
  nq, nv = env.model.nq, env.model.nv
  excluded = nq + nv - len(observation)
  qpos = np.concatenate([np.zeros(excluded), observation[:nq - excluded]])
  env.set_state(qpos, np.asarray(observation[nq - excluded:], np.float64))
  next_observation, reward, *_ = env.step(action)
  return next_observation, float(reward)


class _TaskEnvMixin:
  """What every task env of a robot shares: `set_task`, and actions reaching the physics."""

  def set_task(self, task: Any) -> None:
    raise NotImplementedError

  def _physics_action(self, action: np.ndarray) -> np.ndarray:
    return action

  # Whether the observation is the whole physical state except the translation coordinates
  # (x, or x and y), on which the physics does not depend (see `step_from_observation`).
  observation_is_state = False
  # The episode's end on an unhealthy state (`HealthyStateRule`); None: it never terminates.
  termination_rule: Optional[HealthyStateRule] = None


class _MaskedActionMixin:
  """Negated-joint tasks: the policy's action a reaches the actuators as m * a."""

  _mask: Optional[np.ndarray] = None

  def _physics_action(self, action: np.ndarray) -> np.ndarray:
    return action if self._mask is None else self._mask * action


class _HalfCheetahTaskEnv(_TaskEnvMixin, HalfCheetahEnv):
  """HalfCheetah-v5 physics and observation (17 numbers); the reward is the task's."""

  observation_is_state = True  # qpos without x, then qvel

  def __init__(self, task: Any, **kwargs: Any):
    super().__init__(
        reset_noise_scale=0.1, exclude_current_positions_from_observation=True, **kwargs)
    utils.EzPickle.__init__(self, task, **kwargs)
    self.set_task(task)

  def _task_reward(self, x_velocity: float, action: np.ndarray) -> Tuple[float, float]:
    """Returns (forward reward, control cost)."""
    raise NotImplementedError

  def step(self, action: np.ndarray):
    action = np.asarray(action, dtype=np.float64)
    x_before = self.data.qpos[0]
    self.do_simulation(self._physics_action(action), self.frame_skip)
    x_after = self.data.qpos[0]
    x_velocity = (x_after - x_before) / self.dt
    forward, ctrl_cost = self._task_reward(x_velocity, action)
    info = {
        "x_position": x_after,
        "x_velocity": x_velocity,
        "reward_forward": forward,
        "reward_ctrl": -ctrl_cost,
    }
    return self._get_obs(), forward - ctrl_cost, False, False, info


class HalfCheetahVelEnv(_HalfCheetahTaskEnv):
  """Task: target velocity v. Reward -|x_vel - v| - 0.05 sum(a^2)."""

  def set_task(self, task: Any) -> None:
    self._target_velocity = float(task)

  def _task_reward(self, x_velocity, action):
    return (-abs(x_velocity - self._target_velocity),
            CHEETAH_VEL_CTRL_COST * float(np.sum(np.square(action))))

  @staticmethod
  def task_features(task: Any) -> np.ndarray:
    """The task parameter the context should identify: [v]."""
    return np.array([float(task)])

  @staticmethod
  def describe_task(task: Any) -> str:
    return f"v={float(task):.3f}"


class HalfCheetahDirEnv(_HalfCheetahTaskEnv):
  """Task: direction sign d in {-1, +1}. Reward d * x_vel - 0.05 sum(a^2)."""

  def set_task(self, task: Any) -> None:
    if float(task) not in (-1.0, 1.0):
      raise ValueError(f"A cheetah direction is -1 or +1, got {task!r}.")
    self._direction = float(task)

  def _task_reward(self, x_velocity, action):
    return (self._direction * x_velocity,
            CHEETAH_VEL_CTRL_COST * float(np.sum(np.square(action))))

  @staticmethod
  def task_features(task: Any) -> np.ndarray:
    """The task parameter the context should identify: [d]."""
    return np.array([float(task)])

  @staticmethod
  def describe_task(task: Any) -> str:
    return f"dir={float(task):+.0f}"


class HalfCheetahNegJointsEnv(_MaskedActionMixin, _HalfCheetahTaskEnv):
  """Task: mask m over the 6 actuators. Physics gets m * a; reward x_vel - 0.1 sum(a^2)."""

  def set_task(self, task: Any) -> None:
    self._mask = _as_mask(task, self.model.nu)

  def _task_reward(self, x_velocity, action):
    return x_velocity, CHEETAH_NEGJOINTS_CTRL_COST * float(np.sum(np.square(action)))

  @staticmethod
  def task_features(task: Any) -> np.ndarray:
    """The task parameter the context should identify: the +-1 mask."""
    return np.asarray(task, np.float64).copy()

  @staticmethod
  def describe_task(task: Any) -> str:
    return _describe_mask(task)


class _AntTaskEnv(_TaskEnvMixin, AntEnv):
  """Ant-v5 physics; observation = joint positions without x, y and velocities (27).

  The reward is velocity . direction - 0.5 sum(a^2) - contact cost + 1, where velocity is
  the torso's xy displacement over the step divided by dt, and the contact cost is
  gymnasium v5's: 5e-4 * sum(clip(cfrc_ext, -1, 1)^2). Episodes end (`terminated`) when
  the torso height leaves [0.2, 1.0].
  """

  observation_is_state = True  # qpos without x, y, then qvel
  termination_rule = ANT_HEALTHY_RULE

  def __init__(self, task: Any, **kwargs: Any):
    super().__init__(
        xml_file="ant.xml",
        contact_cost_weight=ANT_CONTACT_COST,
        contact_force_range=ANT_CONTACT_FORCE_RANGE,
        healthy_z_range=ANT_HEALTHY_Z_RANGE,
        terminate_when_unhealthy=True,
        reset_noise_scale=0.1,
        exclude_current_positions_from_observation=True,
        include_cfrc_ext_in_observation=False,
        **kwargs)
    utils.EzPickle.__init__(self, task, **kwargs)
    self.set_task(task)

  def _direction(self) -> np.ndarray:
    """Unit vector (x, y) the ant is rewarded for moving along."""
    raise NotImplementedError

  def step(self, action: np.ndarray):
    action = np.asarray(action, dtype=np.float64)
    xy_before = self.data.body(self._main_body).xpos[:2].copy()
    self.do_simulation(self._physics_action(action), self.frame_skip)
    xy_after = self.data.body(self._main_body).xpos[:2].copy()
    xy_velocity = (xy_after - xy_before) / self.dt

    forward = float(np.dot(xy_velocity, self._direction()))
    ctrl_cost = ANT_CTRL_COST * float(np.sum(np.square(action)))
    contact_cost = ANT_CONTACT_COST * float(np.sum(np.square(
        np.clip(self.data.cfrc_ext, *ANT_CONTACT_FORCE_RANGE))))
    # The alive bonus is paid on every step, the terminating one included, as in the
    # original release's ant (gymnasium pays it only while healthy).
    reward = forward - ctrl_cost - contact_cost + ANT_ALIVE_BONUS
    terminated = not self.is_healthy
    info = {
        "x_position": self.data.qpos[0],
        "y_position": self.data.qpos[1],
        "x_velocity": xy_velocity[0],
        "y_velocity": xy_velocity[1],
        "reward_forward": forward,
        "reward_ctrl": -ctrl_cost,
        "reward_contact": -contact_cost,
        "reward_survive": ANT_ALIVE_BONUS,
    }
    return self._get_obs(), reward, terminated, False, info


class AntDirEnv(_AntTaskEnv):
  """Task: direction angle theta (radians); rewarded velocity . (cos theta, sin theta)."""

  def set_task(self, task: Any) -> None:
    theta = float(task)
    self._theta = theta
    self._unit = np.array([np.cos(theta), np.sin(theta)])

  def _direction(self) -> np.ndarray:
    return self._unit

  @staticmethod
  def task_features(task: Any) -> np.ndarray:
    """The task parameter the context should identify: [cos theta, sin theta]."""
    return np.array([np.cos(float(task)), np.sin(float(task))])

  @staticmethod
  def describe_task(task: Any) -> str:
    return f"theta={float(task):.3f}"


class AntNegJointsEnv(_MaskedActionMixin, _AntTaskEnv):
  """Task: mask m over the 8 actuators. Physics gets m * a; rewarded x velocity."""

  _FORWARD = np.array([1.0, 0.0])

  def set_task(self, task: Any) -> None:
    self._mask = _as_mask(task, self.model.nu)

  def _direction(self) -> np.ndarray:
    return self._FORWARD

  @staticmethod
  def task_features(task: Any) -> np.ndarray:
    """The task parameter the context should identify: the +-1 mask."""
    return np.asarray(task, np.float64).copy()

  @staticmethod
  def describe_task(task: Any) -> str:
    return _describe_mask(task)


class HumanoidDirEnv(HumanoidEnv):
  """Humanoid-v5 physics and observation (348 numbers); action space Box(-0.4, 0.4, (17,)).

  Task: direction angle theta. Reward 0.25 * (mass-centre xy displacement . (cos theta,
  sin theta)) / physics timestep - 0.1 sum(ctrl^2) - min(0.5e-6 sum(cfrc_ext^2), 10) + 5.
  Episodes end when the torso height leaves (1, 2).
  """

  termination_rule = HUMANOID_HEALTHY_RULE

  def __init__(self, task: Any, **kwargs: Any):
    super().__init__(
        healthy_z_range=HUMANOID_HEALTHY_Z_RANGE,
        terminate_when_unhealthy=True,
        reset_noise_scale=1e-2,
        exclude_current_positions_from_observation=True,
        **kwargs)
    utils.EzPickle.__init__(self, task, **kwargs)
    self.set_task(task)

  def set_task(self, task: Any) -> None:
    theta = float(task)
    self._theta = theta
    self._unit = np.array([np.cos(theta), np.sin(theta)])

  def step(self, action: np.ndarray):
    action = np.asarray(action, dtype=np.float64)
    com_before = mass_center(self.model, self.data)
    self.do_simulation(action, self.frame_skip)
    com_after = mass_center(self.model, self.data)

    # Divided by the physics timestep, not by dt = 5 timesteps: this is the original
    # release's formula (equal to 1.25 * velocity along theta).
    forward = HUMANOID_FORWARD_WEIGHT * float(
        np.dot(com_after - com_before, self._unit)) / self.model.opt.timestep
    ctrl_cost = HUMANOID_CTRL_COST * float(np.sum(np.square(self.data.ctrl)))
    contact_cost = min(
        HUMANOID_CONTACT_COST * float(np.sum(np.square(self.data.cfrc_ext))),
        HUMANOID_CONTACT_COST_MAX)
    reward = forward - ctrl_cost - contact_cost + HUMANOID_ALIVE_BONUS
    terminated = not self.is_healthy
    velocity = (com_after - com_before) / self.dt
    info = {
        "x_position": self.data.qpos[0],
        "y_position": self.data.qpos[1],
        "x_velocity": velocity[0],
        "y_velocity": velocity[1],
        "reward_forward": forward,
        "reward_ctrl": -ctrl_cost,
        "reward_contact": -contact_cost,
        "reward_survive": HUMANOID_ALIVE_BONUS,
    }
    return self._get_obs(), reward, terminated, False, info

  @staticmethod
  def task_features(task: Any) -> np.ndarray:
    """The task parameter the context should identify: [cos theta, sin theta]."""
    return np.array([np.cos(float(task)), np.sin(float(task))])

  @staticmethod
  def describe_task(task: Any) -> str:
    return f"theta={float(task):.3f}"


@functools.lru_cache(maxsize=1)
def _walker_model_defaults() -> Dict[str, np.ndarray]:
  model = mujoco.MjModel.from_xml_path(expand_model_path(WALKER_XML))
  defaults = {name: np.array(getattr(model, name)) for name in WALKER_PARAM_BASES}
  for value in defaults.values():
    value.setflags(write=False)
  return defaults


def walker_default_params() -> Dict[str, np.ndarray]:
  """The Walker2d-v5 model's own values of the randomised parameters (copies)."""
  return {name: value.copy() for name, value in _walker_model_defaults().items()}


class Walker2dRandParamsEnv(Walker2dEnv):
  """Walker2d-v5 with per-task body parameters; the standard Walker2d-v5 reward.

  Reward x_vel + 1 (while healthy) - 1e-3 sum(a^2); the episode ends when the torso
  height leaves (0.8, 2) or its angle leaves (-1, 1). Observation 17 numbers.

  Task: dict name -> array of the model's body_mass, body_inertia, dof_damping,
  geom_friction (the values themselves, not multipliers). `set_task` restores the
  model's defaults, then writes the given arrays. Derived constants (mj_setConst) are
  not recomputed, as in the original release: that would reset the simulation state.
  """

  termination_rule = WALKER_HEALTHY_RULE

  def __init__(self, task: Mapping[str, np.ndarray], **kwargs: Any):
    super().__init__(
        xml_file=WALKER_XML,
        forward_reward_weight=1.0,
        ctrl_cost_weight=1e-3,
        healthy_reward=1.0,
        terminate_when_unhealthy=True,
        healthy_z_range=WALKER_HEALTHY_Z_RANGE,
        healthy_angle_range=WALKER_HEALTHY_ANGLE_RANGE,
        reset_noise_scale=5e-3,
        exclude_current_positions_from_observation=True,
        **kwargs)
    utils.EzPickle.__init__(self, task, **kwargs)
    self._default_params = {
        name: np.array(getattr(self.model, name)) for name in WALKER_PARAM_BASES}
    self.set_task(task)

  def set_task(self, task: Mapping[str, np.ndarray]) -> None:
    unknown = set(task) - set(WALKER_PARAM_BASES)
    if unknown:
      raise ValueError(f"Unknown walker parameters {sorted(unknown)}; "
                       f"valid: {sorted(WALKER_PARAM_BASES)}.")
    for name, default in self._default_params.items():
      getattr(self.model, name)[:] = default
    for name, value in task.items():
      value = np.asarray(value, dtype=np.float64)
      target = getattr(self.model, name)
      if value.shape != target.shape:
        raise ValueError(f"Walker parameter {name} has shape {target.shape}, "
                         f"got {value.shape}.")
      target[:] = value

  @staticmethod
  def task_features(task: Mapping[str, np.ndarray]) -> np.ndarray:
    """The task parameters the context should identify: log scale factor of every entry.

    log(value / default) of each entry whose default is non-zero, parameters in sorted order.
    """
    defaults = _walker_model_defaults()
    parts = []
    for name in sorted(task):
      default = defaults[name]
      nonzero = default != 0
      parts.append(np.log(np.asarray(task[name])[nonzero] / default[nonzero]).ravel())
    return np.concatenate(parts)

  @staticmethod
  def describe_task(task: Mapping[str, np.ndarray]) -> str:
    """Mean multiplier of each parameter over its non-zero default entries."""
    defaults = _walker_model_defaults()
    parts = []
    for name in sorted(task):
      default = defaults[name]
      nonzero = default != 0
      ratio = np.mean(np.asarray(task[name])[nonzero] / default[nonzero])
      parts.append(f"{name}x{ratio:.2f}")
    return " ".join(parts)

