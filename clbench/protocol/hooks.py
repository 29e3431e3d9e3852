"""What an order tells the world as it goes: the reporter's progress callbacks, and the one recorder of steps.

`Reporter` is what a caller passes to see progress (the CLI passes a rich one; the library's says nothing).
`Hooks` is that reporter joined with the run's live logs and its stop flag, as an order's protocol calls them.
`StepRecorder` is the one way a finished step reaches the record, whichever protocol ran it: the step's entry
appended to the order's steps, the order's checkpoint saved (the memory, plus the learner's state where it
carries one across steps), then the session told.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torch import Tensor

from clbench.protocol.checkpoint import save_checkpoint
from clbench.protocol.failures import saving
from clbench.records.schema import StepEntry, StepResult, step_entry


class Reporter:
    """Progress callbacks; the library's default says nothing. The CLI passes a rich implementation."""

    def run_started(self, plan: dict[str, Any]) -> None: ...
    def order_started(self, order: int, class_order: list[int]) -> None: ...
    def step_started(self, order: int, step: int, classes: list[int]) -> None: ...
    def condense_progress(self, done: int, total: int, info: dict) -> None: ...
    def train_progress(self, network: int, done: int, total: int) -> None: ...
    def step_finished(self, order: int, step: dict[str, Any]) -> None: ...
    def run_finished(self, record: dict[str, Any], path: Path) -> None: ...
    # Called from a signal handler: keep it short (one line to the user).
    def stop_requested(self, signal_name: str) -> None: ...


@dataclass
class Hooks:
    """What an order calls as it goes: the reporter's progress and the run's logs, then the session's record."""

    condense_progress: Callable[[int, int, dict], None]
    train_progress: Callable[[int, int, int], None]
    train_loss: Callable[[int, int, int, float], None] | None  # (network, epoch, epochs, loss); None: not logged
    step_started: Callable[[int, list[int]], None]  # (step, its new classes)
    step_done: Callable[[StepEntry], None]
    check_stop: Callable[[], None]


class StepRecorder:
    """Every finished step of one order: its entry, the order's checkpoint, then `hooks.step_done`."""

    def __init__(self, record_path: Path, run_id: str, order: int, steps: list[StepEntry], hooks: Hooks):
        self.record_path, self.run_id, self.order, self.steps, self.hooks = record_path, run_id, order, steps, hooks

    def record(self, result: StepResult, memory: dict[str, Tensor], learner: dict[str, Any] | None = None) -> None:
        entry = step_entry(result)
        self.steps.append(entry)
        saving(lambda: save_checkpoint(self.record_path, self.run_id, self.order, self.steps, memory, learner),
               self.record_path)
        self.hooks.step_done(entry)
