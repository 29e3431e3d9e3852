"""`clbench resume RECORD`: continue a run with the options stored in its record."""
from __future__ import annotations

from typing import Optional

import typer


def resume(
    record: str = typer.Argument(..., help="the run record (.json) to continue"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="orders side by side in processes (default: the record's)"),
) -> None:
    """Continue an interrupted run from the last completed step of each order, or a static record from its next
    set (same final record)."""
    from clbench.cli.run import execute
    from clbench.protocol.kinds import kind_of
    from clbench.records.record import load_record

    kind = kind_of(load_record(record))
    if kind.name == "static":
        from clbench.cli.condense import print_summary
        from clbench.cli.progress import RichStaticReporter

        execute(lambda reporter: kind.resume(record, reporter), RichStaticReporter, print_summary)
        return
    execute(lambda reporter: kind.resume(record, reporter, jobs=jobs))
