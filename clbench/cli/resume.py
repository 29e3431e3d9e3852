"""`clbench resume RECORD`: continue a run with the options stored in its record."""
from __future__ import annotations

from typing import Optional

import typer


def resume(
    record: str = typer.Argument(..., help="the run record (.json) to continue"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="orders side by side in processes (default: the record's)"),
) -> None:
    """Continue an interrupted run from the last completed step of each order (same final record)."""
    from clbench.cli.run import execute
    from clbench.protocol import continual

    execute(lambda reporter: continual.resume(record, reporter, jobs=jobs))
