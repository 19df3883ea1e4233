"""export/agent (mier_tf/train/export.py `_AgentExport`) as its users meet it: the loop a user
writes with TensorFlow, numpy and gymnasium alone reproduces scripts/evaluate.py's returns;
`identify` takes float64 and names the expected shapes when given others; saved_model_cli
lists the six signatures with named inputs and outputs, and runs them."""
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from conftest import copy_run  # the session's one smoke run, copied per module

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
# gin/smoke.gin's protocol sizes (EvalProtocol.adapt_steps 20, episodes 2), a test task.
TASK, N, K = 3, 20, 2


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, smoke_run_source):
  """A smoke run of cheetah_vel_hard (train_and_adapt.adapt_test_tasks is False there)."""
  return copy_run(smoke_run_source, tmp_path_factory.mktemp("agent_export") / "run")


def _agent_path(run_dir):
  return os.path.join(run_dir, "export", "agent")


# The loop a user writes, in a fresh process where tf_agents and mier_tf cannot be imported:
# the environment is gymnasium's HalfCheetah-v5 (what mier_tf/envs/robots.py's
# HalfCheetahVelEnv subclasses, with the same reset noise and observation) and the reward
# the task's, from the step's x velocity: -|x_vel - v| - 0.05 |a|^2. The draws are the
# evaluation protocol's (mier_tf/train/evaluation.py), written out with numpy.
HAND_LOOP = """
import importlib.abc, json, sys
class Refuse(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path, target=None):
    if name.split(".")[0] in ("tf_agents", "mier_tf"):
      raise ImportError("not installed: " + name)
sys.meta_path.insert(0, Refuse())
import gymnasium as gym
import numpy as np
import tensorflow as tf

ROOT, TASK, N, K, SEED, HORIZON = {root!r}, {task}, {n}, {k}, 0, 200
agent = tf.saved_model.load(ROOT + "/export/agent")

# cheetah_vel_hard's tasks, drawn once (mier_tf/envs/families.py): 100 training velocities
# in [0, 1.5), then 30 test velocities in [2.5, 3).
tasks = np.random.default_rng(1002)
tasks.uniform(0.0, 1.5, size=100)
v = float(tasks.uniform(2.5, 3.0, size=30)[TASK])

def protocol_rng(purpose, episode):  # EvalProtocol.rng("test", TASK, purpose, episode)
  return np.random.default_rng([SEED, 1, TASK, purpose, episode])

def reset(env, seeds):  # each reset takes the next seed of its generator
  seed = int(seeds.integers(2**31 - 1))
  used.append(seed)
  return np.asarray(env.reset(seed=seed)[0], np.float32)

def reward(info, action):
  return -abs(info["x_velocity"] - v) - 0.05 * float(np.sum(np.square(np.float64(action))))

make_env = lambda: gym.make("HalfCheetah-v5", reset_noise_scale=0.1,
                            exclude_current_positions_from_observation=True)
used = []

# 1. N transitions with the prior context and the stochastic policy, the noise drawn here.
env, resets, noise = make_env(), protocol_rng(0, 0), protocol_rng(0, 1)
prior = agent.prior_context()["context"]
data = {{key: [] for key in ("observation", "action", "next_observation", "reward")}}
state, t_in_episode = reset(env, resets), 0
for _ in range(N):
  eps = noise.standard_normal((1, 6), np.float32)
  action = agent.act_with_noise(observation=state[None], context=prior,
                                noise=eps)["action"].numpy()[0]
  next_state, _, _, _, info = env.step(action)
  for key, value in (("observation", state), ("action", action),
                     ("next_observation", next_state), ("reward", reward(info, action))):
    data[key].append(np.asarray(value, np.float32))
  state, t_in_episode = np.asarray(next_state, np.float32), t_in_episode + 1
  if t_in_episode == HORIZON:
    state, t_in_episode = reset(env, resets), 0

# 2. The task's context.
context = agent.identify(**{{key: np.stack(rows) for key, rows in data.items()}})["context"]

# 3. K deterministic episodes from the protocol's K start states, acting on all K at once
# (one act call for the K rows, as the protocol batches them).
envs = [make_env() for _ in range(K)]
states = np.stack([reset(e, protocol_rng(1, episode)) for episode, e in enumerate(envs)])
returns = np.zeros(K)
for _ in range(HORIZON):
  actions = agent.act(observation=states, context=context)["action"].numpy()
  for i, e in enumerate(envs):
    next_state, _, _, _, info = e.step(actions[i])
    returns[i] += reward(info, actions[i])
    states[i] = next_state
print(json.dumps(dict(
    v=v, seeds=used, returns=returns.tolist(), context=context.numpy().tolist(),
    blocked_loaded=sorted(m for m in sys.modules if m.split(".")[0] in ("tf_agents", "mier_tf")))))
"""


