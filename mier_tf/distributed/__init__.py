"""Distributed collection on Reverb: a replay server, N collectors and a learner.

  common.py     what the roles share: the server's tables (per-task data, weights, rate),
                the rate limiter's ratio, the published variables, bounded connection waits
  server.py     the replay server: the tables, with Reverb checkpoints (restored on restart)
  collector.py  a collector: pulls weights, collects Algorithm 1's data, writes it, pays a
                rate ticket per task round
  learner.py    the learner: takes one ticket per training step, trains, publishes weights,
                evaluates, checkpoints and exports (`MetaTrainingRun`'s own steps)
  launch.py     all of them as processes on one machine, supervised (one command)

Each role is a process started by `scripts/launch.py --role=...`; see docs/DISTRIBUTED.md.
A Reverb server listens on every interface without authentication: trusted networks only.
"""
