"""Tests of mier_tf.replay: both backends through the same tests (Reverb on a real server).

Every stored transition encodes its task t and a serial number s, so a sampled row says
where it came from:
  observation = [t, s, -s], action = [10 s, 10 s + 1], reward = s + 0.25,
  next_observation = [t, s + 1, -(s + 1)], discount = 0 if s % 7 == 3 else 1.
"""
import os
import re
import shutil

import gin
import numpy as np
import pytest

from mier_tf import replay

OBS, ACT = 3, 2
BACKENDS = ["in_process", "reverb"]


def transitions(task, serials):
  s = np.asarray(serials, np.float32)
  t = np.full_like(s, task)
  return {"observation": np.stack([t, s, -s], 1), "action": np.stack([10 * s, 10 * s + 1], 1),
          "reward": s + 0.25, "next_observation": np.stack([t, s + 1, -(s + 1)], 1),
          "discount": np.where(s % 7 == 3, 0.0, 1.0)}


def serials_of(batch, task=None):
  """Serial numbers of sampled rows, after checking that every field belongs to that row."""
  obs, s = batch["observation"], batch["observation"][..., 1]
  np.testing.assert_array_equal(batch["action"], np.stack([10 * s, 10 * s + 1], -1))
  np.testing.assert_array_equal(batch["reward"], s + 0.25)
  np.testing.assert_array_equal(batch["next_observation"],
                                np.stack([obs[..., 0], s + 1, -(s + 1)], -1))
  np.testing.assert_array_equal(batch["discount"], np.where(s % 7 == 3, 0.0, 1.0))
  if task is not None:
    np.testing.assert_array_equal(obs[..., 0], task)
  return set(s.astype(int).ravel().tolist())


@pytest.fixture
def make(request):
  """make(backend, **kwargs) -> tables, closed at the end of the test."""
  made = []

  def _make(backend, num_tasks=3, **kwargs):
    kwargs.setdefault("adapt_capacity", 50)
    kwargs.setdefault("full_capacity", 100)
    if backend == "reverb":
      kwargs.setdefault("timeout_s", 2.0)
    tables = replay.make_task_tables(backend, num_tasks=num_tasks, observation_dim=OBS,
                                     action_dim=ACT, **kwargs)
    made.append(tables)
    return tables

  yield _make
  for tables in made:
    tables.close()


