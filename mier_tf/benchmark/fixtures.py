"""What several stages share: HalfCheetah sizes, random transitions, random env steps."""
from typing import Dict, Sequence

import numpy as np
import tensorflow as tf

# HalfCheetah sizes (cheetah_vel_hard) and base.gin's context size.
OBS, ACT, CTX = 17, 6, 5


def random_transitions(rng: np.random.Generator, n: int, obs_dim: int = OBS,
                       act_dim: int = ACT, leading: Sequence[int] = ()) -> Dict[str, np.ndarray]:
  """Random float32 transitions [*leading, n, ...] with the five replay fields."""
  shape = tuple(leading) + (n,)
  obs = rng.normal(size=shape + (obs_dim,)).astype(np.float32)
  return dict(observation=obs,
              action=rng.uniform(-1, 1, shape + (act_dim,)).astype(np.float32),
              reward=rng.normal(size=shape).astype(np.float32),
              next_observation=(obs + 0.1 * rng.normal(size=obs.shape)).astype(np.float32),
              discount=np.ones(shape, np.float32))


def tensors(batch: Dict[str, np.ndarray]) -> Dict[str, tf.Tensor]:
  return {key: tf.convert_to_tensor(value) for key, value in batch.items()}


def step_envs_randomly(envs: Sequence, steps: int, rng: np.random.Generator) -> None:
  """MuJoCo alone: each env reset, then `steps` random actions, restarting ended episodes."""
  actions = rng.uniform(-1, 1, (steps, len(envs)) + envs[0].action_space.shape)
  for env in envs:
    env.reset(seed=int(rng.integers(2**31 - 1)))
  for t in range(steps):
    for i, env in enumerate(envs):
      _, _, terminated, truncated, _ = env.step(actions[t, i])
      if terminated or truncated:
        env.reset(seed=int(rng.integers(2**31 - 1)))

