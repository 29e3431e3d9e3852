"""Support for condensers: the loss terms of DM and DDM as pure functions (`losses`), the per-class statistics
of a batch that distribution-matching condensers compare (`statistics`), and the checks the harness applies
to every set a condenser returns (`checks`). The condensers themselves are in
clbench.condensers (the repository's `condensers/` folder).

May import: clbench.core, clbench.nets.
"""
