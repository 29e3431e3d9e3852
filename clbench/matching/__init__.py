"""What the matching condensers are built from: the loss terms of DM, DDM and DataDAM as pure functions
(`losses`), the per-class statistics of a batch that they compare (`statistics`), and the add-on terms any
distribution-matching condenser can switch on (`addons`: style matching, intra-class diversity). The
condensers themselves are in clbench.condensers (the repository's `condensers/` folder).

May import: clbench.core, clbench.nets.
"""
