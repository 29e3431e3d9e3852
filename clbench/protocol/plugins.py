"""Avalanche plugins the continual protocol hangs on the strategy's hooks: what happens around each step.

`StepReport` tells the reporter a step begins (`before_training_exp`). `StepRecorder` turns the finished step
(`after_eval`, when the accuracies are in) into the record's step entry, saves the order's checkpoint, and
hands the entry on. Progress INSIDE a step (condensation iterations, training epochs) is not an Avalanche
event, because those loops are the condenser's and the training recipe's, not Avalanche's: it reaches the
reporter through plain callbacks given to the strategy.
"""
from __future__ import annotations

from typing import Any, Callable

from avalanche.core import BasePlugin

from clbench.records.schema import StepEntry


class StepReport(BasePlugin):
    """Announces each step (its index and new classes, in stream order) before the strategy trains on it."""

    def __init__(self, order: int, groups: list[list[int]], started: Callable[[int, int, list[int]], None]):
        super().__init__()
        self.order, self.groups, self.started = order, groups, started  # groups[t]: the classes new at step t

    def before_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self.started(self.order, strategy.step, self.groups[strategy.step])


class StepRecorder(BasePlugin):
    """After each step's evaluation: its entry appended to `steps`, a checkpoint, then `on_step(order, entry)`."""

    def __init__(self, order: int, steps: list[StepEntry], checkpoint: Callable[[list[StepEntry], Any], None],
                 on_step: Callable[[int, StepEntry], None]):
        super().__init__()
        self.order, self.steps, self.checkpoint, self.on_step = order, steps, checkpoint, on_step

    def after_eval(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        entry = step_entry(strategy.last_step)
        self.steps.append(entry)
        self.checkpoint(self.steps, strategy.memory.state())
        self.on_step(self.order, entry)


def step_entry(result: Any) -> StepEntry:
    """The record's entry for one step (a clbench.strategies.condensed_rehearsal.StepResult)."""
    return {
        "step": result.step,
        "classes": result.classes,
        "seen_classes": result.seen_classes,
        "ipc": result.ipc,
        "memory_size": sum(result.memory_sizes.values()),
        "accuracies": result.accuracies,
        "accuracy_mean": sum(result.accuracies) / len(result.accuracies),
        "class_accuracy": {str(c): a for c, a in result.class_accuracy.items()},
        "condense_seconds": result.condense_seconds,
        "train_seconds": result.train_seconds,
        "condenser_facts": result.condenser_facts,
    }
