"""Running a protocol end to end (docs/how-a-run-flows.md follows a run through these modules).

    config     a run's configuration (RunConfig) and TOML files
    profiles   what the paper and quick profiles fix for the harness itself
    resolve    the one resolve step of every command: device, profile, condenser and options, recipe, dataset,
               networks, checked before any work
    kinds      the kinds of experiment a record can be (continual, static) behind one interface (KINDS), what
               resume and sweeps use
    session    the one session that writes a record of any kind: create or reopen, lock, write, fail, stop
    base       what a continual protocol is (ContinualProtocol, OrderRun) and the registry of them (PROTOCOLS)
    retrain, replay, joint   the built-in continual protocols (`--learner`), one module each
    prepare    a continual run resolved and checked before its first step (Prepared), and the record's config
    continual  `clbench run` / `resume`: the continual session (its orders) and kind
    order      one class order of any continual protocol (what a `--jobs` worker runs too)
    hooks      progress callbacks (Reporter), an order's hooks, and the one recorder of finished steps
    plugins    the Avalanche plugins of the retrain protocol's strategy
    parallel   orders side by side in worker processes
    static     the static condensation benchmark (`clbench condense`): its session (sets) and kind
    checkpoint, signals, failures   per-order checkpoints for resume; clean stops; the errors failures become
    logs, tensor_batches   live logs; the replay protocol's minibatches from resident tensors

May import: everything below it (core, data, nets, matching, clbench.condensers, memory, training, records,
clbench.strategies); never report, sweep or cli.
"""
