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


# -- the terminal table at a fixed width: never depends on the terminal the tests run in --------------------
def _drawn(table: Table, width: int) -> list[str]:
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False)
    for part in render(table, "table"):
        console.print(part)
    return buffer.getvalue().splitlines()


def _wide_table() -> Table:
    """Eight numeric columns of 11 characters (too many for 80), a key, a droppable column and a long error."""
    columns = [Column("name", key=True)] + [Column(f"value {i}", numeric=True) for i in range(8)]
    columns += [Column("host", drop=1), Column("error", cut=True)]
    cells = [[f"row{r}", *[f"{r}{i}.00 ± 0.5" for i in range(8)], "node-0001",
              f"RuntimeError: step {r} failed " + "because " * 20] for r in range(3)]
    return Table("wide", columns, cells, [], [], "the caption")


@pytest.mark.parametrize("width", [60, 80, 100])
def test_a_narrow_terminal_splits_the_columns_repeats_the_key_and_squeezes_no_cell(width):
    table = _wide_table()
    lines = _drawn(table, width)
    assert max(len(line) for line in lines) <= width
    for r in range(3):  # every cell whole, in some part, beside its row's key
        mine = [line for line in lines if line.startswith(f"row{r} ")]
        assert len(mine) == sum(1 for line in lines if line.startswith("wide"))  # the key in every part
        shown = " ".join(mine)
        assert all(cell in shown for cell in table.cells[r][1:9]), (r, lines)
    assert not any("node-0001" in line for line in lines)  # the droppable column left out, and said so
    assert f"Not shown at {width} columns: host" in " ".join(" ".join(lines).split())
    assert any(line.rstrip().endswith("…") for line in lines)  # the error cut with an ellipsis, not wrapped
    assert sum("RuntimeError" in line for line in lines) == 3


def test_a_wide_terminal_shows_every_column_whole_in_one_table():
    table = _wide_table()
    lines = _drawn(table, 400)
    assert lines[0] == "wide" and sum(line.startswith("row") for line in lines) == 3
    for r, row in enumerate(table.cells):
        (line,) = [x for x in lines if x.startswith(f"row{r} ")]
        assert all(cell.strip() in line for cell in row)


def test_fit_gives_wrapping_and_cut_columns_the_room_left_and_never_less_than_a_word():
    from clbench.report.table import GAP, fit

    columns = [Column("job"), Column("run", wrap=True), Column("error", cut=True)]
    lines = [["abcdefgh", "dm fashion-mnist 20ipc 5st", "x" * 100]]
    layout = fit(columns, lines, 80)
    assert layout.parts == [[0, 1, 2]] and not layout.dropped
    assert layout.widths[0] == 8 and layout.widths[1] == len(lines[0][1])  # room enough: the run unwrapped
    assert sum(layout.widths.values()) + 2 * GAP == 80  # the error takes the rest
    narrow = fit(columns, lines, 8 + 13 + 24 + 2 * GAP)
    assert narrow.widths[1] == len("fashion-mnist") and narrow.widths[2] >= 24  # wrapped at a word, not inside one


def test_a_below_column_moves_under_its_row_before_anything_is_narrowed_or_split():
    columns = [Column("job", key=True), Column("run", wrap=True), Column("state"),
               Column("last error", cut=True, below=True)]
    error = "RecordError: jobs/abc/records/" + "x" * 60 + ".json: cannot be resumed " + "word " * 20
    cells = [["job00001", "dm fashion-mnist 20ipc 5st", "failed", error], ["job00002", "ddm digits", "done", "-"]]
    table = Table("jobs", columns, cells, [], [], "the caption")
    for width in (60, 80):
        lines = _drawn(table, width)
        assert max(len(line) for line in lines) <= width
        assert sum(line.startswith("jobs") for line in lines) == 1  # one part: nothing split
        (row,) = [n for n, line in enumerate(lines) if line.startswith("job00001")]
        assert "dm fashion-mnist 20ipc 5st" in lines[row] and "failed" in lines[row]  # the run unwrapped
        assert lines[row + 1].startswith("  last error: RecordError: jobs/abc/records/")
        assert lines[row + 1].rstrip().endswith("…")
        assert not any("last error: -" in line for line in lines)  # no line for a row without one
    wide = _drawn(table, 400)
    assert any(line.startswith("job00001") and error.strip() in line for line in wide)  # room: a column again
