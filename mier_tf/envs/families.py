"""The task families of the paper: train / out-of-distribution test tasks and env factory.

Each family's tasks are drawn once from `np.random.default_rng(seed)` with a seed fixed
here, so they are the same in every process and on every machine; negated-joint masks are
enumerated in `itertools.combinations` order. The rules are docs/ALGORITHM.md's table
"Task families". The seeds are ours: the paper does not publish its task draws.
"""
import dataclasses
import functools
import itertools
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

import gymnasium
import numpy as np
from gymnasium.wrappers import TimeLimit

from mier_tf.envs import robots

MAX_EPISODE_STEPS = 200

Task = Any  # float, np.ndarray of +-1 (joint mask) or dict name -> np.ndarray (walker).


@dataclasses.dataclass(frozen=True, eq=False)
class TaskFamily:
  """A family of tasks on one robot: its train and out-of-distribution test tasks.

  Attributes:
    name: registry name, e.g. "cheetah_vel_hard".
    train_tasks: task parameters of the meta-training tasks.
    test_tasks: task parameters of the test tasks.
    observation_dim: size of the flat observation.
    action_dim: number of actuators.
    env_class: the task-conditioned robot (see `robots`); it has `set_task(task)`.
    max_episode_steps: episode length; the time limit is reported as `truncated`.
  """

  name: str
  train_tasks: Tuple[Task, ...]
  test_tasks: Tuple[Task, ...]
  observation_dim: int
  action_dim: int
  env_class: Type[gymnasium.Env]
  max_episode_steps: int = MAX_EPISODE_STEPS

  def make_env(self, task: Task, **env_kwargs: Any) -> gymnasium.Env:
    """Builds the robot set to `task`, wrapped in the episode time limit.

    Args:
      task: one task parameter of this family (e.g. an element of `train_tasks`).
      **env_kwargs: passed to the gymnasium environment (e.g. render_mode).

    Returns:
      A gymnasium.Env; `env.unwrapped.set_task(other_task)` switches tasks in place.
    """
    return TimeLimit(self.env_class(task, **env_kwargs),
                     max_episode_steps=self.max_episode_steps)

  @property
  def termination(self) -> Optional[robots.HealthyStateRule]:
    """The robot's rule for when a step ends its episode, on (batched) next observations:
    `family.termination.terminated(next_obs)` is bool [...]. None for a robot whose
    episodes never terminate (HalfCheetah): only the time limit ends them."""
    return self.env_class.termination_rule

  def describe_task(self, task: Task) -> str:
    """A short human-readable description of `task` for logs."""
    return self.env_class.describe_task(task)

  def task_features(self, tasks: Sequence[Task]) -> np.ndarray:
    """The task parameters a context should identify, one row per task: [len(tasks), k].

    Velocity [v]; cheetah direction [d]; direction angle [cos, sin]; negated joints the +-1
    mask; walker parameters their log scale factors (see each robot's `task_features`).
    """
    return np.stack([self.env_class.task_features(task) for task in tasks])


def _floats(values: Sequence[float]) -> Tuple[float, ...]:
  return tuple(float(v) for v in values)


def _frozen(array: np.ndarray) -> np.ndarray:
  array = np.array(array, dtype=np.float64)
  array.setflags(write=False)
  return array


def negated_joint_masks(num_joints: int, num_free: int, num_negated: int,
                        negate_rest: bool) -> Tuple[np.ndarray, ...]:
  """Masks negating every choice of `num_negated` of the first `num_free` joints.

  Args:
    num_joints: length of each mask.
    num_free: the choices are made among joints 0 .. num_free - 1.
    num_negated: how many of those joints each mask negates.
    negate_rest: whether joints num_free .. num_joints - 1 are negated too.

  Returns:
    Read-only float arrays of +1 / -1, in `itertools.combinations` order.
  """
  masks = []
  for chosen in itertools.combinations(range(num_free), num_negated):
    mask = np.ones(num_joints)
    mask[list(chosen)] = -1.0
    if negate_rest:
      mask[num_free:] = -1.0
    masks.append(_frozen(mask))
  return tuple(masks)


def _velocity_family(name: str, seed: int, train_range: Tuple[float, float],
                     test_range: Tuple[float, float]) -> TaskFamily:
  rng = np.random.default_rng(seed)
  train = _floats(rng.uniform(*train_range, size=100))
  test = _floats(rng.uniform(*test_range, size=30))
  return TaskFamily(name, train, test, 17, 6, robots.HalfCheetahVelEnv)


def _cheetah_dir() -> TaskFamily:
  directions = (-1.0, 1.0)
  return TaskFamily("cheetah_dir", directions, directions, 17, 6, robots.HalfCheetahDirEnv)


