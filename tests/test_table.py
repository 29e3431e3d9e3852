"""One Table, every registered format: each format shows the same rows, for both record kinds."""
from __future__ import annotations

import csv
import io
import json

import pytest

from clbench.core.errors import UsageError
from clbench.report.compare import continual_table, static_table, summary_rows
from clbench.report.table import FORMATS, TABLE_FORMATS, Column, Table, latex_escape, render, render_text
from tests.test_report import DM, HERDING, make_record


def _continual() -> Table:
    records = [make_record("dm", DM), make_record("herding", HERDING, options={"a|b": 1}),
               make_record("random", {0: [10.0, 20.0]}, epochs=3), make_record("random", {0: [30.0, 50.0]}, epochs=5)]
    return continual_table(summary_rows(records, baseline="dm"))


def _static() -> Table:
    rows = [{"dataset": "d_1", "condenser": c, "profile": "quick", "ipc": ipc, "network": net, "mean": m, "std": 0.5}
            for c, ipc, net, m in (("dm", 1, "convnet", 20.0), ("dm", 10, "alexnet", 50.0), ("ddm", 1, "convnet", None),
                                   ("ddm", 10, "convnet", 55.25))]
    return static_table(rows)


TABLES = {"continual": _continual, "static": _static}


def test_formats_are_the_registry():
    assert set(FORMATS) == set(TABLE_FORMATS.names()) == {"table", "markdown", "csv", "latex", "json"}
    assert FORMATS[0] == "table" and len(FORMATS) == len(set(FORMATS))  # the CLI's default comes first
    with pytest.raises(UsageError, match="unknown output format 'yaml'.*Known: csv, json, latex, markdown, table"):
        render(_static(), "yaml")


def _shown(table: Table, fmt: str) -> list[list[str]]:
    """The body rows each format shows, read back as cells."""
    if fmt == "markdown":
        rows = [line[2:-2].split(" | ") for line in render_text(table, fmt).splitlines() if line.startswith("| ")]
        return [[c.replace("\\|", "|") for c in r] for r in rows[1:]]
    if fmt == "latex":
        text = render_text(table, fmt)
        body = text.split("\\midrule\n")[1].split("\\bottomrule")[0]
        return [line[:-3].split(" & ") for line in body.splitlines() if line]
    if fmt == "csv":
        return [list(r.values()) for r in csv.DictReader(io.StringIO(render_text(table, fmt)))]
    if fmt == "json":
        return [list(r.values()) for r in json.loads(render_text(table, fmt))]
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=400, force_terminal=False)
    for part in render(table, fmt):
        console.print(part, end="" if isinstance(part, str) else "\n", markup=False, highlight=False, soft_wrap=True)
    return [line.split() for line in buffer.getvalue().splitlines()]


@pytest.mark.parametrize("kind", sorted(TABLES))
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_shows_every_row(kind, fmt):
    table = TABLES[kind]()
    shown = _shown(table, fmt)
    if fmt == "markdown":
        assert shown == table.lines()
    elif fmt == "latex":
        assert shown == [[latex_escape(c) for c in row] for row in table.lines()]
    elif fmt == "csv":
        assert shown == [["; ".join(v) if isinstance(v, list) else "" if v is None else str(v) for v in r.values()]
                         for r in table.data]
    elif fmt == "json":
        assert shown == [list(r.values()) for r in table.data]
    else:  # the terminal: each row's cells, in order, on a line of their own
        lines = (table.terminal or table).lines()
        for row in lines:
            words = " ".join(row).split()
            assert words in shown, (words, shown)
    assert len(shown) >= len(table.cells) == len(table.data)


@pytest.mark.parametrize("kind", sorted(TABLES))
def test_text_formats_carry_caption_and_footnotes(kind):
    table = TABLES[kind]()
    for fmt in ("markdown", "latex"):
        text = render_text(table, fmt)
        caption = table.caption if fmt == "markdown" else latex_escape(table.caption)
        assert caption + "." in text
        for i, note in enumerate(table.notes, 1):
            assert f"[{i}] {note if fmt == 'markdown' else latex_escape(note)}" in text
    assert bool(table.notes) == (kind == "continual")


def test_a_table_refuses_ragged_rows_and_stray_notes():
    with pytest.raises(ValueError, match="2 cells"):
        Table("t", [Column("a"), Column("b")], [["1"]], [], [], "c")
    with pytest.raises(ValueError, match="outside the notes"):
        Table("t", [Column("a")], [["1"]], [], [], "c", notes=["n"], refs=[[2]])


def test_footnote_column_only_with_notes():
    plain = Table("t", [Column("a")], [["x"]], [{"a": "x"}], ["a"], "c")
    assert plain.headers() == ["a"] and plain.lines() == [["x"]]
    noted = Table("t", [Column("a")], [["x"], ["y"]], [], ["a"], "c", notes=["n"], refs=[[1], []])
    assert noted.headers() == ["a", "notes"] and noted.lines() == [["x", "[1]"], ["y", "-"]]
    assert render_text(noted, "markdown").splitlines()[-1] == "[1] n"