def _evaluate(run_dir, *args):
  """scripts/evaluate.py's JSON report, with --json where the script has that flag (it prints a
  summary by default then) and from its plain output where it does not."""
  base = [sys.executable, "scripts/evaluate.py", f"--root_dir={run_dir}", *args]
  for extra in (["--json"], []):
    proc = subprocess.run(base + extra, cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=600)
    if extra and proc.returncode != 0 and "json" in proc.stderr and "nknown" in proc.stderr:
      continue  # no --json flag: the report is what it prints
    assert proc.returncode == 0, proc.stderr[-3000:]
    report, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
    return report
  raise AssertionError("unreachable")


def test_the_loop_a_user_writes_returns_what_evaluate_py_reports(run_dir, tmp_path):
  from mier_tf import envs  # pylint: disable=import-outside-toplevel
  from mier_tf.train import evaluation  # pylint: disable=import-outside-toplevel
  script = HAND_LOOP.format(root=run_dir, task=TASK, n=N, k=K)
  proc = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), env=ENV,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  hand = json.loads(proc.stdout.strip().splitlines()[-1])
  assert hand["blocked_loaded"] == []
  # The loop's task and seeds are the family's and the protocol's (checked here, where
  # mier_tf is importable): the target velocity, the adaptation data's reset, the K starts.
  family = envs.get_task_family("cheetah_vel_hard")
  assert hand["v"] == family.test_tasks[TASK]
  protocol = evaluation.EvalProtocol(adapt_steps=N, episodes=K)
  seed = lambda purpose, e: int(protocol.rng("test", TASK, purpose, e).integers(2**31 - 1))
  assert hand["seeds"] == [seed(0, 0)] + [seed(1, e) for e in range(K)]

  report = _evaluate(run_dir, f"--tasks={TASK}", f"--num_episodes={K}", f"--adapt_steps={N}")
  (entry,) = report["tasks"]
  assert entry["index"] == TASK and report["protocol"]["adapt_steps"] == N
  assert len(hand["returns"]) == K
  assert hand["returns"] == entry["returns"]  # exactly: the same floats, step for step


def _identify_inputs(n=50):
  rng = np.random.default_rng(0)
  return dict(observation=rng.normal(size=(n, 17)), action=rng.uniform(-1, 1, (n, 6)),
              next_observation=rng.normal(size=(n, 17)), reward=rng.normal(size=n))


def test_identify_takes_float64_and_names_the_expected_shapes(run_dir):
  agent = tf.saved_model.load(_agent_path(run_dir))
  batch64 = _identify_inputs()
  batch32 = {key: value.astype(np.float32) for key, value in batch64.items()}
  expected = agent.signatures["identify"](
      **{key: tf.constant(value) for key, value in batch32.items()})["context"].numpy()
  assert expected.shape == (5,)
  # float64 and float32 numpy arrays, each input its own (gymnasium's observations are
  # float64, the policy's actions float32), lists, float32 tensors, positional: one context.
  for batch in (batch64, batch32, dict(batch64, action=batch32["action"]),
                {key: value.tolist() for key, value in batch64.items()},
                {key: tf.constant(value) for key, value in batch32.items()}):
    np.testing.assert_array_equal(agent.identify(**batch)["context"].numpy(), expected)
  np.testing.assert_array_equal(agent.identify(
      batch64["observation"], batch32["action"], batch64["next_observation"],
      batch64["reward"])["context"].numpy(), expected)

  # A wrong rank, size or row count: the error names every expected shape and those given.
  expected_shapes = ("identify takes observation [n, 17], action [n, 6], next_observation "
                     "[n, 17], reward [n] (the same n); got shapes:")
  for key, bad, shown in (
      ("observation", batch64["observation"][0], "[17]"),                   # one row
      ("observation", batch64["observation"][None], "[1 50 17]"),           # a batch of one
      ("next_observation", batch64["next_observation"][:, :5], "[50 5]"),
      ("reward", batch64["reward"][:, None], "[50 1]"),
      ("reward", np.float64(1.0), "[]"),
      ("action", batch32["action"][:10], "[10 6]"),                         # other n
      ("observation", tf.constant(batch32["observation"][None]), "[1 50 17]")):
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
      agent.identify(**dict(batch64, **{key: bad}))
    message = str(error.value)
    assert expected_shapes in message, message
    assert f"[{key}] {shown}" in message, message
  # A float64 tensor is not converted (a signature has one dtype): TF's binding TypeError,
  # which names both dtypes.
  with pytest.raises(TypeError, match=re.escape(
      "Can not cast TensorSpec(shape=(50, 17), dtype=tf.float64, name='observation') to "
      "TensorSpec(shape=<unknown>, dtype=tf.float32, name='observation')")):
    agent.identify(**dict(batch32, observation=tf.constant(batch64["observation"])))

  # The other attribute functions bind to the signatures' specs: a wrong shape is TF's
  # binding TypeError, naming the expected shape.
  with pytest.raises(TypeError, match=re.escape(
      "Can not cast TensorSpec(shape=(17,), dtype=tf.float32, name='observation') to "
      "TensorSpec(shape=(None, 17), dtype=tf.float32, name='observation')")):
    agent.act(batch64["observation"][0], expected)
  np.testing.assert_array_equal(  # and numpy float64 is converted there too
      agent.act(batch64["observation"][:3], expected)["action"].numpy(),
      agent.act(batch32["observation"][:3], expected)["action"].numpy())

  # The signature itself is unchanged: float32, [None, d].
  spec = agent.signatures["identify"].structured_input_signature[1]
  assert spec == {"observation": tf.TensorSpec([None, 17], tf.float32, "observation"),
                  "action": tf.TensorSpec([None, 6], tf.float32, "action"),
                  "next_observation": tf.TensorSpec([None, 17], tf.float32, "next_observation"),
                  "reward": tf.TensorSpec([None], tf.float32, "reward")}


