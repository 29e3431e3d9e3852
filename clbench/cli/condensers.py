"""`clbench condensers`: every condenser with where it came from, what it does and its options."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table


def condensers() -> None:
    """List the condensers (built-in and from installed packages) with their options and defaults."""
    from clbench.options import describe
    from condensers import CONDENSERS, load_builtins

    load_builtins()
    table = Table(title="condensers", show_lines=True)
    for column in ("name", "origin", "description", "options (default; quick)"):
        table.add_column(column)
    for entry in CONDENSERS.entries():
        try:
            cls = entry.load()
        except Exception as exc:  # a broken plugin must not hide the others
            table.add_row(entry.name, entry.origin, f"[red]cannot load: {exc}[/red]", "")
            continue
        options_type = getattr(cls, "Options", None)
        rows = describe(options_type) if options_type is not None else []
        options = "\n".join(
            f"{r['name']}={r['default']}" + (f"; {r['quick']}" if r["quick"] != r["default"] else "")
            + (f"  [dim]{r['help']}[/dim]" if r["help"] else "")
            for r in rows
        )
        description = cls.description() if hasattr(cls, "description") else (cls.__doc__ or "").strip()
        table.add_row(entry.name, entry.origin, description, options or "-")
    Console().print(table)
