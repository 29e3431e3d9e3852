"""Avalanche strategies and storage policies that turn a condenser into a rehearsal memory (installed as
clbench.strategies): `condensed_rehearsal` retrains fresh networks from scratch on the memory after every
experience (the paper's protocol, `--learner retrain`); `condensed_buffer` is an `ExemplarsBuffer` that any
Avalanche strategy replays through `ReplayPlugin` (`--learner replay`, or your own script).

May import: everything up to clbench.records; never protocol, report, sweep or cli.
"""
