"""The measurement behind the model-identification defaults (docs/IDENTIFICATION.md).

    python scripts/study_identification.py --out=docs/results/identification

Model only, no policy: random-action data from every training task of a family (the
replay's adaptation and full tables stand in as two independent draws per task), then
`--steps` model meta-steps at the paper's sizes for each variant and seed, then the
identification score of `mier_tf/identification.py` on fresh random-action data of 40
training tasks. Variants change one setting each against the default (blocks weighting,
joint network, initial context fixed at zero). Writes study.json and prints a table.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

flags.DEFINE_string("family", "cheetah_vel_hard", "Task family.")
flags.DEFINE_integer("steps", 1000, "Model meta-steps per variant and seed.")
flags.DEFINE_integer("seeds", 3, "Seeds per variant.")
flags.DEFINE_list("variants", ["default", "dimensions", "trained_context", "split"],
                  "Variants to run.")
flags.DEFINE_integer("context_dim", 5, "Context size (10 for cheetah_negjoints, as its config).")
flags.DEFINE_string("out", None, "Directory for study.json (default: print only).")
FLAGS = flags.FLAGS

VARIANTS = {
    "default": ({}, {}),
    "dimensions": ({"loss_weighting": "dimensions"}, {}),
    "trained_context": ({}, {"train_initial_context": True}),
    "split": ({"architecture": "split"}, {}),
}


def main(argv):
  del argv
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  from mier_tf import envs, identification, model as model_lib
  from mier_tf.collect import stack_tasks
  family = envs.get_task_family(FLAGS.family)
  tasks = list(family.train_tasks)
  print(f"collecting random-action data of {len(tasks)} tasks", flush=True)
  data = identification.collect_random(family, tasks, 800, seed=123)
  pool = stack_tasks(data)  # [tasks, 800, ...]
  score_ids = np.unique(np.linspace(0, len(tasks) - 1, 40).astype(int))
  score = stack_tasks(identification.collect_random(
      family, [tasks[i] for i in score_ids], 600, seed=456))
  features = family.task_features([tasks[i] for i in score_ids])
  results = []
  for name in FLAGS.variants:
    model_kwargs, trainer_kwargs = VARIANTS[name]
    for seed in range(FLAGS.seeds):
      tf.keras.utils.set_random_seed(seed)
      rng = np.random.default_rng(seed)
      model = model_lib.ContextualDynamicsModel(
          family.observation_dim, family.action_dim, context_dim=FLAGS.context_dim,
          **model_kwargs)
      model.update_normalizer({k: v.reshape(-1, *v.shape[2:]) for k, v in pool.items()})
      trainer = model_lib.MetaTrainer(model, **trainer_kwargs)
      adapt = tf.function(lambda b, m=model: model_lib.adapt_context(m, b, 2, 0.01))
      start = time.perf_counter()
      for _ in range(FLAGS.steps):
        ids = rng.choice(len(tasks), 10, replace=False)
        rows = rng.integers(0, 800, size=(2, 200))
        adapt_batch = {k: tf.constant(v[ids][:, rows[0]]) for k, v in pool.items()}
        eval_batch = {k: tf.constant(v[ids][:, rows[1]]) for k, v in pool.items()}
        trainer.step(adapt_batch, eval_batch)
      seconds = time.perf_counter() - start
      batches = [{k: tf.constant(v[:, i * 200:(i + 1) * 200]) for k, v in score.items()}
                 for i in range(3)]
      report = identification.identify(model, lambda b: adapt(b).numpy(), batches[:2],
                                        batches[2], features)
      row = dict(variant=name, seed=seed, seconds=seconds,
                 prior_context_norm=float(np.linalg.norm(model.context.numpy())),
                 **{k: float(v) for k, v in report._asdict().items()})
      results.append(row)
      print(f"{name:16s} seed {seed}: R2 {row['r2']:.3f} ratio {row['spread_ratio']:.1f} "
            f"reward NLL {row['nll_reward_before']:.2f}->{row['nll_reward_after']:.2f} "
            f"state NLL {row['nll_state_before']:.2f}->{row['nll_state_after']:.2f} "
            f"|phi0| {row['prior_context_norm']:.3f} {seconds:.0f}s", flush=True)
  if FLAGS.out:
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(os.path.join(FLAGS.out, f"study_{FLAGS.family}.json"), "w") as f:
      json.dump(dict(family=FLAGS.family, steps=FLAGS.steps, context_dim=FLAGS.context_dim,
                     results=results), f, indent=1)


if __name__ == "__main__":
  app.run(main)
