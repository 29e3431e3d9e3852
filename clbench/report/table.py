"""One table, every output format: a `Table` (headers, text cells, the values behind them, caption, footnotes)
and one renderer per format, registered by name in `TABLE_FORMATS`.

Builders (clbench.report.compare) turn rows of any record kind into a Table; the renderers here know nothing
about records. Each renderer returns the parts to print in turn: plain text (str, printed verbatim) or, for
the terminal `table` format, a rich renderable followed by its footnotes.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from clbench.core.registry import Registry

Part = Union[str, Any]  # plain text, or a rich renderable (the `table` format)


@dataclass(frozen=True)
class Column:
    title: str
    numeric: bool = False  # right-aligned in the terminal
    wrap: bool = False  # may wrap in the terminal (long free text); other columns never do


@dataclass
class Table:
    """What every format shows: `cells` (text, "mean ± std", "-" for none) under `columns`, then `caption` (what
    the numbers are, without a final period) and the numbered `notes`; `refs[i]` are the notes of row i.

    `data` are the same rows as values (csv, json) with `fields` the csv header; `terminal`, where given, is a
    narrower version for the terminal (columns common to every row moved into its caption).
    """

    title: str
    columns: list[Column]
    cells: list[list[str]]
    data: list[dict[str, Any]]
    fields: list[str]
    caption: str
    notes: list[str] = field(default_factory=list)
    refs: list[list[int]] = field(default_factory=list)
    terminal: Table | None = None

    def __post_init__(self) -> None:
        if any(len(row) != len(self.columns) for row in self.cells):
            raise ValueError(f"every row of a table needs {len(self.columns)} cells")
        if self.refs and len(self.refs) != len(self.cells):
            raise ValueError("refs: one list of note numbers per row")
        if any(not 1 <= n <= len(self.notes) for ref in self.refs for n in ref):
            raise ValueError("refs: a note number outside the notes")

    def headers(self) -> list[str]:
        """Column titles, with a `notes` column when the table has footnotes."""
        return [c.title for c in self.columns] + (["notes"] if self.notes else [])

    def lines(self) -> list[list[str]]:
        """The cells, with each row's footnote numbers ("[1],[3]" or "-") when the table has footnotes."""
        if not self.notes:
            return [list(row) for row in self.cells]
        refs = self.refs or [[] for _ in self.cells]
        return [row + [",".join(f"[{n}]" for n in ref) or "-"] for row, ref in zip(self.cells, refs)]


def footnotes(notes_per_row: list[list[str]]) -> tuple[list[str], list[list[int]]]:
    """Distinct notes, numbered from 1 in order of appearance, and for each row the numbers of its notes."""
    notes: list[str] = []
    refs: list[list[int]] = []
    for mine in notes_per_row:
        numbers = []
        for note in mine:
            if note not in notes:
                notes.append(note)
            numbers.append(notes.index(note) + 1)
        refs.append(numbers)
    return notes, refs


Renderer = Callable[[Table], list[Part]]
TABLE_FORMATS: Registry[Renderer] = Registry("output format")


def render(table: Table, fmt: str) -> list[Part]:
    """The parts that show `table` in `fmt` (an unknown format raises UsageError naming the known ones)."""
    return TABLE_FORMATS.get(fmt)(table)


def render_text(table: Table, fmt: str) -> str:
    """`table` in a text format (every format but `table`, whose rich renderable needs a console)."""
    parts = render(table, fmt)
    if not all(isinstance(p, str) for p in parts):
        raise ValueError(f"the {fmt!r} format is drawn on a console, not rendered to text")
    return "".join(parts)


@TABLE_FORMATS.register("markdown")
def markdown(table: Table) -> list[Part]:
    headers = table.headers()
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in table.lines()]
    lines += ["", table.caption + "."]
    lines += [f"[{i}] {n}" for i, n in enumerate(table.notes, 1)]
    return ["\n".join(lines) + "\n"]


_LATEX_ESCAPES = {"%": r"\%", "&": r"\&", "_": r"\_", "#": r"\#", "Δ": r"$\Delta$", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


@TABLE_FORMATS.register("latex")
def latex(table: Table) -> list[Part]:
    headers = table.headers()
    head = " & ".join(latex_escape(h) for h in headers)
    body = "\n".join(" & ".join(latex_escape(c) for c in row) + r" \\" for row in table.lines())
    text = (f"\\begin{{tabular}}{{{'l' * len(headers)}}}\n\\toprule\n{head} \\\\\n\\midrule\n{body}\n"
            f"\\bottomrule\n\\end{{tabular}}\n")
    text += "\\par\\smallskip{\\footnotesize " + latex_escape(table.caption) + "."
    text += "".join(f"\\\\\n[{i}] {latex_escape(n)}" for i, n in enumerate(table.notes, 1)) + "}\n"
    return [text]


@TABLE_FORMATS.register("csv")
def csv_text(table: Table) -> list[Part]:
    """The values, one line per row; a list value (the notes) joined with "; "."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=table.fields)
    writer.writeheader()
    writer.writerows({k: "; ".join(map(str, v)) if isinstance(v, list) else v for k, v in row.items()}
                     for row in table.data)
    return [buffer.getvalue()]


@TABLE_FORMATS.register("json")
def json_text(table: Table) -> list[Part]:
    return [json.dumps(table.data, indent=2) + "\n"]


@TABLE_FORMATS.register("table")
def rich_table(table: Table) -> list[Part]:
    """A rich Table (the terminal version where the table has one), then its footnotes as lines."""
    from rich import box
    from rich.table import Table as RichTable

    shown = table.terminal or table
    out = RichTable(title=shown.title, caption=shown.caption + ".", caption_justify="left", box=box.SIMPLE_HEAD,
                    show_edge=False, pad_edge=False, collapse_padding=True)
    for c in shown.columns:
        out.add_column(c.title, justify="right" if c.numeric else "left", no_wrap=not c.wrap)
    if shown.notes:
        out.add_column("notes", no_wrap=True)
    for row in shown.lines():
        out.add_row(*row)
    return [out] + [f"[{i}] {note}\n" for i, note in enumerate(shown.notes, 1)]


FORMATS = ("table",) + tuple(name for name in TABLE_FORMATS.names() if name != "table")  # the default first
