"""Evaluation: the one protocol by which every return in mier_tf is measured.

A task's evaluation (`evaluate_task`), for MIER-wR, MIER and standing still alike:

  1. adaptation data: `adapt_steps` (N) transitions on the task with the prior context and
     the stochastic policy (or, with `adapt_policy = "deterministic"`, the deterministic one;
     episodes of 200 steps, restarted as they end);
  2. the context the agent acts on (MIER-wR: the meta-trained inner loop on those data;
     MIER: Algorithm 2's context after relabeling, from the same data);
  3. `episodes` (K) deterministic episodes with the deterministic policy on concat(s, context).

Every random draw (the start states of the adaptation data and of each of the K episodes,
the exploration noise) is seeded by (protocol seed, split, task index, episode) alone: not
by the training run's random streams, not by which tasks are evaluated together, not by how
often training evaluates. Tasks are evaluated one at a time, so a task's numbers are the
same whether it is evaluated alone or with others. MIER-wR and MIER of a task run on the
same adaptation data and from the same K start states: their difference is paired
(`paired_difference`), and standing still runs from those start states too.

The same function runs on a live run (meta-training's evaluations, Algorithm 2: `LiveAgent`)
and on a run's exported SavedModel alone (`scripts/evaluate.py`: `ExportAgent` loads
export/agent with TensorFlow only).
"""
import dataclasses
import functools
import os
from typing import Callable, Dict, List, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf

from mier_tf import envs
from mier_tf import video
from mier_tf.actors import Actor, FunctionActor, NumpyActor, ZeroActor
from mier_tf.collect import MultiTaskCollector, repeat_context
from mier_tf.errors import CheckpointError

SPLITS = {"train": 0, "test": 1}
_ADAPT, _EPISODE, _GUARD = 0, 1, 2  # what a seed is for
ADAPT_POLICIES = ("stochastic", "deterministic")  # the first is the default


@gin.configurable
@dataclasses.dataclass(frozen=True)
class EvalProtocol:
  """The evaluation protocol's settings (one home: training, evaluate.py and Algorithm 2).

  Args:
    adapt_steps: N, prior-context transitions per task to adapt on (the release collects
      400 at test time before relabeling; MIER-wR and MIER share them).
    episodes: K, deterministic evaluation episodes per task (paired between MIER-wR and MIER).
    seed: the protocol's seed; a task's draws depend on (seed, split, task, episode) alone.
    adapt_policy: which prior-context policy collects the N transitions: "stochastic" (with
      its exploration noise, the release's) or "deterministic" (issue #22 (c)).
  """
  adapt_steps: int = 400
  episodes: int = 3
  seed: int = 0
  adapt_policy: str = "stochastic"

  def __post_init__(self):
    for name in ("adapt_steps", "episodes"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"EvalProtocol.{name} must be an integer >= 1; got {value!r}")
    if self.adapt_policy not in ADAPT_POLICIES:
      raise ValueError(f"EvalProtocol.adapt_policy must be one of {', '.join(ADAPT_POLICIES)}; "
                       f"got {self.adapt_policy!r}")

  def rng(self, split: str, index: int, purpose: int, episode: int = 0) -> np.random.Generator:
    return np.random.default_rng([self.seed, SPLITS[split], int(index), purpose, episode])

  def describe(self) -> dict:
    """The settings as results record them. `adapt_policy` only when it is not the default,
    so results recorded before it existed still match the protocol they ran under."""
    settings = dataclasses.asdict(self)
    if self.adapt_policy == ADAPT_POLICIES[0]:
      del settings["adapt_policy"]
    return settings


class EvalAgent:
  """What the protocol evaluates: a prior context, an inner loop, and the two policies."""

  def prior_context(self) -> np.ndarray:
    raise NotImplementedError

  def identify(self, data: Dict[str, np.ndarray]) -> np.ndarray:
    """The adapted context [c] for one task's transitions {key: [n, ...]}."""
    raise NotImplementedError

  def explore_actor(self, rng: np.random.Generator) -> Actor:
    """The stochastic policy, its noise drawn from `rng`."""
    raise NotImplementedError

  def greedy_actor(self) -> Actor:
    raise NotImplementedError


class LiveAgent(EvalAgent):
  """A live meta-training run's model and SAC agent (its own actors: the run's random
  streams are never touched)."""

  def __init__(self, model, agent, adapt_fn: Callable[[dict], np.ndarray]):
    self._model, self._agent, self._adapt_fn = model, agent, adapt_fn

  def prior_context(self) -> np.ndarray:
    return self._model.context.numpy()

  def identify(self, data):
    batch = {k: tf.convert_to_tensor(np.asarray(data[k])[None]) for k in
             ("observation", "action", "next_observation", "reward")}
    return np.asarray(self._adapt_fn(batch), np.float32)[0]

  def explore_actor(self, rng):
    actor = NumpyActor.of_agent(self._agent)
    actor.rng = rng
    return actor

  def greedy_actor(self):
    return NumpyActor.of_agent(self._agent, deterministic=True)


