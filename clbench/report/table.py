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

from rich.cells import cell_len

from clbench.core.registry import Registry
from clbench.core.text import printable

Part = Union[str, Any]  # plain text, or a rich renderable (the `table` format)


@dataclass(frozen=True)
class Column:
    title: str
    numeric: bool = False  # right-aligned in the terminal
    wrap: bool = False  # may wrap at its words in a narrow terminal (short free text); other columns never wrap
    cut: bool = False  # long free text (an error, a path): one line, cut with an ellipsis to the room left
    drop: int = 0  # > 0: left out of a terminal too narrow for every column, the highest first (said in the caption)
    key: bool = False  # names the row: repeated in each part when a narrow terminal splits the columns
    below: bool = False  # long free text (an error): where the row is too wide with it, a line of its own under
    # the row ("title: text", one line, cut with an ellipsis), before any column is narrowed or dropped


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
    styles: list[str] = field(default_factory=list)  # a rich style per row in the terminal ("" for none)

    def __post_init__(self) -> None:
        # what a record or a plugin wrote is shown, never obeyed: escape sequences and bidi overrides escaped
        self.title, self.caption = printable(self.title), printable(self.caption)
        self.cells = [[printable(c) for c in row] for row in self.cells]
        self.notes = [printable(n) for n in self.notes]
        if any(len(row) != len(self.columns) for row in self.cells):
            raise ValueError(f"every row of a table needs {len(self.columns)} cells")
        if self.styles and len(self.styles) != len(self.cells):
            raise ValueError("styles: one per row")
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
    """The terminal version (where the table has one) fitted to the console's width when it is drawn, then its
    footnotes as lines that wrap at words."""
    from rich.text import Text

    shown = table.terminal or table
    return [FittedTable(shown)] + [Text(f"[{i}] {note}") for i, note in enumerate(shown.notes, 1)]


GAP = 2  # characters between two columns (rich's SIMPLE_HEAD box without edges, padding collapsed)
CUT_MIN = 24  # the narrowest a `cut` column is made before columns are dropped or the table is split


@dataclass
class Layout:
    """How a table is drawn at one width: `parts` of column indexes (each part a table of its own, the key
    columns repeated), each column's width, and the columns left out."""

    parts: list[list[int]]
    widths: dict[int, int]
    dropped: list[int]
    below: list[int] = field(default_factory=list)  # columns shown on a line of their own under each row


def _words(text: str) -> int:
    return max((cell_len(w) for w in text.split()), default=0)


def _natural(column: Column, cells: list[str]) -> int:
    return max([cell_len(column.title), *(cell_len(line) for c in cells for line in c.splitlines() or [""])])


def _least(column: Column, cells: list[str]) -> int:
    """The narrowest `column` may be: its longest word (title included) where it wraps, at most CUT_MIN where
    it is cut, else every cell whole."""
    natural = _natural(column, cells)
    if column.cut:
        return min(natural, max(CUT_MIN, _words(column.title)))
    if column.wrap:
        return max(_words(column.title), *(_words(c) for c in cells)) if cells else _words(column.title)
    return max(_words(column.title), *(cell_len(line) for c in cells for line in c.splitlines() or [""]))


