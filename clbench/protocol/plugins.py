"""Avalanche plugins the retrain protocol hangs on its strategy's hooks: what happens around each step.

`StepReport` tells the order's hooks a step begins (`before_training_exp`). `StepRecorder` hands the finished
step (`after_eval`, when the accuracies are in) to the order's recorder (clbench.protocol.hooks.StepRecorder,
the one every protocol's steps go to). Progress INSIDE a step (condensation iterations, training epochs) is not
an Avalanche event, because those loops are the condenser's and the training recipe's, not Avalanche's: it
reaches the reporter through plain callbacks given to the strategy.
"""
from __future__ import annotations

from typing import Any, Callable

from avalanche.core import BasePlugin


class StepReport(BasePlugin):
    """Announces each step (its index and new classes, in stream order) before the strategy trains on it."""

    def __init__(self, groups: list[list[int]], started: Callable[[int, list[int]], None]):
        super().__init__()
        self.groups, self.started = groups, started  # groups[t]: the classes new at step t

    def before_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self.started(strategy.step, self.groups[strategy.step])


class StepRecorder(BasePlugin):
    """After each step's evaluation: the strategy's `last_step` and memory to the order's recorder."""

    def __init__(self, recorder: Any):
        super().__init__()
        self.recorder = recorder

    def after_eval(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self.recorder.record(strategy.last_step, strategy.memory.state())
