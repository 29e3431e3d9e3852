"""Running a protocol end to end: the configuration and its resolution (`config`), the continual protocol
(`continual`: orders -> experiences -> condense -> retrain -> record), orders side by side (`parallel`), the
static condensation benchmark (`static`), checkpoints for resume, and clean stops on signals.

May import: everything below it (core, data, nets, condense, clbench.condensers, memory, training,
clbench.strategies, records); never report, sweep or cli.
"""