def all_serials(tables, task, table, draws=2000):
  return serials_of(tables.sample([task], table, draws), task)


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_task_data_stays_in_its_tables(make, backend):
  tables = make(backend)
  for task, serials in [(0, range(0, 5)), (2, range(100, 110)), (1, range(50, 52))]:
    tables.add(task, "full", transitions(task, serials))
  assert all_serials(tables, 0, "full") == set(range(0, 5))
  assert all_serials(tables, 1, "full") == {50, 51}
  assert all_serials(tables, 2, "full") == set(range(100, 110))
  batch = tables.sample([2, 0, 2], "full", 64)
  for i, task in enumerate([2, 0, 2]):
    np.testing.assert_array_equal(batch["observation"][i, :, 0], task)
  np.testing.assert_array_equal(tables.sizes(), [[0, 5], [0, 2], [0, 10]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_adapt_table_holds_prior_context_data_only(make, backend):
  tables = make(backend)
  tables.add(1, ("adapt", "full"), transitions(1, range(10)))  # Prior-context data.
  tables.add(1, "full", transitions(1, range(10, 20)))         # Adapted-context data.
  tables.add(1, "adapt", transitions(1, [30]))
  assert all_serials(tables, 1, "adapt") == set(range(10)) | {30}
  assert all_serials(tables, 1, "full") == set(range(20))
  assert tables.size(1, "adapt") == 11 and tables.size(1, "full") == 20
  assert tables.sizes().dtype == np.int64
  np.testing.assert_array_equal(tables.num_added(), [[0, 0], [11, 20], [0, 0]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_fifo_bound_evicts_the_oldest(make, backend):
  tables = make(backend, adapt_capacity=5, full_capacity=8)
  for serials in (range(0, 3), range(3, 9), range(9, 13)):  # 13 rows in 3 adds.
    tables.add(0, "full", transitions(0, serials))
  tables.add(0, "adapt", transitions(0, range(12)))  # One add of more than the capacity.
  np.testing.assert_array_equal(tables.sizes()[0], [5, 8])
  np.testing.assert_array_equal(tables.num_added()[0], [12, 13])
  assert all_serials(tables, 0, "full") == set(range(5, 13))
  assert all_serials(tables, 0, "adapt") == set(range(7, 12))
  # The next adds evict in age order, also after an add that overflowed at once.
  tables.add(0, "adapt", transitions(0, [20, 21]))
  assert all_serials(tables, 0, "adapt") == {9, 10, 11, 20, 21}
  tables.add(0, "full", transitions(0, [20]))
  assert all_serials(tables, 0, "full") == set(range(6, 13)) | {20}


@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_shapes_dtypes_and_uniformity(make, backend):
  tables = make(backend)
  tables.add(0, "full", transitions(0, range(50)))
  tables.add(1, "full", transitions(1, range(3)))
  batch = tables.sample(np.array([1, 0]), "full", 7)
  assert set(batch) == set(replay.FIELDS)
  expected = {"observation": (2, 7, OBS), "action": (2, 7, ACT), "reward": (2, 7),
              "next_observation": (2, 7, OBS), "discount": (2, 7)}
  for key, shape in expected.items():
    assert batch[key].shape == shape and batch[key].dtype == np.float32, key
  # 20,000 uniform draws over 50 rows: 400 each, standard deviation 19.8; 6 sigma bounds.
  draws = tables.sample([0] * 10, "full", 2000)["reward"].ravel()
  counts = np.bincount((draws - 0.25).astype(int), minlength=50)
  assert counts.size == 50 and counts.min() > 280 and counts.max() < 520, counts


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_arguments_and_empty_tables_raise(make, backend):
  tables = make(backend, timeout_s=0.5) if backend == "reverb" else make(backend)
  tables.add(0, "full", transitions(0, range(4)))
  with pytest.raises(ValueError, match="task001_full"):
    tables.sample([0, 1], "full", 4)
  assert all_serials(tables, 0, "full") == set(range(4))  # Still usable afterwards.
  with pytest.raises(ValueError, match="unknown table"):
    tables.add(0, "evaluation", transitions(0, [1]))
  with pytest.raises(ValueError, match="unknown table"):
    tables.sample([0], "everything", 4)
  with pytest.raises(ValueError, match="out of range"):
    tables.add(3, "full", transitions(0, [1]))
  with pytest.raises(ValueError, match="out of range"):
    tables.sample([0, 3], "full", 4)
  bad = transitions(0, [1, 2])
  bad["reward"] = bad["reward"][:, None]
  with pytest.raises(ValueError, match="reward"):
    tables.add(0, "full", bad)
  bad = dict(transitions(0, [1, 2]), context=np.zeros((2, 4)))
  with pytest.raises(ValueError, match="context"):
    tables.add(0, "full", bad)
  bad = transitions(0, [1, 2])
  bad["next_observation"] = bad["next_observation"][:, :2]
  with pytest.raises(ValueError, match="next_observation"):
    tables.add(0, "full", bad)
  np.testing.assert_array_equal(tables.sizes()[0], [0, 4])  # Rejected adds left no trace.


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_restore_round_trip(make, backend, tmp_path):
  tables = make(backend, adapt_capacity=6, full_capacity=10)
  tables.add(0, ("adapt", "full"), transitions(0, range(8)))
  tables.add(0, "full", transitions(0, range(8, 12)))
  tables.add(2, "full", transitions(2, range(3)))
  tables.save(str(tmp_path / "replay"))
  restored = make(backend, adapt_capacity=6, full_capacity=10, seed=1)
  restored.restore(str(tmp_path / "replay"))
  np.testing.assert_array_equal(restored.sizes(), [[6, 10], [0, 0], [0, 3]])
  np.testing.assert_array_equal(restored.num_added(), tables.num_added())
  for task, table, want in [(0, "adapt", range(2, 8)), (0, "full", range(2, 12)),
                            (2, "full", range(3))]:
    assert all_serials(restored, task, table) == set(want)
  # The FIFO goes on where it left off: 3 more rows evict the 3 oldest (2, 3, 4).
  for t in (tables, restored):
    t.add(0, "full", transitions(0, [20, 21, 22]))
    assert all_serials(t, 0, "full") == set(range(5, 12)) | {20, 21, 22}


def test_in_process_restore_is_exact(make, tmp_path):
  tables = make("in_process", adapt_capacity=6, full_capacity=10, seed=3)
  tables.add(0, ("adapt", "full"), transitions(0, range(13)))
  tables.add(1, "full", transitions(1, range(4)))
  tables.sample([0, 1], "full", 5)
  tables.save(str(tmp_path))
  restored = make("in_process", adapt_capacity=6, full_capacity=10, seed=99)
  restored.restore(str(tmp_path))
  for t in (tables, restored):  # Same storage slots overwritten, same random stream.
    t.add(0, "full", transitions(0, [40, 41]))
  a, b = tables.sample([0, 1, 0], "full", 50), restored.sample([0, 1, 0], "full", 50)
  for key in replay.FIELDS:
    np.testing.assert_array_equal(a[key], b[key])
  assert serials_of(a) == serials_of(b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_into_the_same_folder_again(make, backend, tmp_path):
  tables = make(backend)
  tables.add(0, "full", transitions(0, range(3)))
  tables.save(str(tmp_path))
  tables.add(0, "full", transitions(0, range(3, 5)))
  tables.save(str(tmp_path))
  assert sorted(n for n in os.listdir(tmp_path) if n != "LATEST") == ["ckpt-000002"]
  restored = make(backend)
  restored.restore(str(tmp_path))
  assert all_serials(restored, 0, "full") == set(range(5))


def _data_file(backend, checkpoint):
  if backend == "in_process":
    return os.path.join(checkpoint, "task001_full.npz")
  return os.path.join(checkpoint, "reverb", "chunks.tfrecord")


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_or_corrupt_checkpoint_names_the_file(make, backend, tmp_path):
  tables = make(backend)
  with pytest.raises(replay.CheckpointError,
                     match=re.escape(str(tmp_path / "nothing" / "LATEST"))):
    tables.restore(str(tmp_path / "nothing"))
  source = make(backend)
  source.add(1, "full", transitions(1, range(30)))
  directory = str(tmp_path / "replay")
  source.save(directory)
  checkpoint = replay.latest_checkpoint(directory)
  assert checkpoint == os.path.join(directory, "ckpt-000001")
  clean = str(tmp_path / "clean")
  shutil.copytree(checkpoint, clean)

  data = _data_file(backend, checkpoint)
  with open(data, "r+b") as f:  # Truncated, as by a full disk.
    f.truncate(os.path.getsize(data) // 2)
  with pytest.raises(replay.CheckpointError, match=re.escape(data) + ": corrupt"):
    tables.restore(directory)
  os.remove(data)
  with pytest.raises(replay.CheckpointError, match=re.escape(f"{data}: missing")):
    tables.restore(directory)

  shutil.rmtree(checkpoint)
  shutil.copytree(clean, checkpoint)
  manifest = os.path.join(checkpoint, "manifest.json")
  other = make(backend, num_tasks=4)  # Other tables than the checkpoint's.
  with pytest.raises(replay.CheckpointError, match=re.escape(f"{manifest}: written for other tables")):
    other.restore(directory)
  if backend == "reverb":  # Reverb loads what passed the checks, but not what was saved.
    with open(manifest) as f:
      text = f.read()
    with open(manifest, "w") as f:
      f.write(text.replace('"sizes": [', '"sizes": [[0, 1], '))
    with pytest.raises(replay.CheckpointError, match="loaded table sizes differ"):
      tables.restore(directory)
  with open(manifest, "w") as f:
    f.write('{"format_version": 1, "backe')
  with pytest.raises(replay.CheckpointError, match=re.escape(f"{manifest}: corrupt")):
    tables.restore(directory)

  shutil.rmtree(checkpoint)
  with pytest.raises(replay.CheckpointError, match=re.escape(f"{checkpoint}: missing")):
    tables.restore(directory)
  with open(os.path.join(directory, "LATEST"), "w") as f:
    f.write("../../etc\n")
  with pytest.raises(replay.CheckpointError, match=re.escape(os.path.join(directory, "LATEST"))):
    tables.restore(directory)
  # After all the failed restores the tables still work and still hold nothing.
  np.testing.assert_array_equal(tables.sizes(), np.zeros((3, 2)))
  tables.add(0, "full", transitions(0, [7]))
  assert all_serials(tables, 0, "full") == {7}


@pytest.mark.parametrize("backend", BACKENDS)
def test_crash_during_save_keeps_the_previous_checkpoint(make, backend, tmp_path,
                                                        monkeypatch):
  tables = make(backend)
  tables.add(0, "full", transitions(0, range(5)))
  directory = str(tmp_path)
  tables.save(directory)
  tables.add(0, "full", transitions(0, range(5, 9)))

  # Fail partway through writing the data files of the second save.
  if backend == "in_process":
    module, name, original = np, "savez", np.savez
  else:
    from mier_tf.replay import reverb_tables
    module, name, original = reverb_tables, "_file_digest", reverb_tables._file_digest
  calls = []

  def fail_on_third_call(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
      raise OSError("disk full")
    return original(*args, **kwargs)

  monkeypatch.setattr(module, name, fail_on_third_call)
  with pytest.raises(OSError, match="disk full"):
    tables.save(directory)
  monkeypatch.undo()
  assert len(calls) == 3
  assert sorted(os.listdir(directory)) == ["LATEST", "ckpt-000001"]

  # A kill leaves no chance to clean up: a half-written staging folder, and a renamed
  # checkpoint that LATEST was never moved to.
  os.makedirs(os.path.join(directory, ".staging-killed"))
  shutil.copytree(os.path.join(directory, "ckpt-000001"),
                  os.path.join(directory, "ckpt-000002"))
  os.remove(os.path.join(directory, "ckpt-000002", "manifest.json"))

  restored = make(backend)
  restored.restore(directory)
  assert all_serials(restored, 0, "full") == set(range(5))
  tables.save(directory)  # The next save succeeds and clears the debris.
  assert sorted(os.listdir(directory)) == ["LATEST", "ckpt-000003"]
  restored.restore(directory)
  assert all_serials(restored, 0, "full") == set(range(9))


def test_factory_registry_and_gin():
  with pytest.raises(ValueError, match=r"'in_process', 'reverb'"):
    replay.make_task_tables("redis", num_tasks=1, observation_dim=1, action_dim=1)
  gin.clear_config()
  try:
    gin.parse_config("make_task_tables.backend = 'in_process'\n"
                     "make_task_tables.adapt_capacity = 7\n")
    tables = replay.make_task_tables(num_tasks=2, observation_dim=OBS, action_dim=ACT)
  finally:
    gin.clear_config()
  assert isinstance(tables, replay.InProcessTaskTables)
  assert tables.capacities == {"adapt": 7, "full": 200_000}


def test_in_process_memory_grows_with_the_data():
  tables = replay.InProcessTaskTables(100, 17, 6)  # HalfCheetah rows: 42 floats, 168 bytes.
  assert tables.row_dim == 42 and tables.nbytes == 0
  tables.add(5, ("adapt", "full"), transitions_dims(3000, 17, 6))
  # Geometric growth: at most twice the 2 x 3000 rows held, not 100 x 250,000 rows.
  assert 2 * 3000 * 168 <= tables.nbytes <= 2 * 2 * 3000 * 168
  small = replay.InProcessTaskTables(1, 17, 6, adapt_capacity=10, full_capacity=1500)
  small.add(0, "full", transitions_dims(1400, 17, 6))
  small.add(0, "full", transitions_dims(200, 17, 6))
  assert small.nbytes == 1500 * 168  # Never allocated past the capacity.


def transitions_dims(n, obs_dim, act_dim):
  rng = np.random.default_rng(0)
  return {"observation": rng.normal(size=(n, obs_dim)), "action": rng.normal(size=(n, act_dim)),
          "reward": rng.normal(size=n), "next_observation": rng.normal(size=(n, obs_dim)),
          "discount": np.ones(n)}


def test_in_process_sample_gathers_whole_rows_of_the_asked_tasks():
  """Every sampled row is one row put in, all five fields of it, of the task asked in that
  position, drawn across the task's rows (its speed: mier_tf/benchmark/replay.py)."""
  num_tasks, rows, obs_dim, act_dim = 20, 500, 17, 6
  tables = replay.InProcessTaskTables(num_tasks, obs_dim, act_dim, full_capacity=rows)
  data = []
  for task in range(num_tasks):
    data.append(transitions_dims(rows, obs_dim, act_dim))
    data[-1]["observation"] += task
    data[-1]["reward"] = task * rows + np.arange(rows)  # names the task and the row
    tables.add(task, "full", data[-1])
  tasks = np.arange(0, 20, 2)
  batch = tables.sample(tasks, "full", 200)
  ids = batch["reward"].astype(np.int64)
  np.testing.assert_array_equal(ids // rows, np.repeat(tasks[:, None], 200, 1))
  for key, value in batch.items():
    expected = np.stack([data[t][key][ids[i] % rows] for i, t in enumerate(tasks)])
    assert value.dtype == np.float32 and value.shape == expected.shape, key
    np.testing.assert_array_equal(value, expected.astype(np.float32), err_msg=key)
  for row in ids % rows:  # 200 draws of 500 rows: about 165 distinct, from both ends
    assert len(set(row)) > 120 and row.min() < 25 and row.max() >= rows - 25, row


def test_reverb_external_server(tmp_path):
  import reverb
  from mier_tf.replay import ReverbTaskTables, make_reverb_tables
  server = reverb.Server(make_reverb_tables(2, OBS, ACT, 50, 100))
  tables = wrong = None
  try:
    tables = ReverbTaskTables(2, OBS, ACT, 50, 100, address=f"localhost:{server.port}")
    tables.add(1, ("adapt", "full"), transitions(1, range(4)))
    assert all_serials(tables, 1, "adapt") == set(range(4))
    # A second client sees the same server's data.
    other = ReverbTaskTables(2, OBS, ACT, 50, 100, address=f"localhost:{server.port}")
    np.testing.assert_array_equal(other.sizes(), [[0, 0], [4, 4]])
    other.close()
    tables.save(str(tmp_path))  # The files stay on the server's machine: restore explains.
    with pytest.raises(RuntimeError, match="fallback_checkpoint_path='/"):
      tables.restore(str(tmp_path))
    with pytest.raises(ValueError, match=r"lacks the tables.*2 missing \(task002_adapt"):
      ReverbTaskTables(3, OBS, ACT, 50, 100, address=f"localhost:{server.port}")
    with pytest.raises(ValueError, match=r"1 configured differently.*task000_full"):
      wrong = ReverbTaskTables(1, OBS, ACT, 50, 99, address=f"localhost:{server.port}")
    with pytest.raises(ConnectionError, match="localhost:1 did not answer"):
      ReverbTaskTables(1, OBS, ACT, address="localhost:1", timeout_s=1)
  finally:
    for t in (tables, wrong):
      if t is not None:
        t.close()
    server.stop()


def test_reverb_server_that_goes_away_gives_a_connection_error(tmp_path):
  """A server in another process (as in a distributed run), SIGKILLed: `sample` and `add`
  give up after reconnect_timeout_s with one line naming it, where a Reverb sampler or
  writer alone would wait forever; the process can still exit."""
  import signal
  import subprocess
  import sys
  import time
  from mier_tf.distributed import launch
  from mier_tf.replay import ReverbTaskTables
  port = launch.free_port()
  server = subprocess.Popen([sys.executable, "-c", (
      "import time, reverb; from mier_tf.replay import make_reverb_tables; "
      f"s = reverb.Server(make_reverb_tables(2, {OBS}, {ACT}, 50, 100), port={port}); "
      "time.sleep(600)")], cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  tables = None
  try:
    deadline = time.monotonic() + 120
    while tables is None:
      try:
        tables = ReverbTaskTables(2, OBS, ACT, 50, 100, address=f"localhost:{port}",
                                  timeout_s=1, reconnect_timeout_s=2)
      except ConnectionError:
        assert time.monotonic() < deadline and server.poll() is None, "server did not start"
    tables.add(0, "full", transitions(0, range(5)))
    assert all_serials(tables, 0, "full", draws=50) == set(range(5))  # a sampler is open
    server.send_signal(signal.SIGKILL)
    server.wait()
    for call, doing in ((lambda: tables.sample([0, 0], "full", 8), "sampling task000_full"),
                        (lambda: tables.add(1, "adapt", transitions(1, [1])), "adding")):
      start = time.monotonic()
      with pytest.raises(ConnectionError, match=f"localhost:{port} went away while {doing} "
                                                "and did not come back within 2 s"):
        call()
      assert time.monotonic() - start < 30
  finally:
    if server.poll() is None:
      server.kill()
    if tables is not None:
      tables.close()
