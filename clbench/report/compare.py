"""`clbench compare`: records -> rows (clbench.report.rows) -> one Table -> every output format
(clbench.report.table).

Two record kinds, one table builder each: continual run records give one line per protocol (final accuracy,
average incremental accuracy, forgetting, seconds per order, and the paired difference to a baseline), with
footnotes for whatever makes two lines not comparable; static condensation records (`clbench condense`) give
one line per (dataset, condenser, profile) with a column per (ipc, evaluation network).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clbench.report.rows import summary_rows  # the CLI's entry point: records -> rows
from clbench.report.table import FORMATS, Column, Table, footnotes, render_text
from clbench.report.table import render as render_parts

__all__ = ["FORMATS", "continual_table", "print_table", "render", "render_static", "show", "static_table",
           "summary_rows"]


# -- continual rows -> Table -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    key: str
    title: str  # full title (markdown, latex)
    short: str  # compact title for the terminal


BASE_FIELDS = [
    Field("dataset", "dataset", "dataset"), Field("steps", "steps", "steps"),
    Field("memory", "memory", "memory"), Field("condenser", "condenser", "condenser"),
    Field("profile", "profile", "profile"), Field("learner", "learner", "learner"),
    Field("variant", "settings", "settings"),
    Field("orders", "orders", "orders"),
    Field("final_accuracy", "final acc (%)", "final %"),
    Field("average_incremental_accuracy", "avg inc acc (%)", "AIA %"),
    Field("forgetting", "forgetting (pts)", "forget"),
    Field("memory_mib", "memory (MiB)", "MiB"),
    Field("condense_seconds_per_order", "condense s/order", "cond s"),
    Field("train_seconds_per_order", "train s/order", "train s"),
    Field("condense_peak_mib", "condense peak (MiB)", "cond peak"),
    Field("train_peak_mib", "train peak (MiB)", "train peak"),
]
# What a memory cost (bytes stored, seconds, peak memory): shown unless `--no-costs` hides them
COST_KEYS = ("memory_mib", "condense_seconds_per_order", "train_seconds_per_order", "condense_peak_mib",
             "train_peak_mib")
OPTIONAL_KEYS = ("variant", "memory_mib", "condense_peak_mib", "train_peak_mib")  # old records lack the costs
BASELINE_FIELDS = [
    Field("diff", "Δ final vs {b}", "Δ {b}"), Field("ci", "95% CI", "95% CI"), Field("p_value", "p", "p"),
]
KEY_COLUMNS = ("dataset", "steps", "memory", "profile", "learner")  # common to every row: the terminal moves them up
ROW_KEYS = ("condenser", "variant")  # name a row: repeated when a narrow terminal splits the table
TEXT_KEYS = ("dataset", "memory", "condenser", "profile", "variant", "orders")  # left-aligned


def _signed(x: float) -> str:
    return f"{x:+.2f}"


def _cell(row: dict[str, Any], key: str) -> str:
    if key in ("final_accuracy", "average_incremental_accuracy", "forgetting"):  # the record's summary keys
        mean, std = row.get(f"{key}_mean"), row.get(f"{key}_std")
        if mean is None:
            return "-"
        return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"
    if key == "diff":
        return "-" if row.get("diff_mean") is None else _signed(row["diff_mean"])
    if key == "ci":
        lo, hi = row.get("diff_ci_low"), row.get("diff_ci_high")
        return "-" if lo is None else f"[{_signed(lo)}, {_signed(hi)}]"
    if key == "p_value":
        p = row.get("p_value")
        return "-" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")
    if key == "orders":
        ids = row.get("order_ids")
        return f"{row['orders']} ({ids})" if ids and ids != "-" else str(row.get("orders", 0))
    value = row.get(key)
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if key.endswith("_peak_mib") else f"{value:.1f}" if "seconds" in key else f"{value:.2f}"
    return str(value)


def _fields(rows: list[dict[str, Any]], compact: bool, costs: bool = True) -> list[Field]:
    fields = [f for f in BASE_FIELDS if costs or f.key not in COST_KEYS]
    for optional in OPTIONAL_KEYS:  # shown where some row has one
        if not any(r.get(optional) for r in rows):
            fields = [f for f in fields if f.key != optional]
    if compact and rows:
        fields = [f for f in fields if not (f.key in KEY_COLUMNS and len({str(r.get(f.key)) for r in rows}) == 1)]
    baseline = next((r["baseline"] for r in rows if r.get("baseline")), None)
    if baseline is not None:
        fields += [Field(f.key, f.title.format(b=baseline), f.short.format(b=baseline)) for f in BASELINE_FIELDS]
    return fields


def caption(rows: list[dict[str, Any]], compact: bool = False) -> str:
    """What the numbers are, over what, and on which hardware; compact adds the fields common to all rows."""
    parts = []
    if compact and rows:
        common = {k: rows[0].get(k) for k in KEY_COLUMNS if len({str(r.get(k)) for r in rows}) == 1}
        if common:
            words = {"dataset": "{}", "steps": "{} steps", "memory": "memory {}", "profile": "profile {}",
                     "learner": "learner {}"}
            parts.append(", ".join(words[k].format(v) for k, v in common.items()))
    hardware = sorted({r["hardware"] for r in rows if r.get("hardware")})
    if hardware:
        parts.append("hardware: " + "; ".join(hardware))
    parts.append("mean ± std (population) over seeds x orders x networks; times are seconds per order")
    test = next((r["test"] for r in rows if r.get("test")), None)
    if test:
        parts.append(f"Δ: {test}")
    return ". ".join(parts)


def _value_fields(data: list[dict[str, Any]], fallback: list[str]) -> list[str]:
    """The csv header: every key of the rows in order of appearance (`fallback` for no rows)."""
    return list(dict.fromkeys(k for r in data for k in r)) if data else list(fallback)


def continual_table(rows: list[dict[str, Any]], costs: bool = True) -> Table:
    """The table of `summary_rows`: full titles for the files, a compact terminal version beside it; `costs`
    False leaves out the cost columns and values (COST_KEYS), in every format."""
    notes, refs = footnotes([r.get("notes", []) for r in rows])
    data = rows if costs else [{k: v for k, v in r.items() if k not in COST_KEYS} for r in rows]
    value_fields = _value_fields(data, [f.key for f in BASE_FIELDS if costs or f.key not in COST_KEYS])

    def build(compact: bool) -> Table:
        fields = _fields(rows, compact, costs)
        columns = [Column(f.short if compact else f.title, numeric=f.key not in TEXT_KEYS, wrap=f.key == "variant",
                          key=f.key in ROW_KEYS) for f in fields]
        return Table("clbench results", columns, [[_cell(r, f.key) for f in fields] for r in rows], data,
                     value_fields, caption(rows, compact), notes, refs)

    table = build(compact=False)
    table.terminal = build(compact=True)
    return table


# -- static condensation rows -> Table: rows condenser, columns ipc x evaluation network -------------------
STATIC_CAPTION = "test accuracy (%) on the full test set, mean ± std over synthetic sets x evaluation trainings"
STATIC_LINE = ("dataset", "condenser", "profile")


STATIC_COSTS = (("condense_seconds_per_set", "cond s/set", "{:.1f}"), ("condense_peak_mib", "peak MiB", "{:.0f}"))


def static_table(rows: list[dict[str, Any]], costs: bool = True) -> Table:
    """The table of `clbench.report.rows.static_rows`: one line per (dataset, condenser, profile); with `costs`,
    each ipc's condensation seconds per set and peak memory (where measured) after its accuracy columns."""
    columns = sorted({(r["ipc"], r["network"]) for r in rows}, key=lambda c: (c[0], c[1]))
    lines: dict[tuple, dict[tuple, dict]] = {}
    for r in rows:
        lines.setdefault(tuple(r[k] for k in STATIC_LINE), {})[(r["ipc"], r["network"])] = r
    ipcs = sorted({ipc for ipc, _ in columns})
    cost_columns = [(ipc, key, f"ipc {ipc} {title}", form) for ipc in ipcs for key, title, form in STATIC_COSTS
                    if costs and any(r["ipc"] == ipc and r.get(key) is not None for r in rows)]
    titles = [f"ipc {ipc} {net}" for ipc, net in columns]
    cells, data = [], []
    for key, by_column in sorted(lines.items()):
        row_cells, row_data = list(map(str, key)), dict(zip(STATIC_LINE, key))
        for column, title in zip(columns, titles):
            r = by_column.get(column)
            ok = r is not None and r["mean"] is not None
            row_cells.append(f"{r['mean']:.2f} ± {r['std']:.2f}" if ok else "-")
            row_data[f"{title} mean"] = r["mean"] if ok else None
            row_data[f"{title} std"] = r["std"] if ok else None
        for ipc, cost, title, form in cost_columns:  # one condensation serves every evaluation network
            value = next((r[cost] for (i, _), r in sorted(by_column.items()) if i == ipc and r.get(cost) is not None),
                         None)
            row_cells.append("-" if value is None else form.format(value))
            row_data[title] = value
        cells.append(row_cells)
        data.append(row_data)
    titles += [title for _, _, title, _ in cost_columns]
    headers = [Column(k, key=True) for k in STATIC_LINE] + [Column(t, numeric=True) for t in titles]
    return Table("static condensation", headers, cells, data, _value_fields(data, [c.title for c in headers]),
                 STATIC_CAPTION)


# -- output ----------------------------------------------------------------------------------------------
def render(rows: list[dict[str, Any]], fmt: str, costs: bool = True) -> str:
    """The text of the continual table in `fmt` (every format but `table`, which needs a console)."""
    return render_text(continual_table(rows, costs), fmt)


def show(table: Table, fmt: str, console) -> None:
    """Print `table` in `fmt` on the console the CLI made: text formats verbatim, the terminal table fitted to the
    console's width (COLUMNS, else 80 where stdout is not a terminal)."""
    for part in render_parts(table, fmt):
        if isinstance(part, str):
            console.print(part, end="", markup=False, highlight=False, soft_wrap=True)
        else:
            console.print(part)


def print_table(rows: list[dict[str, Any]], fmt: str, console, costs: bool = True) -> None:
    """Print the continual rows (`summary_rows`) in `fmt`."""
    show(continual_table(rows, costs), fmt, console)


def render_static(rows: list[dict[str, Any]], fmt: str, console, costs: bool = True) -> None:
    """Print the static rows (`static_rows`) in `fmt`."""
    show(static_table(rows, costs), fmt, console)
