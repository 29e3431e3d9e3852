"""`clbench export RECORD --format F --out FILE`: a record's memories or synthetic sets in a reference layout."""
from __future__ import annotations

import typer


def export(
    record: str = typer.Argument(..., help="a record written by clbench run or clbench condense"),
    fmt: str = typer.Option(..., "--format", help="reference-cl (one file per class order), reference-static "
                                                  "(every static set in one file) or clbench"),
    out: str = typer.Option(..., "--out", "-o", help="file to write; '{order}' (continual) or '{set}' (static, "
                                                     "format clbench) for one file each"),
) -> None:
    """Write a record's condensed sets as files the reference code reads (or --condenser precomputed)."""
    from clbench.records.export import export_record

    for path in export_record(record, fmt, out):
        typer.echo(f"wrote {path}")
