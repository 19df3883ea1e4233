"""The paper's budget as a campaign of runs that outlive a session (mier_tf/campaign.py).

    python scripts/campaign.py start            # start or resume every unfinished run, in the
                                                # background at nice 19; safe to repeat
    python scripts/campaign.py status           # each run: samples done, ETA, milestones
    python scripts/campaign.py plan             # the runs and the commands they are, and the
                                                # evaluations due (Algorithm 2 from milestones)
                                                # and the own-data studies (claim 3)

--runs_dir defaults to ~/mier_runs/<campaign> (outside the repository).
"""
import os
import shlex
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from mier_tf import campaign
from mier_tf import cli

flags.DEFINE_string("campaign", "paper", f"One of: {', '.join(campaign.campaign_names())}.")
flags.DEFINE_string("runs_dir", None, "Where the runs go (default ~/mier_runs/<campaign>).")
flags.DEFINE_integer("parallel", 2, "Jobs at a time, each pinned to one core.")
flags.DEFINE_bool("evaluate", True, "Also evaluate MIER-wR and MIER (Algorithm 2) from each "
                  "milestone and finished run.")
flags.DEFINE_bool("lowest_priority", True, "supervise: rank the supervisor's session below "
                  "all others (false only for tests sharing a busy machine).")
FLAGS = flags.FLAGS
ACTIONS = ("start", "status", "plan", "supervise")


def main(argv):
  with cli.one_line_errors():
    if len(argv) != 2 or argv[1] not in ACTIONS:
      raise cli.UsageError(f"usage: scripts/campaign.py {{{'|'.join(ACTIONS[:3])}}} "
                           f"[--campaign=NAME] [--runs_dir=DIR]")
    if FLAGS.parallel < 1:
      raise cli.UsageError(f"--parallel must be >= 1; got {FLAGS.parallel}")
    try:
      runs = campaign.get_campaign(FLAGS.campaign)
    except ValueError as e:
      raise cli.UsageError(str(e)) from None
    runs_dir = os.path.abspath(os.path.expanduser(
        FLAGS.runs_dir or campaign.default_runs_dir(FLAGS.campaign)))
    action = argv[1]
    if action == "start":
      print(campaign.start(FLAGS.campaign, runs_dir, FLAGS.parallel, FLAGS.evaluate))
    elif action == "status":
      print(campaign.format_status(FLAGS.campaign, runs_dir,
                                   campaign.status(FLAGS.campaign, runs_dir)))
    elif action == "plan":
      for run in runs:
        print(f"{run.name}: " + shlex.join(campaign.train_command(run, runs_dir)[1:]))
      for job in campaign.pending_jobs(FLAGS.campaign, runs_dir, FLAGS.evaluate):
        if job.kind == "evaluate":
          when = " (once no run waits to train)" if job.optional else ""
          print(f"{job.name}{when}: " +
                shlex.join(campaign.evaluate_command(job.run, job.root)[1:]))
        elif job.kind == "study":
          out = campaign.study_dir(job.run, job.root, runs_dir)
          print(f"{job.name}: " + shlex.join(campaign.study_command(job.run, job.root, out)[1:]))
    else:
      return 1 if campaign.supervise(FLAGS.campaign, runs_dir, FLAGS.parallel, FLAGS.evaluate,
                                     FLAGS.lowest_priority) else 0
  return 0


if __name__ == "__main__":
  app.run(main)
