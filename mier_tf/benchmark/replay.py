"""Stage "replay": meta-batch sampling from both backends, and what the train step waits."""
import threading
from typing import List

import numpy as np

from mier_tf import model as model_lib
from mier_tf import replay
from mier_tf.agents import sac
from mier_tf.benchmark.fixtures import ACT, CTX, OBS, random_transitions, tensors
from mier_tf.benchmark.harness import Row, Sizes, at_most, make_row, quiet_stderr, stage, time_ms


@stage("replay")
def bench_replay(sizes: Sizes) -> List[Row]:
  """Meta-batch sampling from both backends vs numpy, and the train step with and without it.

  10 tasks x 200 rows per table from tables of HalfCheetah rows (in-process: 20,000 rows per
  task; Reverb: 2,000, as filling Reverb costs a Python call per row) vs numpy fancy indexing
  of the same data held as [tasks, rows, ...] arrays. Then one training step (model
  meta-step + SAC step on 10 x (200 + 200)) fed from each backend vs fed a batch already in
  memory: the difference is the time the trainer waits on replay. A third variant samples
  the next Reverb batch in a background thread while the step runs (the overlap the library
  does not do yet).
  """
  tasks, per_task = sizes.pick(10, 2), sizes.pick(200, 8)
  rng = np.random.default_rng(0)
  ids = np.arange(tasks)
  table_rows = {"in_process": sizes.pick(20_000, 100), "reverb": sizes.pick(2_000, 50)}
  stored = {backend: random_transitions(rng, n, leading=(tasks,))
            for backend, n in table_rows.items()}
  tables = {}
  # Reverb's C++ code logs each flush of its writer and each new sampler to stderr.
  with quiet_stderr():
    for backend, data in stored.items():
      tables[backend] = replay.make_task_tables(
          backend, num_tasks=tasks, observation_dim=OBS, action_dim=ACT)
      for task in range(tasks):
        tables[backend].add(task, ("adapt", "full"), {k: v[task] for k, v in data.items()})
    # Opens every Reverb sampler once, so that their log lines fall in here too.
    tables["reverb"].sample(ids, "adapt", per_task)
    tables["reverb"].sample(ids, "full", per_task)
  try:
    def numpy_sample(data):
      n = data["reward"].shape[1]
      index = rng.integers(0, n, size=(tasks, per_task))
      return {key: value[ids[:, None], index] for key, value in data.items()}

    rows = []
    for backend, table in tables.items():
      table_ms, numpy_ms = time_ms(
          sizes,
          lambda: table.sample(ids, "full", per_task),  # pylint: disable=cell-var-from-loop
          lambda: numpy_sample(stored[backend]),  # pylint: disable=cell-var-from-loop
          warmup=5, repeats=sizes.pick(40, 2))
      detail = (f"ms per meta-batch ({tasks} tasks x {per_task}, {table_rows[backend]:,} rows "
                f"per table): {backend} tables / numpy fancy indexing of the same arrays")
      if backend == "in_process":
        rows.append(at_most(f"replay sample {backend}", table_ms, numpy_ms, 2, detail))
      else:
        rows.append(make_row(f"replay sample {backend}", table_ms, numpy_ms, detail=detail))

    model = model_lib.ContextualDynamicsModel(OBS, ACT, context_dim=CTX)
    model.update_normalizer({k: v.reshape((-1,) + v.shape[2:])
                             for k, v in stored["in_process"].items()})
    trainer = model_lib.MetaTrainer(model, model_lib.InnerLoop(steps=2, lr=0.01))
    learner = sac.ContextSacLearner(sac.create_sac_agent(OBS, ACT, CTX))

    def train(adapt_batch, eval_batch):
      info = trainer.step(adapt_batch, eval_batch)
      return learner.train_tagged(eval_batch, info.contexts).critic_loss.numpy()

    def sample(table):
      return (tensors(table.sample(ids, "adapt", per_task)),
              tensors(table.sample(ids, "full", per_task)))

    fixed = sample(tables["in_process"])
    pending = {}

    def prefetched_reverb():
      # Sample the next batch in a thread while this step trains (TF and Reverb release the
      # GIL), then wait for it: the trainer waits only for what the step did not hide.
      batches = pending.pop("next", None) or sample(tables["reverb"])
      worker = threading.Thread(target=lambda: pending.update(next=sample(tables["reverb"])))
      worker.start()
      loss = train(*batches)
      worker.join()
      return loss

    no_replay_ms, in_process_ms, reverb_ms, prefetched_ms = time_ms(
        sizes,
        lambda: train(*fixed),
        lambda: train(*sample(tables["in_process"])),
        lambda: train(*sample(tables["reverb"])),
        prefetched_reverb, warmup=2, repeats=sizes.pick(10, 2))
    for backend, step_ms in (("in_process", in_process_ms), ("reverb", reverb_ms),
                             ("reverb prefetched", prefetched_ms)):
      share = 1 - no_replay_ms / step_ms
      rows.append(at_most(f"replay train step {backend}", step_ms, no_replay_ms, 1.05, (
          f"ms per training step (meta-step + SAC step) sampling its batches from "
          f"{backend} / the same step on a batch already in memory; the trainer waits on "
          f"replay for {100 * share:.1f}% of the step"), replay_share=round(share, 4)))
    return rows
  finally:
    for table in tables.values():
      table.close()