def fit(columns: list[Column], lines: list[list[str]], width: int) -> Layout:
    """Lay `columns` out in `width` characters without squeezing a column below its words: wide enough, every
    column at its natural width; else wrapping and cut columns narrowed, then the `drop` columns left out (the
    highest first), then the columns split into consecutive parts that each fit, the key columns in every one."""
    cells = [[row[i] for row in lines] for i in range(len(columns))]
    natural = [_natural(c, cells[i]) for i, c in enumerate(columns)]
    least = [_least(c, cells[i]) for i, c in enumerate(columns)]

    def span(indexes, sizes) -> int:
        return sum(sizes[i] for i in indexes) + GAP * max(len(indexes) - 1, 0)

    kept = list(range(len(columns)))
    if span(kept, natural) <= width:
        return Layout([kept], dict(enumerate(natural)), [])
    below = [i for i in kept if columns[i].below]
    kept = [i for i in kept if i not in below]
    if span(kept, natural) <= width:
        return Layout([kept], dict(enumerate(natural)), [], below)
    dropped = []
    for i in sorted((i for i in kept if columns[i].drop), key=lambda i: -columns[i].drop):
        if span(kept, least) <= width:
            break
        kept.remove(i)
        dropped.append(i)
    keys = [i for i in kept if columns[i].key]
    parts: list[list[int]] = []
    for i in kept:
        if i in keys:
            continue
        if parts and span(sorted(parts[-1] + [i]), least) <= width:
            parts[-1].append(i)
        else:
            parts.append(sorted(keys + [i]))
    parts = parts or [keys]
    widths = dict(enumerate(least))
    spare = min(width - span(part, least) for part in parts)
    for i in keys:  # a key column has one width in every part
        grow = max(0, min(natural[i] - least[i], spare))
        widths[i] += grow
        spare -= grow
    for part in parts:
        spare = width - span(part, widths)
        for i in part:
            if i not in keys:
                grow = max(0, min(natural[i] - least[i], spare))
                widths[i] += grow
                spare -= grow
    return Layout(parts, widths, dropped, below)


class FittedTable:
    """A `Table` drawn by rich at the width of the console it is printed on (see `fit`)."""

    def __init__(self, table: Table):
        self.table = table

    def __rich_console__(self, console, options):
        from rich.text import Text

        table = self.table
        columns = list(table.columns) + ([Column("notes")] if table.notes else [])
        lines = table.lines()
        layout = fit(columns, lines, options.max_width)
        caption = table.caption
        if layout.dropped:
            names = ", ".join(columns[i].title for i in layout.dropped)
            caption += (f". Not shown at {options.max_width} columns: {names} (a wider terminal, or --format json, "
                        f"shows them)")
        for n, part in enumerate(layout.parts):
            title = table.title + (f" ({n + 1}/{len(layout.parts)})" if len(layout.parts) > 1 else "")
            if title:  # a line of its own, wrapped at the console's width rather than the table's
                yield Text(title, style="table.title")
            shown = [(columns[i], layout.widths[i]) for i in part]
            rows = [[row[i] for i in part] for row in lines]
            if not layout.below or n + 1 < len(layout.parts):
                yield _rich_part(shown, rows, table.styles)
                continue
            # each row a table of its own (the same fixed widths, so the columns line up), its long text under it
            for r, row in enumerate(rows):
                yield _rich_part(shown, [row], table.styles[r:r + 1], header=r == 0)
                for i in layout.below:
                    text = lines[r][i].splitlines()[0] if lines[r][i] else ""
                    if text and text != "-":
                        yield Text(f"  {columns[i].title}: {text}", no_wrap=True, overflow="ellipsis",
                                   style=table.styles[r] if r < len(table.styles) else "")
        if caption:
            yield Text(caption + ".")


def _rich_part(columns: list[tuple[Column, int]], lines: list[list[str]], styles: list[str], header: bool = True):
    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    out = RichTable(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True,
                    show_header=header)
    for column, width in columns:
        out.add_column(Text(column.title, no_wrap=False, overflow="fold"),
                       justify="right" if column.numeric else "left", width=width,
                       no_wrap=not column.wrap, overflow="ellipsis" if column.cut else "fold")
    for n, row in enumerate(lines):  # cells are plain text, never rich markup (an error may hold brackets)
        out.add_row(*[Text(c.splitlines()[0] if columns[i][0].cut and c else c) for i, c in enumerate(row)],
                    style=styles[n] if n < len(styles) else None)
    return out


FORMATS = ("table",) + tuple(name for name in TABLE_FORMATS.names() if name != "table")  # the default first
