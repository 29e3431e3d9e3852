"""The `retrain` protocol (`clbench run`, the default learner): the paper's continual protocol.

At every experience the condenser turns the new classes' real data into `ipc` images each, the memory keeps
them (shrinking older classes under a total budget), and `networks_per_step` FRESH networks are trained from
scratch on the whole memory and tested on every class seen. The order's experiences stream through the
condensed-rehearsal strategy (an Avalanche template, clbench.strategies.condensed_rehearsal); Avalanche
plugins announce each step and hand the finished one to the order's recorder (clbench.protocol.plugins).
"""
from __future__ import annotations

from typing import Any

from clbench.protocol.base import ContinualProtocol, OrderRun


class Retrain(ContinualProtocol):
    name = "retrain"
    summary = "fresh networks trained from scratch on the memory at every step (the paper's protocol)"

    def strategy_type(self) -> type:
        """The Avalanche strategy an order streams through (a protocol built on this one may subclass it)."""
        from clbench.strategies.condensed_rehearsal import CondensedRehearsal  # Avalanche: imported where used

        return CondensedRehearsal

    def run_order(self, run: OrderRun) -> Any:
        from clbench.data.streams import class_incremental_stream
        from clbench.memory.store import Memory
        from clbench.protocol.order import step_errors
        from clbench.protocol.plugins import StepRecorder, StepReport  # Avalanche: imported where used

        p, hooks = run.p, run.hooks
        ds = p.dataset
        epochs = p.recipe.total_epochs
        benchmark, _ = class_incremental_stream(ds.train_labels, ds.test_labels, run.classes, p.config.steps)
        strategy = self.strategy_type()(
            condenser=p.resolved.new_condenser(), budget=p.budget, data=run.data, class_order=run.classes,
            make_network=run.make_network, recipe=p.recipe,
            augment=p.recipe.augment(),
            networks_per_step=p.networks_per_step, seed=p.config.seed, order_index=run.order, device=p.device,
            condense_progress=hooks.condense_progress, train_progress=hooks.train_progress,
            train_loss=None if hooks.train_loss is None else (
                lambda k, epoch, loss: hooks.train_loss(k, epoch, epochs, loss)),
            plugins=[StepReport(run.groups, hooks.step_started), StepRecorder(run.recorder)],
            extras=run.task_extras,
        )
        if run.state.memory is not None:
            strategy.restore(run.start, Memory.from_state(run.state.memory, p.device))
        for t, experience in enumerate(benchmark.train_stream):
            if t < run.start:
                continue
            hooks.check_stop()
            with step_errors(run, t, strategy.condenser_name):
                strategy.train(experience, eval_streams=[])
                strategy.eval(benchmark.test_stream[: t + 1])
        return strategy.memory
