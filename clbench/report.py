"""`clbench compare`: records -> rows -> one table builder for every output format.

Rows are keyed by protocol (dataset, steps, memory, condenser, profile); records of one key pool their
complete orders; records of different keys are never averaged together.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np

FORMATS = ("table", "markdown", "csv", "latex", "json")
KEY_FIELDS = ("dataset", "steps", "memory", "condenser", "profile")


def protocol_key(record: dict[str, Any]) -> tuple:
    c = record["config"]
    return tuple(c.get(k) for k in KEY_FIELDS)


def _final_accuracies(records: list[dict]) -> list[float]:
    return [a for r in records for o in r["orders"] if o.get("complete") for a in o["steps"][-1]["accuracies"]]


def _incremental_accuracies(records: list[dict]) -> list[float]:
    values = []
    for r in records:
        for o in r["orders"]:
            if o.get("complete"):
                values.extend(np.array([s["accuracies"] for s in o["steps"]]).mean(axis=0).tolist())
    return values


def summary_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per protocol key, with mean and std over orders x networks."""
    from clbench.results import order_forgetting

    groups: dict[tuple, list[dict]] = {}
    for record in records:
        groups.setdefault(protocol_key(record), []).append(record)
    rows = []
    for key, group in sorted(groups.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        final = _final_accuracies(group)
        incremental = _incremental_accuracies(group)
        forgetting = [f for r in group for o in r["orders"] if o.get("complete")
                      and (f := order_forgetting(o)) is not None]
        orders = sorted({o["order"] for r in group for o in r["orders"] if o.get("complete")})
        row = dict(zip(KEY_FIELDS, key))
        row.update(
            {
                "orders": len(orders),
                "n": len(final),
                "final_mean": float(np.mean(final)) if final else None,
                "final_std": float(np.std(final)) if final else None,
                "aia_mean": float(np.mean(incremental)) if incremental else None,
                "aia_std": float(np.std(incremental)) if incremental else None,
                "forgetting_mean": float(np.mean(forgetting)) if forgetting else None,
                "condense_seconds": sum(s["condense_seconds"] for r in group for o in r["orders"] for s in o["steps"]),
                "train_seconds": sum(s["train_seconds"] for r in group for o in r["orders"] for s in o["steps"]),
                "complete": all(r.get("complete") for r in group),
            }
        )
        rows.append(row)
    return rows


COLUMNS = [
    ("dataset", "dataset"), ("steps", "steps"), ("memory", "memory"), ("condenser", "condenser"),
    ("profile", "profile"), ("orders", "orders"), ("final", "final acc (%)"), ("aia", "avg inc acc (%)"),
    ("forgetting_mean", "forgetting"), ("condense_seconds", "condense s"), ("train_seconds", "train s"),
]


def _cell(row: dict[str, Any], key: str, pm: str = " ± ") -> str:
    if key in ("final", "aia"):
        mean, std = row[f"{key}_mean"], row[f"{key}_std"]
        return "-" if mean is None else f"{mean:.2f}{pm}{std:.2f}"
    value = row.get(key)
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if key.endswith("seconds") else f"{value:.2f}"
    return str(value)


def render(rows: list[dict[str, Any]], fmt: str) -> str:
    """The text of the table in `fmt` (all but `table`, which rich prints)."""
    headers = [title for _, title in COLUMNS]
    cells = [[_cell(r, key) for key, _ in COLUMNS] for r in rows]
    if fmt == "markdown":
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [k for k, _ in COLUMNS])
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    if fmt == "latex":
        latex_cells = [[_cell(r, key, r" $\pm$ ").replace("%", r"\%") for key, _ in COLUMNS] for r in rows]
        head = " & ".join(h.replace("%", r"\%") for h in headers)
        body = "\n".join(" & ".join(c) + r" \\" for c in latex_cells)
        return (f"\\begin{{tabular}}{{{'l' * len(headers)}}}\n\\toprule\n{head} \\\\\n\\midrule\n{body}\n"
                f"\\bottomrule\n\\end{{tabular}}\n")
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    raise ValueError(f"unknown format {fmt!r}")


def print_table(rows: list[dict[str, Any]], fmt: str, console) -> None:
    if fmt != "table":
        console.print(render(rows, fmt), end="", markup=False, highlight=False, soft_wrap=True)
        return
    from rich.table import Table

    table = Table(title="clbench results (mean ± std over orders x networks)")
    for _, title in COLUMNS:
        table.add_column(title)
    for r in rows:
        table.add_row(*[_cell(r, key) for key, _ in COLUMNS])
    console.print(table)
