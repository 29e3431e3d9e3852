"""The diagnosis as a table: metrics as rows, diagnosed records as columns (`clbench diagnose` prints it,
`clbench report` shows it)."""
from __future__ import annotations

from typing import Any

from clbench.report.diagnose import METRICS
from clbench.report.table import Column, Table


def summary_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per record: label fields, then `<metric>_synthetic`, `<metric>_real`, `<metric>_ratio`."""
    rows = []
    for r in doc["records"]:
        row = {key: r[key] for key in ("condenser", "dataset", "ipc", "kind", "run_id")}
        for m in METRICS:
            for side in ("synthetic", "real", "ratio"):
                row[f"{m}_{side}"] = r["summary"][side][m]
        rows.append(row)
    return rows


def class_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per (set, class) of one record's diagnosis."""
    rows = []
    for s in result["sets"]:
        for c, v in s["classes"].items():
            row = {"set": s["label"], "class": c, "n": v["n"]}
            for m in METRICS:
                row[f"{m}_synthetic"] = v["synthetic"][m]
                row[f"{m}_real"] = v["real"][m]
            rows.append(row)
    return rows


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def pair(syn: float | None, real: float | None) -> str:
    return f"{number(syn)} ({number(real)})"


METRIC_TITLES = {
    "mean_gap": "style gap: channel mean",
    "std_gap": "style gap: channel std",
    "gram_gap": "style gap: Gram",
    "pairwise": "diversity: pairwise dist",
    "knn": "diversity: k-NN dist",
}


def summary_table(doc: dict[str, Any]) -> Table:
    """Metrics as rows, records as columns: DM and DDM side by side (a narrow terminal splits the records)."""
    c = doc["config"]
    rows = summary_rows(doc)
    columns = [Column("metric", key=True, wrap=True)]
    columns += [Column(f"{row['condenser']} {row['dataset']} {row['ipc']}", numeric=True) for row in rows]
    cells = [[METRIC_TITLES[m], *[pair(row[f"{m}_synthetic"], row[f"{m}_real"]) for row in rows]] for m in METRICS]
    cells += [[f"{METRIC_TITLES[m]}, synthetic / real", *[number(row[f"{m}_ratio"]) for row in rows]]
              for m in ("pairwise", "knn")]
    return Table("diagnosis", columns, cells, [], [],
                 f"synthetic (random real of the same count), mean over sets, classes and {c['seeds']} networks; "
                 f"{c['taps']} taps, k={c['k']}. Style gap: lower is closer to the real data; diversity: higher "
                 f"is more diverse")
