"""Support for condensers: the loss terms of DM and DDM as pure functions (`losses`), the per-class statistics
of a batch that distribution-matching condensers compare (`statistics`), the add-on terms any such condenser
can switch on (`addons`: style matching, intra-class diversity), and the checks the harness applies to every
set a condenser returns (`checks`). The condensers themselves are in
clbench.condensers (the repository's `condensers/` folder).

May import: clbench.core, clbench.nets.
"""
