"""`clbench condense`: the static benchmark (condense every class, train from scratch, test), with progress."""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer


def condense(
    condenser: str = typer.Option("random", "--condenser", "-c", help="condenser name, or module.path:ClassName"),
    dataset: str = typer.Option("fashion-mnist", "--dataset", "-d", help="fashion-mnist, mnist, cifar10, cifar100, tinyimagenet, digits"),
    ipc: int = typer.Option(10, "--ipc", help="synthetic images per class"),
    sets: Optional[int] = typer.Option(None, "--sets", help="synthetic sets, each condensed anew (default: 5 paper, 2 quick)"),
    first_set: int = typer.Option(0, "--first-set", help="index of the first set (seeds follow the index)"),
    eval_nets: str = typer.Option("convnet", "--eval-nets", help="comma-separated evaluation networks, e.g. convnet,alexnet,vgg11,resnet18"),
    evals: Optional[int] = typer.Option(None, "--evals", help="networks trained per set and architecture (default: 5 paper, 2 quick)"),
    network: str = typer.Option("convnet", "--network", help="architecture the condenser embeds with"),
    width: Optional[int] = typer.Option(None, "--width", help="ConvNet width (default: 128 paper, 32 quick)"),
    profile: str = typer.Option("auto", "--profile", help="paper, quick, or auto (paper on CUDA, quick on CPU)"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N"),
    seed: int = typer.Option(0, "--seed", help="run seed (condensation, network init, training draws)"),
    opt: List[str] = typer.Option([], "--opt", help="condenser option key=value (repeatable)"),
    train: List[str] = typer.Option([], "--train", help="training recipe option key=value, e.g. epochs=300 (repeatable)"),
    out: str = typer.Option("results", "--out", "-o", help="folder for the record, synthetic sets and pictures"),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="dataset folder (else $CLBENCH_DATA, the system copy, download)"),
) -> None:
    """Static condensation: train networks from scratch on condensed sets and test them on the full test set."""
    from clbench.core.options import parse_assignments
    from clbench.protocol.static import StaticConfig, parse_eval_nets, run_static

    config = StaticConfig(
        condenser=condenser, dataset=dataset, ipc=ipc, sets=sets, first_set=first_set, evals=evals,
        eval_nets=parse_eval_nets(eval_nets), network=network, width=width, profile=profile, device=device, seed=seed,
        opt=parse_assignments(opt), train=parse_assignments(train), out=out, data_dir=data_dir,
    )
    reporter = _rich_reporter()
    try:
        path, record = run_static(config, reporter)
    finally:
        reporter.close()
    _print_summary(record)
    typer.echo(f"record: {path}")


def _print_summary(record: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    c = record["config"]
    table = Table(title=f"{c['condenser']} on {c['dataset']}, ipc {c['ipc']}",
                  caption=f"test accuracy (%), mean ± std over {len(c['sets'])} sets x {c['evals']} evaluations; "
                          f"profile {c['profile']}")
    for title in ("network", "accuracy", "n"):
        table.add_column(title)
    for name, s in record["summary"]["accuracy"].items():
        cell = "-" if s["mean"] is None else f"{s['mean']:.2f} ± {s['std']:.2f}"
        table.add_row(name, cell, str(s["n"]))
    Console().print(table)


def _rich_reporter():
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from clbench.protocol.static import StaticReporter

    class RichStaticReporter(StaticReporter):
        def __init__(self) -> None:
            self.console = Console(stderr=True)
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=self.console,
            )
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
            text = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
            self.progress.update(self.condense_task, completed=done, total=total, info=text)

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

    return RichStaticReporter()