def _ant_dir_ood() -> TaskFamily:
  rng = np.random.default_rng(2001)
  train = _floats(rng.uniform(0.0, 1.5 * np.pi, size=100))
  test = _floats(np.linspace(1.5 * np.pi, 2.0 * np.pi, 10))
  return TaskFamily("ant_dir_ood", train, test, 27, 8, robots.AntDirEnv)


def _ant_dir() -> TaskFamily:
  # Forward / backward, written as direction angles so that it shares AntDirEnv.
  directions = (0.0, float(np.pi))
  return TaskFamily("ant_dir", directions, directions, 27, 8, robots.AntDirEnv)


def _cheetah_negjoints() -> TaskFamily:
  train = negated_joint_masks(6, 5, 3, negate_rest=False)
  test = negated_joint_masks(6, 5, 2, negate_rest=True)
  return TaskFamily("cheetah_negjoints", train, test, 17, 6, robots.HalfCheetahNegJointsEnv)


def _ant_negjoints() -> TaskFamily:
  # All 35 test masks; the paper evaluates 15 of them (which ones is not published).
  train = negated_joint_masks(8, 7, 4, negate_rest=False)
  test = negated_joint_masks(8, 7, 3, negate_rest=True)
  return TaskFamily("ant_negjoints", train, test, 27, 8, robots.AntNegJointsEnv)


def _humanoid_dir() -> TaskFamily:
  rng = np.random.default_rng(4001)
  train = _floats(rng.uniform(0.0, 2.0 * np.pi, size=100))
  test = _floats(rng.uniform(0.0, 2.0 * np.pi, size=30))
  return TaskFamily("humanoid_dir", train, test, 348, 17, robots.HumanoidDirEnv)


def _sample_walker_params(rng: np.random.Generator) -> Dict[str, np.ndarray]:
  """One walker task: every entry of each parameter times base ** U(-3, 3)."""
  task = {}
  for name, default in robots.walker_default_params().items():
    base = robots.WALKER_PARAM_BASES[name]
    exponent = rng.uniform(-robots.WALKER_LOG_SCALE_LIMIT, robots.WALKER_LOG_SCALE_LIMIT,
                           size=default.shape)
    task[name] = _frozen(default * base**exponent)
  return task


@functools.lru_cache(maxsize=1)
def _walker_in_distribution_tasks() -> Tuple[Tuple[Dict[str, np.ndarray], ...], ...]:
  rng = np.random.default_rng(5001)
  train = tuple(_sample_walker_params(rng) for _ in range(40))
  test = tuple(_sample_walker_params(rng) for _ in range(10))
  return train, test


def _walker_rand_params() -> TaskFamily:
  train, test = _walker_in_distribution_tasks()
  return TaskFamily("walker_rand_params", train, test, 17, 6, robots.Walker2dRandParamsEnv)


def _walker_rand_params_ood() -> TaskFamily:
  train, _ = _walker_in_distribution_tasks()
  rng = np.random.default_rng(5002)
  test = []
  for _ in range(20):
    task = {}
    for name in robots.WALKER_PARAM_BASES:
      values = np.stack([t[name] for t in train])
      mean, std = values.mean(axis=0), values.std(axis=0)
      task[name] = _frozen(np.abs(rng.normal(mean + 5.0 * std, std)))
    test.append(task)
  return TaskFamily("walker_rand_params_ood", train, tuple(test), 17, 6,
                    robots.Walker2dRandParamsEnv)


_REGISTRY: Dict[str, Callable[[], TaskFamily]] = {
    "cheetah_vel_medium": functools.partial(
        _velocity_family, "cheetah_vel_medium", 1001, (0.0, 2.5), (2.5, 3.0)),
    "cheetah_vel_hard": functools.partial(
        _velocity_family, "cheetah_vel_hard", 1002, (0.0, 1.5), (2.5, 3.0)),
    "cheetah_vel": functools.partial(
        _velocity_family, "cheetah_vel", 1003, (0.0, 3.0), (0.0, 3.0)),
    "cheetah_dir": _cheetah_dir,
    "ant_dir_ood": _ant_dir_ood,
    "ant_dir": _ant_dir,
    "cheetah_negjoints": _cheetah_negjoints,
    "ant_negjoints": _ant_negjoints,
    "humanoid_dir": _humanoid_dir,
    "walker_rand_params": _walker_rand_params,
    "walker_rand_params_ood": _walker_rand_params_ood,
}


def task_family_names() -> List[str]:
  """Names of every registered task family, sorted."""
  return sorted(_REGISTRY)


@functools.lru_cache(maxsize=None)
def get_task_family(name: str) -> TaskFamily:
  """The task family called `name`.

  Args:
    name: one of `task_family_names()`.

  Returns:
    The TaskFamily (built once per process, then cached).

  Raises:
    ValueError: unknown name; the message lists the valid ones.
  """
  if name not in _REGISTRY:
    raise ValueError(
        f"Unknown task family {name!r}; valid names: {', '.join(task_family_names())}.")
  return _REGISTRY[name]()
