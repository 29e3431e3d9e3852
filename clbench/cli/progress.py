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


class RichReporter(Reporter):
    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = _bars(self.console)
        self.run_task = self.condense_task = self.train_task = None

    def run_started(self, plan: dict[str, Any]) -> None:
        self.console.print(
            f"[bold]clbench run[/bold] {plan['condenser']} on {plan['dataset']}, memory {plan['memory']}, "
            f"{plan['steps']} steps, orders {plan['orders'][0]}..{plan['orders'][-1]}, profile {plan['profile']}, "
            f"device {plan['device']}\nrecord: {plan['record']}"
        )
        self.progress.start()
        total = len(plan["orders"]) * plan["steps"]
        self.run_task = self.progress.add_task("orders x steps", total=total, info="")
        self.condense_task = self.progress.add_task("condense", total=1, info="")
        self.train_task = self.progress.add_task("train", total=1, info="")

    def step_started(self, order: int, step: int, classes: list[int]) -> None:
        self.progress.update(self.run_task, info=f"order {order} step {step} classes {classes}")
        self.progress.reset(self.condense_task, total=1, info="")

    def condense_progress(self, done: int, total: int, info: dict) -> None:
        self.progress.update(self.condense_task, completed=done, total=total, info=_losses(info))

    def train_progress(self, network: int, done: int, total: int) -> None:
        if done == 1:
            self.progress.reset(self.train_task, total=total, info=f"network {network + 1}")
        self.progress.update(self.train_task, completed=done)

    def step_finished(self, order: int, step: dict[str, Any]) -> None:
        self.progress.advance(self.run_task)
        accs = ", ".join(f"{a:.1f}" for a in step["accuracies"])
        self.progress.console.print(
            f"order {order} step {step['step']}: {len(step['seen_classes'])} classes, accuracy {accs} "
            f"(condense {step['condense_seconds']:.1f}s, train {step['train_seconds']:.1f}s)"
        )

    def run_finished(self, record: dict[str, Any], path: Path) -> None:
        self.progress.stop()

    def close(self) -> None:
        if self.run_task is not None:  # never started (bad input refused before the run): print nothing
            self.progress.stop()


class RichStaticReporter(StaticReporter):
    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self.progress = _bars(self.console)
        self.sets_task = self.condense_task = self.train_task = None

    def run_started(self, plan: dict[str, Any]) -> None:
        self.console.print(
            f"[bold]clbench condense[/bold] {plan['condenser']} on {plan['dataset']}, ipc {plan['ipc']}, "
            f"sets {plan['sets'][0]}..{plan['sets'][-1]}, {plan['evals']} x {', '.join(plan['eval_nets'])}, "
            f"profile {plan['profile']}, device {plan['device']}\nrecord: {plan['record']}"
        )
        self.progress.start()
        self.sets_task = self.progress.add_task("sets", total=len(plan["sets"]), info="")
        self.condense_task = self.progress.add_task("condense", total=1, info="")
        self.train_task = self.progress.add_task("train", total=1, info="")

    def set_started(self, index: int) -> None:
        self.progress.update(self.sets_task, info=f"set {index}")
        self.progress.reset(self.condense_task, total=1, info="")

    def condense_progress(self, done: int, total: int, info: dict) -> None:
        self.progress.update(self.condense_task, completed=done, total=total, info=_losses(info))

    def train_progress(self, network: str, evaluation: int, done: int, total: int) -> None:
        if done == 1:
            self.progress.reset(self.train_task, total=total, info=f"{network} #{evaluation + 1}")
        self.progress.update(self.train_task, completed=done)

    def set_finished(self, entry: dict[str, Any]) -> None:
        self.progress.advance(self.sets_task)
        accs = "; ".join(f"{n} {', '.join(f'{a:.1f}' for a in accs)}" for n, accs in entry["accuracies"].items())
        self.progress.console.print(f"set {entry['set']}: {accs} (condense {entry['condense_seconds']:.1f}s)")

    def run_finished(self, record: dict[str, Any], path: Path) -> None:
        self.progress.stop()

    def close(self) -> None:
        self.progress.stop()
