"""Regenerates every table and figure of docs/RESULTS.md from the committed raw results.

    python scripts/regenerate_results.py                 # `make results`
    python scripts/regenerate_results.py --results_dir=docs/results

For each family folder under RESULTS_DIR (one sub-folder per seed, as `scripts/save_run.py`
writes them, plus references/ from `scripts/references.py`): the plots of all its seeds
(`scripts/plot.py`: learning_curves.png, training_losses.png, mier_vs_mier_wr.png with the
references; for folders whose runs were saved with their scalars), collection.png (each
seed's collection returns on its training tasks, epoch by epoch, runs still training
included; for runs that logged them), table.md
(`scripts/results_table.py`: per test task and per seed), algorithm2.md (Algorithm 2 on each
relabeled task of each evaluated checkpoint: the model's held-out NLL and steps, the relabeled
rewards and next states against the simulator, the guard), training_tasks.md (MIER-wR on
training tasks and its reward parts, from <seed>/training_tasks/step_<n>.json, which
`scripts/evaluate.py --split=train --reward_parts --json` writes), and for a campaign's family whose
milestones were evaluated, budget.md and mier_vs_budget.png (MIER against MIER-wR as the
meta-training budget grows); over those families RESULTS_DIR/headline.md (each at half its
budget and at its end), also written into the headline block of RESULTS.md beside
RESULTS_DIR (docs/RESULTS.md) where that page exists. Under RESULTS_DIR/relabel_study, <config>.md for the studies of
`scripts/relabel_study.py` named <config>_s<seed>: Algorithm 2's variants over the seeds; own_data.md
(claim 3) from those named <config>_s<seed>_<k>k that ran a variant with and without
relabeled data (`real_only`). Reads only the saved JSON; needs no checkpoint, event file or
simulator.
"""
import glob
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from mier_tf import cli

flags.DEFINE_string("results_dir", "docs/results", "Folder of the families' saved runs.")
FLAGS = flags.FLAGS


def family_dirs(results_dir: str) -> list:
  """The folders directly under results_dir that hold <seed>/eval/results.json (a run's end)
  or <seed>/milestones/step_<N>/eval/results.json (a run still training)."""
  ends = glob.glob(os.path.join(results_dir, "*", "*", "eval", "results.json"))
  milestones = glob.glob(os.path.join(results_dir, "*", "*", "milestones", "step_*", "eval",
                                      "results.json"))
  return sorted({os.path.join(results_dir, os.path.relpath(p, results_dir).split(os.sep)[0])
                 for p in ends + milestones})


def main(argv):
  del argv
  from mier_tf import files  # pylint: disable=g-import-not-at-top
  from mier_tf import plotting  # pylint: disable=g-import-not-at-top
  from mier_tf import results  # pylint: disable=g-import-not-at-top
  with cli.one_line_errors():
    families = family_dirs(FLAGS.results_dir)
    if not families:
      raise FileNotFoundError(f"no <family>/<seed>/eval/results.json under {FLAGS.results_dir}")
    headline = {}
    for family_dir in families:
      references = results.load_references(family_dir)
      # Runs still training (evaluated milestones alone) are in the budget's tables only.
      if glob.glob(os.path.join(family_dir, "*", "eval", "results.json")):
        runs = results.load_runs(family_dir)
        seeds = [os.path.join(family_dir, seed) for seed in sorted(runs)]
        if all(os.path.exists(os.path.join(s, "scalars.json")) for s in seeds):
          for path in plotting.plot_runs(seeds, family_dir):
            print(path)
        table = results.markdown(results.comparison(runs, references))
        print(files.atomic_write(os.path.join(family_dir, "table.md"), table))
      for path in plotting.plot_collection(family_dir):
        print(path)
      budget_runs = results.load_budget(family_dir)
      algorithm2 = results.algorithm2_markdown(budget_runs)
      if algorithm2:
        print(files.atomic_write(os.path.join(family_dir, "algorithm2.md"), algorithm2))
      training_tasks = results.training_tasks_markdown(results.load_training_tasks(family_dir))
      if training_tasks:
        print(files.atomic_write(os.path.join(family_dir, "training_tasks.md"), training_tasks))
      budget = results.budget(budget_runs, references)
      # A campaign's family: milestones evaluated (or a run still training, saved with them).
      if len(budget["steps"]) > 1 or any(r["training"] for r in budget["rows"]):
        print(files.atomic_write(os.path.join(family_dir, "budget.md"),
                                 results.budget_markdown(budget)))
        for path in plotting.plot_budget(family_dir, table=budget):
          print(path)
        headline[os.path.basename(family_dir)] = budget
    if headline:
      # The campaign's headline table, also into the results page's headline block.
      table = results.headline_markdown(headline)
      print(files.atomic_write(os.path.join(FLAGS.results_dir, "headline.md"), table))
      page = os.path.join(os.path.dirname(os.path.abspath(FLAGS.results_dir)), "RESULTS.md")
      if os.path.exists(page):
        with open(page) as f:
          text = f.read()
        try:
          updated = results.with_headline(text, table)
        except ValueError as e:
          raise ValueError(f"{page}: {e}") from None
        if updated != text:
          print(files.atomic_write(page, updated))
    study_dir = os.path.join(FLAGS.results_dir, "relabel_study")
    for config, seeds in sorted(results.load_study_seeds(study_dir).items()):
      print(files.atomic_write(os.path.join(study_dir, f"{config}.md"),
                               results.study_seeds_markdown(seeds)))
    own_data = results.load_own_data(study_dir)
    if own_data:
      print(files.atomic_write(os.path.join(study_dir, "own_data.md"),
                               results.own_data_markdown(own_data)))


if __name__ == "__main__":
  app.run(main)
