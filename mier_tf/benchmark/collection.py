"""Stage "collection": env steps/s of batched collection vs MuJoCo alone and vs PyDriver."""
from typing import List

import numpy as np
from tf_agents.drivers import py_driver
from tf_agents.environments import wrappers
from tf_agents.policies import py_tf_eager_policy
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from mier_tf import actors
from mier_tf import envs
from mier_tf.agents import sac
from mier_tf.benchmark.fixtures import CTX, step_envs_randomly
from mier_tf.benchmark.harness import Row, Sizes, at_least, stage, time_ms
from mier_tf.collect import MultiTaskCollector


class WithContext(wrappers.PyEnvironmentBaseWrapper):
  """Appends a fixed context to every observation (PyDriver's env in this stage)."""

  def __init__(self, env, context):
    super().__init__(env)
    self._context = np.asarray(context, np.float32)
    size = env.observation_spec().shape[0] + self._context.shape[0]
    self._spec = array_spec.ArraySpec([size], np.float32, name="observation")

  def observation_spec(self):
    return self._spec

  def time_step_spec(self):
    return ts.time_step_spec(self._spec)

  def _augment(self, time_step):
    return time_step._replace(
        observation=np.concatenate([time_step.observation, self._context]))

  def _reset(self):
    return self._augment(self._env.reset())

  def _step(self, action):
    return self._augment(self._env.step(action))


@stage("collection")
def bench_collection(sizes: Sizes) -> List[Row]:
  """Env steps/s of batched collection with the SAC policy vs MuJoCo alone and vs PyDriver.

  10 tasks in lock-step (`MultiTaskCollector` + the run's `NumpyActor`, one policy call
  per step for all 10); the same 10 envs stepped with random actions and no policy; and TF-Agents'
  PyDriver with a PyTFEagerPolicy over the same agent's collect policy, on one env whose
  observation carries a fixed context (`WithContext`).
  """
  rows = []
  num_tasks = sizes.pick(10, 2)
  for name, steps, driver_steps in (("cheetah_vel_hard", sizes.pick(100, 5), sizes.pick(300, 5)),
                                    ("ant_negjoints", sizes.pick(50, 5), sizes.pick(200, 5))):
    family = envs.get_task_family(name)
    tasks = list(family.train_tasks[:num_tasks])
    agent = sac.create_sac_agent(family.observation_dim, family.action_dim, CTX)
    actor = actors.NumpyActor.of_agent(agent, seed=0)
    rng = np.random.default_rng(0)
    contexts = rng.normal(size=(num_tasks, CTX)).astype(np.float32)
    collector = MultiTaskCollector(family, num_tasks, seed=0)
    raw_envs = [family.make_env(task) for task in tasks]
    driver_env = WithContext(envs.GymnasiumPyEnvironment(family.make_env(tasks[0]), seed=0),
                             contexts[0])
    driver = py_driver.PyDriver(
        driver_env, py_tf_eager_policy.PyTFEagerPolicy(agent.collect_policy,
                                                       use_tf_function=True),
        observers=[], max_steps=driver_steps)
    random_actor = actors.FunctionActor(
        lambda obs: rng.uniform(-1, 1, (obs.shape[0], family.action_dim)))
    ours_ms, raw_ms, driver_ms, random_ms = time_ms(
        sizes,
        lambda: collector.collect(tasks, contexts, steps, actor),
        lambda: step_envs_randomly(raw_envs, steps, rng),
        lambda: driver.run(driver_env.reset()),
        lambda: collector.collect(tasks, contexts, steps, random_actor),
        warmup=1, repeats=sizes.pick(5, 1))
    ours = num_tasks * steps / ours_ms * 1e3
    raw = num_tasks * steps / raw_ms * 1e3
    driven = driver_steps / driver_ms * 1e3
    no_policy = num_tasks * steps / random_ms * 1e3
    policy_call_ms = (ours_ms - random_ms) / steps
    rows.append(at_least(f"collection {name} vs MuJoCo", ours, raw, 0.4, (
        f"env steps/s: {num_tasks} tasks x {steps} steps collected in lock-step with the SAC "
        f"policy / the same {num_tasks} envs stepped with random actions, no policy. The "
        f"collector with random actions instead of the policy: {no_policy:.0f} steps/s "
        f"({no_policy / raw:.2f} of MuJoCo alone); the policy call costs "
        f"{policy_call_ms:.2f} ms per lock-step step"),
        collector_random_steps_per_s=round(no_policy, 1),
        policy_call_ms=round(policy_call_ms, 3)))
    rows.append(at_least(f"collection {name} vs PyDriver", ours, driven, 3, (
        f"env steps/s: ours ({num_tasks} tasks batched) / TF-Agents PyDriver + "
        f"PyTFEagerPolicy (same collect policy, 1 env, context appended), {driver_steps} "
        "steps")))
    collector.close()
    for env in raw_envs:
      env.close()
    driver_env.close()
  return rows