SIGNATURES = {  # name: (inputs, outputs), each {name: (dtype, shape)} as saved_model_cli shows
    "identify": ({"observation": ("DT_FLOAT", "(-1, 17)"), "action": ("DT_FLOAT", "(-1, 6)"),
                  "next_observation": ("DT_FLOAT", "(-1, 17)"), "reward": ("DT_FLOAT", "(-1)")},
                 {"context": ("DT_FLOAT", "(5)")}),
    "act": ({"observation": ("DT_FLOAT", "(-1, 17)"), "context": ("DT_FLOAT", "unknown_rank")},
            {"action": ("DT_FLOAT", "(-1, 6)")}),
    "act_sampled": ({"observation": ("DT_FLOAT", "(-1, 17)"),
                     "context": ("DT_FLOAT", "unknown_rank"), "seed": ("DT_INT64", "()")},
                    {"action": ("DT_FLOAT", "(-1, 6)")}),
    "act_with_noise": ({"observation": ("DT_FLOAT", "(-1, 17)"),
                        "context": ("DT_FLOAT", "unknown_rank"),
                        "noise": ("DT_FLOAT", "(-1, 6)")},
                       {"action": ("DT_FLOAT", "(-1, 6)")}),
    "prior_context": ({}, {"context": ("DT_FLOAT", "(5)")}),
    "predict": ({"observation": ("DT_FLOAT", "(-1, 17)"), "action": ("DT_FLOAT", "(-1, 6)"),
                 "context": ("DT_FLOAT", "unknown_rank")},
                {"next_observation": ("DT_FLOAT", "(-1, 17)"), "reward": ("DT_FLOAT", "(-1)")}),
}


def _saved_model_cli(*args):
  cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
  assert os.path.isfile(cli), f"{cli}: TensorFlow's saved_model_cli is not beside the python"
  proc = subprocess.run([cli, *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def test_saved_model_cli_lists_the_six_signatures_with_named_inputs_and_outputs(run_dir):
  shown = _saved_model_cli("show", "--dir", _agent_path(run_dir), "--all")
  blocks = dict(re.findall(r"signature_def\['(\w+)'\]:\n(.*?)Method name is: ", shown, re.S))
  assert set(blocks) - {"__saved_model_init_op"} == set(SIGNATURES)
  for name, (inputs, outputs) in SIGNATURES.items():
    for kind, expected in (("inputs", inputs), ("outputs", outputs)):
      listed = {key: (dtype, shape) for key, dtype, shape in re.findall(
          kind + r"\['(\w+)'\] tensor_info:\n\s+dtype: (\w+)\n\s+shape: (.+)\n", blocks[name])}
      assert listed == expected, (name, kind, listed)
  assert shown.count("Method name is: tensorflow/serving/predict") == len(SIGNATURES)


def test_saved_model_cli_runs_a_signature_by_its_tensor_names(run_dir, tmp_path):
  """`saved_model_cli run` loads the SignatureDefs into a TF1 session and feeds them by name
  (no tf.function objects): `act` gives what the loaded signature gives."""
  rng = np.random.default_rng(1)
  obs, ctx = rng.normal(size=(2, 17)).round(3), rng.normal(size=5).round(3)
  _saved_model_cli("run", "--dir", _agent_path(run_dir), "--tag_set", "serve",
                   "--signature_def", "act", "--outdir", str(tmp_path), "--input_exprs",
                   f"observation={obs.tolist()};context={ctx.tolist()}")
  agent = tf.saved_model.load(_agent_path(run_dir))
  direct = agent.signatures["act"](observation=tf.constant(obs, tf.float32),
                                   context=tf.constant(ctx, tf.float32))["action"].numpy()
  np.testing.assert_allclose(np.load(tmp_path / "action.npy"), direct, atol=1e-6)
