"""`clbench compare`: read records, print one table (and optionally write the accuracy curve)."""
from __future__ import annotations

from typing import List, Optional

import typer


def compare(
    paths: Optional[List[str]] = typer.Argument(None, help="record files or folders (default: results/)"),
    fmt: str = typer.Option("table", "--format", "-f", help="table, markdown, csv, latex or json"),
    baseline: Optional[str] = typer.Option(
        None, "--baseline", "-b",
        help="condenser to compare against: paired difference of final accuracy over the same "
             "(seed, order, network), 95% CI and paired t-test p-value"),
    plot: Optional[str] = typer.Option(None, "--plot",
                                       help="also write the accuracy curve to this file (.png, .pdf, .svg)"),
    costs: bool = typer.Option(True, "--costs/--no-costs",
                               help="show what each memory cost: MiB stored, seconds and peak memory per phase"),
) -> None:
    """Put run records side by side: final accuracy, average incremental accuracy, forgetting, time."""
    from rich.console import Console

    from clbench.core.errors import UsageError
    from clbench.records.record import find_records, warning_lines
    from clbench.report.compare import FORMATS, print_table, summary_rows
    from clbench.report.rows import canonical_records

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if plot is not None:
        from clbench.report.plots import picture_format

        try:
            picture_format(plot)
        except UsageError as exc:
            raise UsageError(f"--plot {exc}") from None
    roots = paths or ["results"]
    records, warnings = find_records(roots)
    for line in warning_lines(warnings):
        typer.echo(line, err=True)
    if not records:
        raise UsageError(f"no run records found in {', '.join(roots)}; run `clbench run` first or give a record path")
    found = canonical_records(r for _, r in records)
    if baseline is not None:
        from clbench.condensers import canonical_name

        baseline = canonical_name(baseline)
    if baseline is not None and not any(r["config"].get("condenser") == baseline for r in found):
        names = sorted({str(r["config"].get("condenser")) for r in found})
        raise UsageError(f"--baseline {baseline!r}: no record of that condenser among these records "
                         f"(condensers found: {', '.join(names)})")
    continual = [r for r in found if r.get("kind", "continual") == "continual"]
    static = [r for r in found if r.get("kind") == "static"]
    console = Console(soft_wrap=fmt != "table")
    if continual:
        print_table(summary_rows(continual, baseline=baseline), fmt, console, costs)
    if static:
        from clbench.report.compare import render_static
        from clbench.report.rows import static_rows

        render_static(static_rows(static), fmt, console, costs)
    if plot is not None and continual:
        from clbench.report.plots import curve_figure, save_figure

        save_figure(curve_figure(continual), plot)
        typer.echo(f"curve: {plot}", err=True)
    elif plot is not None:
        typer.echo(f"--plot: no curve written to {plot}: these are static records only, which have no accuracy "
                   f"curve (`clbench plot curve` takes continual run records)", err=True)

