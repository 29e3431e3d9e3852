"""Rich progress bars on stderr: for `clbench run` (orders x steps, condensation iterations, training epochs) and
for `clbench condense` (sets, condensation, each evaluation network's training), with time left."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from clbench.protocol.continual import Reporter
from clbench.protocol.static import StaticReporter


def _bars(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console, transient=False,
    )


def _losses(info: dict) -> str:
    """A condenser's progress facts, e.g. "loss=0.1234 it=20"."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())


class _Bars:
    """What both reporters show: a header, then three bars (the outer loop: a run's orders x steps or a
    benchmark's sets; one condensation's iterations; one network's training epochs) with a line per item done."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = _bars(self.console)
        self.outer_task = self.condense_task = self.train_task = None

    def _start(self, header: str, outer: str, total: int) -> None:
        self.console.print(header)
        self.progress.start()
        self.outer_task = self.progress.add_task(outer, total=total, info="")
        self.condense_task = self.progress.add_task("condense", total=1, info="")
        self.train_task = self.progress.add_task("train", total=1, info="")

    def _item_started(self, info: str) -> None:
        self.progress.update(self.outer_task, info=info)
        self.progress.reset(self.condense_task, total=1, info="")

    def _item_finished(self, line: str) -> None:
        self.progress.advance(self.outer_task)
        self.progress.console.print(line)

    def _trained(self, label: str, done: int, total: int) -> None:
        if done == 1:
            self.progress.reset(self.train_task, total=total, info=label)
        self.progress.update(self.train_task, completed=done)

    def condense_progress(self, done: int, total: int, info: dict) -> None:
        self.progress.update(self.condense_task, completed=done, total=total, info=_losses(info))

    def run_finished(self, record: dict[str, Any], path: Path) -> None:
        self.progress.stop()

    def close(self) -> None:
        if self.outer_task is not None:  # never started (bad input refused before the run): print nothing
            self.progress.stop()


class RichReporter(_Bars, Reporter):
    def run_started(self, plan: dict[str, Any]) -> None:
        self._start(
            f"[bold]clbench run[/bold] {plan['condenser']} on {plan['dataset']}, memory {plan['memory']}, "
            f"{plan['steps']} steps, orders {plan['orders'][0]}..{plan['orders'][-1]}, profile {plan['profile']}, "
            f"device {plan['device']}\nrecord: {plan['record']}",
            "orders x steps", len(plan["orders"]) * plan["steps"])

    def step_started(self, order: int, step: int, classes: list[int]) -> None:
        self._item_started(f"order {order} step {step} classes {classes}")

    def train_progress(self, network: int, done: int, total: int) -> None:
        self._trained(f"network {network + 1}", done, total)

    def step_finished(self, order: int, step: dict[str, Any]) -> None:
        accs = ", ".join(f"{a:.1f}" for a in step["accuracies"])
        self._item_finished(
            f"order {order} step {step['step']}: {len(step['seen_classes'])} classes, accuracy {accs} "
            f"(condense {step['condense_seconds']:.1f}s, train {step['train_seconds']:.1f}s)")


class RichStaticReporter(_Bars, StaticReporter):
    def run_started(self, plan: dict[str, Any]) -> None:
        self._start(
            f"[bold]clbench condense[/bold] {plan['condenser']} on {plan['dataset']}, ipc {plan['ipc']}, "
            f"sets {plan['sets'][0]}..{plan['sets'][-1]}, {plan['evals']} x {', '.join(plan['eval_nets'])}, "
            f"profile {plan['profile']}, device {plan['device']}\nrecord: {plan['record']}",
            "sets", len(plan["sets"]))

    def set_started(self, index: int) -> None:
        self._item_started(f"set {index}")

    def train_progress(self, network: str, evaluation: int, done: int, total: int) -> None:
        self._trained(f"{network} #{evaluation + 1}", done, total)

    def set_finished(self, entry: dict[str, Any]) -> None:
        accs = "; ".join(f"{n} {', '.join(f'{a:.1f}' for a in accs)}" for n, accs in entry["accuracies"].items())
        self._item_finished(f"set {entry['set']}: {accs} (condense {entry['condense_seconds']:.1f}s)")
