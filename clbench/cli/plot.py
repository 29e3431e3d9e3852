"""`clbench plot curve|memory`: pictures from records, written to files (never windows)."""
from __future__ import annotations

from typing import List, Optional

import typer

plot_app = typer.Typer(help="Pictures from records: accuracy curves and memory grids.", no_args_is_help=True)


@plot_app.command("curve")
def curve(
    paths: List[str] = typer.Argument(..., help="record files or folders"),
    out: str = typer.Option(..., "--out", "-o", help="picture to write (.png, .pdf or .svg)"),
) -> None:
    """Accuracy against the number of classes seen, one line per condenser with a ± std band."""
    from clbench.core.errors import UsageError
    from clbench.records.record import find_records, warning_lines
    from clbench.report.plots import curve_figure, picture_format, save_figure

    picture_format(out)  # a bad name is refused before any record is read
    records, warnings = find_records(paths)
    for line in warning_lines(warnings):
        typer.echo(line, err=True)
    if not records:
        raise UsageError(f"no run records found in {', '.join(paths)}")
    save_figure(curve_figure([r for _, r in records]), out)
    typer.echo(f"curve: {out}")


@plot_app.command("memory")
def memory(
    path: str = typer.Argument(..., help="one record file"),
    order: Optional[int] = typer.Option(None, "--order", help="class order whose memory to show (default: the first)"),
    out: str = typer.Option(..., "--out", "-o", help="picture to write (.png, .pdf or .svg)"),
) -> None:
    """The memory images of a record: one row per class, de-normalised to pixels."""
    from pathlib import Path

    from clbench.core.errors import UsageError
    from clbench.records.record import load_record
    from clbench.report.plots import memory_figure, picture_format, save_figure

    picture_format(out)
    if not Path(path).is_file():
        raise UsageError(f"{path}: give one record file (a .json written by clbench run)")
    record = load_record(path)
    save_figure(memory_figure(record, path, order), out)
    typer.echo(f"memory: {out}")
