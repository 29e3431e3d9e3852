"""`clbench condense`: the static benchmark (condense every class, train from scratch, test), with progress."""
from __future__ import annotations

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
    from clbench.cli.progress import RichStaticReporter
    from clbench.core.options import parse_assignments
    from clbench.protocol.static import StaticConfig, parse_eval_nets, run_static

    config = StaticConfig(
        condenser=condenser, dataset=dataset, ipc=ipc, sets=sets, first_set=first_set, evals=evals,
        eval_nets=parse_eval_nets(eval_nets), network=network, width=width, profile=profile, device=device, seed=seed,
        opt=parse_assignments(opt), train=parse_assignments(train), out=out, data_dir=data_dir,
    )
    reporter = RichStaticReporter()
    try:
        path, record = run_static(config, reporter)
    finally:
        reporter.close()
    _print_summary(record)
    typer.echo(f"record: {path}")


def _print_summary(record: dict[str, Any]) -> None:
    from rich.console import Console

    from clbench.report.compare import show
    from clbench.report.table import Column, Table

    c = record["config"]
    cells = [[name, "-" if s["mean"] is None else f"{s['mean']:.2f} ± {s['std']:.2f}", str(s["n"])]
             for name, s in record["summary"]["accuracy"].items()]
    show(Table(f"{c['condenser']} on {c['dataset']}, ipc {c['ipc']}",
               [Column("network", key=True), Column("accuracy", numeric=True), Column("n", numeric=True)], cells, [],
               [], f"test accuracy (%), mean ± std over {len(c['sets'])} sets x {c['evals']} evaluations; "
                   f"profile {c['profile']}"), "table", Console())