class ExportAgent(EvalAgent):
  """A run's export/agent SavedModel, loaded with TensorFlow alone."""

  def __init__(self, export_dir: str):
    self.path = os.path.join(export_dir, "agent")
    self.loaded = load_saved_model(self.path)
    sig = self.loaded.signatures
    self._prior = sig["prior_context"]()["context"].numpy()
    self.context_dim = int(self._prior.shape[-1])
    self.action_dim = int(sig["act_with_noise"].structured_input_signature[1]["noise"].shape[-1])
    self.observation_dim = int(
        sig["act"].structured_input_signature[1]["observation"].shape[-1])

  def prior_context(self):
    return self._prior

  def identify(self, data):
    out = self.loaded.signatures["identify"](
        **{k: tf.constant(np.asarray(data[k], np.float32)) for k in
           ("observation", "action", "next_observation", "reward")})
    return out["context"].numpy()

  def _split(self, observation):
    return (tf.constant(observation[:, :-self.context_dim], tf.float32),
            tf.constant(observation[:, -self.context_dim:], tf.float32))

  def explore_actor(self, rng):
    sig, split, dim = self.loaded.signatures["act_with_noise"], self._split, self.action_dim

    def act(observation):
      obs, ctx = split(observation)
      noise = rng.standard_normal((observation.shape[0], dim), np.float32)  # as NumpyActor
      return sig(observation=obs, context=ctx, noise=tf.constant(noise))["action"].numpy()

    return FunctionActor(act)

  def greedy_actor(self):
    sig, split = self.loaded.signatures["act"], self._split

    def act(observation):
      obs, ctx = split(observation)
      return sig(observation=obs, context=ctx)["action"].numpy()

    return FunctionActor(act)


@dataclasses.dataclass
class TaskEvaluation:
  """One task under the protocol."""
  returns: np.ndarray   # [K] the deterministic episodes' returns
  lengths: np.ndarray   # [K] their steps (200, or fewer where the robot fell)
  context: np.ndarray   # [c] the context acted on
  data: Dict[str, np.ndarray]  # the adaptation data ({key: [N, ...]})

  @property
  def mean(self) -> float:
    return float(np.mean(self.returns))


