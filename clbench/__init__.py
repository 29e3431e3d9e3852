"""clbench: a continual-learning benchmark harness whose rehearsal memory is built by dataset condensation.

The subpackages follow the data flow of a run, each importing only those listed before it:

    core        errors, the one registry, options, seeds, speed switches
    data        datasets and class-incremental streams
    nets        networks and differentiable Siamese augmentation
    condense    loss terms, per-class batch statistics, the add-ons (style matching, diversity) of
                distribution-matching condensers, the checks applied to every condenser's result
    condensers  the built-in condensers, one module each (the repository's condensers/ folder)
    memory      the rehearsal memory and its budget
    training    the evaluation recipe: train from scratch, test
    records     the JSON record and the snapshots beside it
    strategies  the Avalanche strategy that turns a condenser into a memory, and the storage policy that gives
                any Avalanche strategy a condensed replay memory (the repository's strategies/)
    protocol    configuration, the continual and static protocols, parallel orders, checkpoints
    report      comparison tables, statistics, plots, diagnosis
    sweep       grids of runs on local, Ray or Slurm engines
    cli         the `clbench` command: parse, call the library, print

`clbench.testing` is the plugin author's contract check. tests/test_layout.py enforces the order.
"""
