"""`clbench compare`: read records, print one table."""
from __future__ import annotations

from typing import List, Optional

import typer


def compare(
    paths: Optional[List[str]] = typer.Argument(None, help="record files or folders (default: results/)"),
    fmt: str = typer.Option("table", "--format", "-f", help="table, markdown, csv, latex or json"),
) -> None:
    """Put run records side by side: final accuracy, average incremental accuracy, forgetting, time."""
    from rich.console import Console

    from clbench.errors import UsageError
    from clbench.report import FORMATS, print_table, summary_rows
    from clbench.results import find_records

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    roots = paths or ["results"]
    records, warnings = find_records(roots)
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    if not records:
        raise UsageError(f"no run records found in {', '.join(roots)}; run `clbench run` first or give a record path")
    print_table(summary_rows([r for _, r in records]), fmt, Console(soft_wrap=True))
