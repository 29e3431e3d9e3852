"""`clbench diagnose`: style gap and intra-class diversity of condensed sets, as a table and a JSON file."""
from __future__ import annotations

from typing import Any, List, Optional

import typer


def diagnose(
    records: List[str] = typer.Argument(..., help="record files (static or continual); several are compared"),
    seeds: int = typer.Option(3, "--seeds", help="freshly initialised networks to measure in"),
    k: int = typer.Option(2, "--k", help="neighbours of the k-NN distance"),
    real: int = typer.Option(500, "--real", help="real images per class for the real statistics (all if fewer)"),
    network: str = typer.Option("convnet", "--network", help="network to measure in (a ConvNet variant)"),
    width: Optional[int] = typer.Option(None, "--width", help="ConvNet width (default 128; narrower is faster on a CPU)"),
    taps: str = typer.Option("conv", "--taps", help="style taps: conv (each block's conv output), or DDM's post_relu or pre_relu (its style_tap option's names; norm = post_relu)"),
    seed: int = typer.Option(0, "--seed", help="seed of the networks and of the real draws"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N"),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="dataset folder (else $CLBENCH_DATA, the system copy, download)"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="JSON file for the full diagnosis (per set and class)"),
    per_class: bool = typer.Option(False, "--per-class", help="also print a table per set and class"),
) -> None:
    """Is a condensed set's style close to the real data's, and is it diverse? (the seed paper's two claims)"""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from clbench.core.atomic import atomic_write_json
    from clbench.report.diagnose import DiagnoseConfig, check_out
    from clbench.report.diagnose import diagnose as run_diagnosis

    if out:
        check_out(out)
    config = DiagnoseConfig(seeds=seeds, k=k, real_per_class=real, network=network, width=width, taps=taps, seed=seed,
                            device=device, data_dir=data_dir)
    progress = Progress(TextColumn("[bold]diagnose"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[info]}"), console=Console(stderr=True))
    task = progress.add_task("diagnose", total=1, info="")

    def report(done: int, total: int, label: str) -> None:
        if not progress.live.is_started:  # shown from the first measurement: a bad record fails on one line
            progress.start()
        progress.update(task, completed=done, total=total, info=label)

    try:
        doc = run_diagnosis(records, config, report)
    finally:
        if progress.live.is_started:
            progress.stop()
    console = Console()
    if per_class:
        for result in doc["records"]:
            _class_table(result, console)
    _summary_table(doc, console)
    if out:
        atomic_write_json(out, doc)
        typer.echo(f"diagnosis: {out}")


def _summary_table(doc: dict[str, Any], console) -> None:
    """Metrics as rows, records as columns: DM and DDM side by side (a narrow terminal splits the records)."""
    from clbench.report.compare import show
    from clbench.report.diagnose_table import summary_table

    show(summary_table(doc), "table", console)


def _class_table(result: dict[str, Any], console) -> None:
    from clbench.report.compare import show
    from clbench.report.diagnose import METRICS
    from clbench.report.diagnose_table import class_rows, pair
    from clbench.report.table import Column, Table

    columns = [Column("set", key=True), Column("class", key=True), Column("n", numeric=True)]
    columns += [Column(title, numeric=True) for title in ("mean gap", "std gap", "Gram gap", "pairwise", "k-NN")]
    cells = [[row["set"], row["class"], str(row["n"]), *[pair(row[f"{m}_synthetic"], row[f"{m}_real"]) for m in METRICS]]
             for row in class_rows(result)]
    show(Table(f"{result['condenser']} on {result['dataset']} ({result['ipc']}) per class", columns, cells, [], [],
               "synthetic (random real of the same count)"), "table", console)
