"""A tf_agents PyEnvironment over a gymnasium env (tf-agents 0.19 has none for gymnasium)."""
from typing import Any, Dict, Optional

import gymnasium
import numpy as np
from tf_agents.environments import py_environment
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts


class GymnasiumPyEnvironment(py_environment.PyEnvironment):
  """Adapts a gymnasium env with a flat Box observation and Box action space.

  Observations and rewards are float32. A real termination (`terminated`, e.g. the ant
  falling) ends the episode with discount 0; the time limit (`truncated` only) ends it
  with discount 1, so that the critic bootstraps through it. As usual in tf-agents, the
  `step()` after a last time step resets the environment and returns a first time step.
  """

  def __init__(self, gym_env: gymnasium.Env, seed: Optional[int] = None):
    """Wraps `gym_env`.

    Args:
      gym_env: a gymnasium env with 1-d Box observation and action spaces.
      seed: seed of the env's first reset (its reset noise); later resets continue its
        random stream.
    """
    super().__init__(handle_auto_reset=True)
    obs_space, act_space = gym_env.observation_space, gym_env.action_space
    if not (isinstance(obs_space, gymnasium.spaces.Box) and len(obs_space.shape) == 1 and
            isinstance(act_space, gymnasium.spaces.Box) and len(act_space.shape) == 1):
      raise ValueError("GymnasiumPyEnvironment needs flat Box observation and action "
                       f"spaces, got {obs_space} and {act_space}.")
    self._gym_env = gym_env
    self._seed = seed
    self._info: Dict[str, Any] = {}
    self._observation_spec = array_spec.ArraySpec(
        obs_space.shape, np.float32, name="observation")
    self._action_spec = array_spec.BoundedArraySpec(
        act_space.shape, np.float32, minimum=act_space.low.astype(np.float32),
        maximum=act_space.high.astype(np.float32), name="action")

  @property
  def gym_env(self) -> gymnasium.Env:
    """The wrapped gymnasium env."""
    return self._gym_env

  def observation_spec(self) -> array_spec.ArraySpec:
    return self._observation_spec

  def action_spec(self) -> array_spec.BoundedArraySpec:
    return self._action_spec

  def get_info(self) -> Dict[str, Any]:
    """The gymnasium `info` of the last reset or step."""
    return self._info

  def _reset(self) -> ts.TimeStep:
    seed, self._seed = self._seed, None
    observation, self._info = self._gym_env.reset(seed=seed)
    return ts.restart(np.asarray(observation, dtype=np.float32))

  def _step(self, action: np.ndarray) -> ts.TimeStep:
    observation, reward, terminated, truncated, self._info = self._gym_env.step(
        np.asarray(action, dtype=np.float64))
    observation = np.asarray(observation, dtype=np.float32)
    reward = np.asarray(reward, dtype=np.float32)
    if terminated:
      return ts.termination(observation, reward)
    if truncated:
      return ts.truncation(observation, reward, discount=np.float32(1.0))
    return ts.transition(observation, reward, discount=np.float32(1.0))

  def render(self, mode: str = "rgb_array") -> Optional[np.ndarray]:
    """The gym env's frame; it must have been made with render_mode="rgb_array"."""
    del mode  # gymnasium fixes the render mode when the env is made.
    return self._gym_env.render()

  def close(self) -> None:
    self._gym_env.close()
