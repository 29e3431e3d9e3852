"""`clbench report FOLDER... --out report.html`: one self-contained HTML page of everything found."""
from __future__ import annotations

from typing import List, Optional

import typer


def report(
    paths: Optional[List[str]] = typer.Argument(None, help="record files or folders: results, static tables, "
                                                           "diagnoses, sweep folders (default: results/)"),
    out: str = typer.Option("report.html", "--out", "-o", help="the page to write (.html); an earlier clbench "
                                                               "report there is replaced, any other file refused"),
    baseline: Optional[str] = typer.Option(None, "--baseline", "-b",
                                           help="condenser the continual table compares against (as compare)"),
    images: str = typer.Option("preview", "--images", help="memory pictures: preview (the first order or set of "
                                                          "each record, scaled to 360 px), full (all, as saved) "
                                                          "or none"),
    title: Optional[str] = typer.Option(None, "--title", help="the page's title"),
) -> None:
    """Write one HTML page (tables, curves, memory pictures, configurations) that opens offline in any browser."""
    from clbench.report.page import write_report

    if baseline is not None:
        from clbench.condensers import canonical_name

        baseline = canonical_name(baseline)
    from clbench.core.text import printable

    sources = paths or ["results"]
    folders, tables = _sweep_tables(sources)
    path, page, size = write_report(sources, out, baseline=baseline, images=images, title=title,
                                    sweeps=tables, skip=folders)
    for problem in page.problems:
        typer.echo(printable(f"unreadable: {problem.path}: {problem.reason}"), err=True)
    typer.echo(f"report: {path} ({size / 2**20:.2f} MiB, {len(page.records)} record(s), "
               f"{page.seconds:.1f} s)")


def _sweep_tables(sources: list[str]):
    """The sweep folders under the sources (those holding a `.sweep.json` plan, readable or not: their jobs'
    record copies are never read) and (folder, `clbench sweep --status` table) of each readable one."""
    from pathlib import Path

    from clbench.core.errors import ClbenchError
    from clbench.core.text import printable
    from clbench.sweep.spec import SWEEP_FILE
    from clbench.sweep.status import status_table, sweep_status

    folders = sorted({p.parent for s in sources if Path(s).is_dir() for p in Path(s).rglob(SWEEP_FILE)})
    tables = []
    for folder in folders:
        try:
            tables.append((folder, status_table(sweep_status(folder), folder)))
        except ClbenchError as exc:  # a damaged plan: the page still shows the records
            typer.echo(printable(f"unreadable sweep {folder}: {exc}"), err=True)
    return folders, tables
