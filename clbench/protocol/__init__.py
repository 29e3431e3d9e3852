"""Running a protocol end to end.

    config     a run's configuration (RunConfig) and TOML files
    resolve    the one resolve step of every command: device, profile, condenser and options, recipe, dataset,
               networks, checked before any work
    continual  `clbench run` / `resume`: the run session that owns the record (orders -> experiences ->
               condense -> retrain -> record)
    orders     preparing a continual run and executing one class order (what a `--jobs` worker runs too)
    plugins    the Avalanche plugins that report and checkpoint each step
    replay     the `--learner replay` order: one network, Avalanche's Naive + ReplayPlugin + the condensed buffer
    parallel   orders side by side in worker processes
    static     the static condensation benchmark (`clbench condense`)
    checkpoint, signals   per-order checkpoints for resume; clean stops on SIGINT/SIGTERM

May import: everything below it (core, data, nets, condense, clbench.condensers, memory, training,
clbench.strategies, records); never report, sweep or cli.
"""