class Evaluator:
  """Runs the protocol on one family's tasks (one environment, reused)."""

  def __init__(self, family, protocol: Optional[EvalProtocol] = None):
    self.family = family
    self.protocol = protocol or EvalProtocol()
    self._collectors: Dict[int, MultiTaskCollector] = {}

  def _collector(self, slots: int) -> MultiTaskCollector:
    if slots not in self._collectors:
      self._collectors[slots] = MultiTaskCollector(self.family, slots)
    return self._collectors[slots]

  def _task(self, split: str, index: int):
    tasks = self.family.train_tasks if split == "train" else self.family.test_tasks
    if not 0 <= index < len(tasks):
      raise ValueError(f"task index {index} out of range: {self.family.name} has "
                       f"{len(tasks)} {split} tasks")
    return tasks[index]

  def adaptation_data(self, agent: EvalAgent, split: str, index: int) -> Dict[str, np.ndarray]:
    """Step 1: N prior-context transitions of the stochastic (or deterministic) policy."""
    p = self.protocol
    actor = (agent.explore_actor(p.rng(split, index, _ADAPT, 1))
             if p.adapt_policy == "stochastic" else agent.greedy_actor())
    data, _ = self._collector(1).collect(
        [self._task(split, index)], agent.prior_context()[None], p.adapt_steps, actor,
        reset_rngs=[p.rng(split, index, _ADAPT, 0)])
    return data[0]

  def episodes(self, actor: Actor, split: str, index: int, context: np.ndarray,
               purpose: int = _EPISODE, count: Optional[int] = None):
    """Step 3: the K deterministic episodes from the task's K start states: (returns, lengths)."""
    p = self.protocol
    horizon = self.family.max_episode_steps
    k = p.episodes if count is None else count
    task = self._task(split, index)
    episodes, episode_returns = self._collector(k).collect(
        [task] * k, repeat_context(context, k), horizon, actor,
        reset_rngs=[p.rng(split, index, purpose, e) for e in range(k)])
    lengths = []
    for episode in episodes:  # a termination is the one step with discount 0
      ends = np.flatnonzero(episode["discount"] == 0.0)
      lengths.append(int(ends[0]) + 1 if len(ends) else horizon)
    return (np.asarray([r[0] for r in episode_returns], np.float64),
            np.asarray(lengths, np.int64))

  def guard_episodes(self, actor: Actor, split: str, index: int, context: np.ndarray,
                     count: int) -> np.ndarray:
    """`count` deterministic episodes from start states of their own (never the K evaluation
    episodes'): for choices made on the task, such as Algorithm 2's guard. Returns [count]."""
    return self.episodes(actor, split, index, context, purpose=_GUARD, count=count)[0]

  def reward_parts(self, actor: Actor, split: str, index: int,
                   context: np.ndarray) -> Dict[str, float]:
    """Step 3's K deterministic episodes with each reward split into the environment's parts
    (the `reward_<part>` entries of its step info: forward, ctrl, contact, survive...), each
    summed over an episode and averaged over the K, with "return" and "length" beside them.
    The episodes are the protocol's (the same start states, the K stepped together as
    `episodes` steps them), so "return" is the task's protocol return."""
    p = self.protocol
    k, horizon = p.episodes, self.family.max_episode_steps
    task = self._task(split, index)
    episode_envs = [self.family.make_env(task) for _ in range(k)]
    try:
      obs = np.stack([np.asarray(env.reset(seed=int(
          p.rng(split, index, _EPISODE, e).integers(2**31 - 1)))[0], np.float32)
                      for e, env in enumerate(episode_envs)])
      contexts = repeat_context(context, k)
      sums: List[Dict[str, float]] = [{"return": 0.0} for _ in range(k)]
      lengths, running = [horizon] * k, [True] * k
      actor.refresh()
      for t in range(horizon):
        actions = np.asarray(actor(np.concatenate([obs, contexts], axis=1)), np.float32)
        for i, env in enumerate(episode_envs):
          if not running[i]:  # an ended episode's row stays as it was
            continue
          next_obs, reward, terminated, truncated, info = env.step(actions[i])
          sums[i]["return"] += float(reward)
          for key, value in info.items():
            if key.startswith("reward_"):
              part = key[len("reward_"):]
              sums[i][part] = sums[i].get(part, 0.0) + float(value)
          obs[i] = np.asarray(next_obs, np.float32)
          if terminated or truncated:
            running[i], lengths[i] = False, t + 1
    finally:
      for env in episode_envs:
        env.close()
    parts = {key: float(np.mean([s.get(key, 0.0) for s in sums])) for key in sums[0]}
    parts["length"] = float(np.mean(lengths))
    return parts

  def evaluate_task(self, agent: EvalAgent, split: str, index: int) -> TaskEvaluation:
    """MIER-wR on one task: steps 1-3 with the agent's inner loop."""
    data = self.adaptation_data(agent, split, index)
    context = np.asarray(agent.identify(data), np.float32)
    returns, lengths = self.episodes(agent.greedy_actor(), split, index, context)
    return TaskEvaluation(returns, lengths, context, data)

  def standing_still(self, split: str, index: int) -> np.ndarray:
    """Zero actions from the task's K start states: [K] returns (the floor)."""
    returns, _ = self.episodes(ZeroActor(self.family.action_dim), split, index,
                               np.zeros(1, np.float32))
    return returns

  def close(self) -> None:
    for collector in self._collectors.values():
      collector.close()
    self._collectors = {}


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict:
  """a - b over paired episodes (same start states): mean, standard error, and the verdict.

  A task is "won" only where the mean difference exceeds twice its standard error, "lost"
  where it is below minus twice, else "tie" (with K = 3 the standard error is itself rough:
  the verdict is a screen, the table's mean and error are the measurement).
  """
  d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  mean = float(d.mean())
  se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
  verdict = ("won" if mean > 2 * se else "lost" if mean < -2 * se else "tie") if (
      np.isfinite(se)) else "tie"
  return {"mean": mean, "se": se, "verdict": verdict}


# ------------------------------------------------------------------------------------------
# Exported SavedModels alone.

def load_saved_model(path: str):
  """tf.saved_model.load, with a missing or corrupt SavedModel named in one error.

  Raises:
    FileNotFoundError: no saved_model.pb at `path`.
    CheckpointError: it is there but cannot be loaded (truncated, corrupt).
  """
  if not os.path.isfile(os.path.join(path, "saved_model.pb")):
    raise FileNotFoundError(f"no SavedModel at {path} (expected a run's export/ directory)")
  try:
    return tf.saved_model.load(path)
  except Exception as e:  # pylint: disable=broad-except  (protobuf, OpError, ValueError...)
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    raise CheckpointError(f"{path}: cannot be loaded ({type(e).__name__}: {first[:200]})") from e


@functools.lru_cache(maxsize=4)
def _export_agent(export_dir: str) -> ExportAgent:
  """`ExportAgent`, once per export: rendering many tasks of one export loads it once."""
  return ExportAgent(export_dir)


