"""`clbench condense`: the static benchmark (condense every class, train from scratch, test), with progress."""
from __future__ import annotations

from typing import Any, List, Optional

import typer


def condense(
    condenser: Optional[str] = typer.Option(None, "--condenser", "-c", help="condenser name, or module.path:ClassName (default: random)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="a name `clbench datasets` lists, or folder:PATH\\[@SIZE]; NAME#0-9 keeps those classes (default: fashion-mnist)"),
    ipc: Optional[int] = typer.Option(None, "--ipc", help="synthetic images per class (default: 10)"),
    sets: Optional[int] = typer.Option(None, "--sets", help="synthetic sets, each condensed anew (default: 5 paper, 2 quick)"),
    first_set: Optional[int] = typer.Option(None, "--first-set", help="index of the first set (seeds follow the index) (default: 0)"),
    eval_nets: Optional[str] = typer.Option(None, "--eval-nets", help="comma-separated evaluation networks, e.g. convnet,alexnet,vgg11,resnet18 (default: convnet)"),
    evals: Optional[int] = typer.Option(None, "--evals", help="networks trained per set and architecture (default: 5 paper, 2 quick)"),
    network: Optional[str] = typer.Option(None, "--network", help="architecture the condenser embeds with (default: convnet)"),
    width: Optional[int] = typer.Option(None, "--width", help="ConvNet width (default: 128 paper, 32 quick)"),
    profile: Optional[str] = typer.Option(None, "--profile", help="paper, quick, or auto (paper on CUDA, quick on CPU) (default: auto)"),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N (default: auto)"),
    seed: Optional[int] = typer.Option(None, "--seed", help="run seed (condensation, network init, training draws) (default: 0)"),
    opt: List[str] = typer.Option([], "--opt", help="condenser option key=value (repeatable)"),
    train: List[str] = typer.Option([], "--train", help="training recipe option key=value, e.g. epochs=300 (repeatable)"),
    config: Optional[str] = typer.Option(None, "--config", help="TOML file with these options and \\[opt] / \\[train] tables"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="folder for the record, synthetic sets and pictures (default: results)"),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="dataset folder (else $CLBENCH_DATA, the system copy, download)"),
    resume: Optional[str] = typer.Option(None, "--resume", help="make the sets this record (same options) still lacks"),
) -> None:
    """Static condensation: train networks from scratch on condensed sets and test them on the full test set."""
    from clbench.cli.progress import RichStaticReporter
    from clbench.cli.run import execute
    from clbench.core.options import parse_assignments
    from clbench.protocol import config as cfg
    from clbench.protocol.static import StaticConfig, parse_eval_nets, run_static

    # Options left out are None, so that a --config file's values are not overwritten by the defaults.
    cli_values = {"condenser": condenser, "dataset": dataset, "ipc": ipc, "sets": sets, "first_set": first_set,
                  "evals": evals, "network": network, "width": width, "profile": profile, "device": device,
                  "seed": seed, "out": out, "data_dir": data_dir,
                  "eval_nets": None if eval_nets is None else parse_eval_nets(eval_nets)}
    overrides = {k: v for k, v in cli_values.items() if v is not None}
    if opt:
        overrides["opt"] = parse_assignments(opt)
    if train:
        overrides["train"] = parse_assignments(train)
    base = cfg.merge(StaticConfig(), cfg.load_toml(config, StaticConfig)) if config else StaticConfig()
    static_config = cfg.merge(base, overrides)
    execute(lambda reporter: run_static(static_config, reporter, resume=resume), RichStaticReporter, print_summary)


def print_summary(record: dict[str, Any]) -> None:
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
