"""`clbench condensers`: every condenser with where it came from, what it does and its options.

One block per condenser rather than one wide table, so that the options and their help stay readable in an
80-column terminal or log.
"""
from __future__ import annotations

from typing import Optional

import typer


def condensers(
    name: Optional[str] = typer.Argument(None, help="show only this condenser"),
) -> None:
    """List the condensers (built-in and from installed packages) with their options and defaults."""
    from rich.console import Console, Group
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    from clbench.condensers import CONDENSERS, get_condenser, load_builtins
    from clbench.core.options import describe

    load_builtins()
    collisions = CONDENSERS.collisions()
    if name is not None:
        get_condenser(name)  # the one named: refused (one line, exit 2) as a run would refuse it
    entries = CONDENSERS.entries() if name is None else [CONDENSERS.entry(name)]
    console = Console(highlight=False)
    for entry in entries:
        head = Text.assemble((entry.name, "bold"), "  ", (f"({entry.origin})", "cyan"))
        if entry.name in collisions:
            console.print(head)
            console.print(Padding(Text(f"name collision: {CONDENSERS.collision_error(entry.name).args[0]}",
                                       style="red"), (0, 0, 1, 2)))
            continue
        try:
            cls = get_condenser(entry.name)  # the checks a run applies
        except Exception as exc:  # a broken plugin must not hide the others
            console.print(head)
            console.print(Padding(Text(f"cannot load {entry.target!r}: {exc}", style="red"), (0, 0, 1, 2)))
            continue
        description = cls.description() if hasattr(cls, "description") else \
            (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        parts = [Text(description or "(no description: give the class a docstring)")]
        shrink = getattr(cls, "shrink_rule", "")
        if shrink:
            parts.append(Text(f"under a total memory budget: {shrink}", style="dim"))
        options_type = getattr(cls, "Options", None)
        rows = describe(options_type) if options_type is not None else []
        addon_names = _addon_fields(options_type)
        own = [r for r in rows if r["name"] not in addon_names]
        addon_rows = [r for r in rows if r["name"] in addon_names]
        if own:
            parts.append(_options_table(own, options_type, Table))
        elif not addon_rows:
            parts.append(Text("no options", style="dim"))
        if addon_rows:
            parts.append(Text("add-ons (a DM-family base): style matching `--opt sm=true`, intra-class diversity "
                              "`--opt icd=true`, with their options:", style="bold"))
            parts.append(_options_table(addon_rows, options_type, Table))
        console.print(head)
        console.print(Padding(Group(*parts), (0, 0, 1, 2)))
    console.print(Text("Set options with `clbench run --opt key=value`; 'quick' is the value --profile quick uses "
                       "where it differs from the default. Add your own: docs/writing-a-condenser.md", style="dim"))


def _addon_fields(options_type) -> set[str]:
    """The options a condenser has because it accepts the add-ons (clbench.matching.addons.AddOnOptions)."""
    import dataclasses

    from clbench.matching.addons import AddOnOptions

    if isinstance(options_type, type) and issubclass(options_type, AddOnOptions):
        return {f.name for f in dataclasses.fields(AddOnOptions)}
    return set()


def _options_table(rows: list[dict], options_type: type, table_type):
    table = table_type(box=None, pad_edge=False, show_header=True, header_style="dim")
    table.add_column("option", no_wrap=True)
    table.add_column("default", no_wrap=True)
    table.add_column("quick", no_wrap=True)
    table.add_column("help")
    types = _types(options_type)
    for r in rows:
        quick = "" if r["quick"] == r["default"] else _show(r["quick"])
        table.add_row(f"{r['name']} ({types.get(r['name'], r['type'])})", _show(r["default"]), quick, r["help"])
    return table


def _types(options_type: type) -> dict[str, str]:
    """Field types as a user reads them: a Literal lists its choices (real|noise)."""
    import typing

    out = {}
    for field_name, tp in typing.get_type_hints(options_type).items():
        if typing.get_origin(tp) is typing.Literal:
            out[field_name] = "|".join(map(str, typing.get_args(tp)))
    return out


def _show(value) -> str:
    """Defaults as one would type them after --opt (an empty string shows as '')."""
    if value == "":
        return "''"
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) or "''"
    return str(value)