def render_export(export_dir: str, family_name: str, task_index: int, split: str = "test",
                  context: Optional[np.ndarray] = None, seed: int = 0, episode: int = 0,
                  protocol: Optional[EvalProtocol] = None):
  """Frames of the export's deterministic policy on one task, and the episode's return.

  The episode is the protocol's episode `episode` of the task (its start state), acting on
  MIER-wR's context (the export's inner loop on the protocol's adaptation data) unless a
  context is given: an export of Algorithm 2 (ROOT/adapt/task_<i>/export) holds the task's
  adapted context as its prior context, so pass that one.
  """
  family = envs.get_task_family(family_name)
  evaluator = Evaluator(family, protocol or EvalProtocol(seed=seed))
  agent = _export_agent(export_dir)
  evaluator._task(split, task_index)  # pylint: disable=protected-access  (checks the index)
  if context is None:
    context = agent.identify(evaluator.adaptation_data(agent, split, task_index))
  evaluator.close()
  start_seed = int(evaluator.protocol.rng(split, task_index, _EPISODE, episode).integers(2**31 - 1))
  return video.rollout_frames(family, evaluator._task(split, task_index),  # pylint: disable=protected-access
                              agent.greedy_actor(), context,
                              steps=family.max_episode_steps, seed=start_seed)


def render_mier_vs_mier_wr(root_dir: str, family_name: str, task_index: int,
                           seed: int = 0):
  """Side-by-side frames of MIER-wR (left) and MIER (right) on one relabeled test task,
  from the same start state (the protocol's first episode).

  Returns (frames, (mier_wr_return, mier_return)) of the rendered episodes.
  """
  adapted = os.path.join(root_dir, "adapt", f"task_{task_index}", "export")
  phi = _export_agent(adapted).prior_context()
  wr_frames, wr_return = render_export(os.path.join(root_dir, "export"), family_name,
                                       task_index, seed=seed)
  mier_frames, mier_return = render_export(adapted, family_name, task_index, context=phi,
                                           seed=seed)
  return (video.side_by_side(video.label(wr_frames, f"MIER-wR  {wr_return:.0f}"),
                             video.label(mier_frames, f"MIER  {mier_return:.0f}")),
          (wr_return, mier_return))


def evaluate_export(export_dir: str, family_name: str, split: str = "test",
                    task_indices: Optional[Sequence] = None,
                    protocol: Optional[EvalProtocol] = None,
                    reward_parts: bool = False) -> dict:
  """MIER-wR under the protocol, from a run's export/agent SavedModel alone.

  Args:
    export_dir: a run's export/ directory (or an Algorithm 2 task's export/).
    family_name: task family name.
    split: "train" or "test".
    task_indices: indices into the split (default all).
    protocol: N, K and the seed (default `EvalProtocol()`).
    reward_parts: also split each task's K episodes into the environment's reward parts
      (`Evaluator.reward_parts`).

  Returns:
    {"family", "split", "protocol", "mean_return", "mean_standing_still",
    "tasks": [{"index", "task", "return" (mean of K), "returns" (each episode),
    "standing_still" (mean), "standing_still_returns", and with reward_parts
    "reward_parts": {part: mean over the K of its sum over an episode, "return", "length"}}]}.
  """
  family = envs.get_task_family(family_name)
  agent = ExportAgent(export_dir)
  if agent.observation_dim != family.observation_dim:
    raise ValueError(f"{export_dir} was exported for observations of size "
                     f"{agent.observation_dim}, but {family_name} has {family.observation_dim}")
  evaluator = Evaluator(family, protocol)
  tasks = family.train_tasks if split == "train" else family.test_tasks
  indices = [int(i) for i in task_indices] if task_indices else list(range(len(tasks)))
  for i in indices:
    evaluator._task(split, i)  # pylint: disable=protected-access  (one clear error first)
  entries = []
  for i in indices:
    result = evaluator.evaluate_task(agent, split, i)
    still = evaluator.standing_still(split, i)
    entries.append({"index": i, "task": family.describe_task(tasks[i]),
                    "return": result.mean, "returns": [float(r) for r in result.returns],
                    "standing_still": float(still.mean()),
                    "standing_still_returns": [float(r) for r in still]})
    if reward_parts:
      entries[-1]["reward_parts"] = evaluator.reward_parts(agent.greedy_actor(), split, i,
                                                           result.context)
  evaluator.close()
  return {"family": family_name, "split": split, "protocol": evaluator.protocol.describe(),
          "mean_return": float(np.mean([e["return"] for e in entries])),
          "mean_standing_still": float(np.mean([e["standing_still"] for e in entries])),
          "tasks": entries}
