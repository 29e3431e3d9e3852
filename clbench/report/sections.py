"""The sections of `clbench report`'s page, from the files found: what each shows and where its numbers come from.

Found files are sorted into run records (continual and static: clbench.records.record.load_record) and
diagnoses (`clbench diagnose` documents); sweep folders come with their status tables from the caller, and their
per-job copies of the records are left unread. Every table is one that `clbench compare`, `clbench diagnose` or
`clbench sweep --status` prints, rendered by the page, so the page and the terminal never disagree.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clbench.report.page_parts import (
    PREVIEW_WIDTH,
    Gathering,
    Problem,
    picture_data_uri,
    reproduce_command,
    svg,
    table_view,
)
from clbench.report.table import Table


@dataclass
class Found:
    records: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    diagnoses: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)


def collect(gathering: Gathering) -> Found:
    """Every readable file under the sources; each unreadable one becomes a listed problem."""
    from clbench.records.record import RECORD_SUFFIX, RecordError, read_record_json, validate_record
    from clbench.report.diagnose import SCHEMA as DIAGNOSE_SCHEMA

    found = Found()
    files: dict[Path, Path] = {}  # resolved -> as found: a source given twice, or inside another, is read once
    for source in gathering.sources:
        candidates = [source] if source.is_file() else [
            f for f in sorted(source.rglob(f"*{RECORD_SUFFIX}"))
            if not f.name.startswith(".") and not any(f.is_relative_to(skip) for skip in gathering.skip)]
        for f in candidates:
            files.setdefault(f.resolve(), f)
    for file in files.values():  # each file read once: a record, else a diagnosis, else a problem
        try:
            document = read_record_json(file)
            if _is_diagnosis(document, DIAGNOSE_SCHEMA):
                found.diagnoses.append((file, document))
            else:
                found.records.append((file, validate_record(document, str(file))))
        except RecordError as exc:
            gathering.problems.append(_problem(file, str(exc)))
    return found


def _is_diagnosis(document: Any, schema: str) -> bool:
    return isinstance(document, dict) and document.get("schema") == schema and isinstance(document.get("records"),
                                                                                          list)


def _problem(file: Path, reason: str) -> Problem:
    return Problem(str(file), reason.replace(str(file), "").strip(" :") or reason)


# -- the sections ----------------------------------------------------------------------------------------------
def sections(gathering: Gathering, found: Found,
             sweeps: list[tuple[Path, Table]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The page's sections (continual, static, diagnoses, sweeps: those with something to show) and its records."""
    from clbench.report.rows import canonical_records

    canonical = canonical_records(r for _, r in found.records)  # one list, in the order of found.records
    paths = [p for p, _ in found.records]
    continual = [r for r in canonical if r.get("kind", "continual") == "continual"]
    static = [r for r in canonical if r.get("kind") == "static"]
    out: list[dict[str, Any] | None] = []
    if continual:
        out.append(gathering.guarded("continual results", lambda: _continual(gathering, continual)))
    if static:
        out.append(gathering.guarded("static results", lambda: _static(static)))
    if found.diagnoses:
        out.append(gathering.guarded("diagnoses", lambda: _diagnoses(gathering, found.diagnoses)))
    if sweeps:
        out.append(_section("sweeps", "Sweeps", [_titled(table_view(t), f"sweep {folder}") for folder, t in sweeps]))
    records = [gathering.guarded(str(path), lambda r=r, path=path: _record(gathering, r, path))
               for r, path in zip(canonical, paths)]
    return [s for s in out if s is not None], [r for r in records if r is not None]


def _section(key: str, title: str, tables: list[dict[str, Any]], figures: list[dict[str, Any]] | None = None,
             more_tables: list[dict[str, Any]] | None = None, more_title: str = "") -> dict[str, Any]:
    return {"id": key, "title": title, "tables": tables, "figures": figures or [], "more_tables": more_tables or [],
            "more_title": more_title}


def _titled(view: dict[str, Any], title: str) -> dict[str, Any]:
    return {**view, "title": title}


def _continual(gathering: Gathering, records: list[dict[str, Any]]) -> dict[str, Any]:
    from clbench.report.compare import continual_table
    from clbench.report.plots import curve_figure
    from clbench.report.rows import group_records, summary_rows

    tables = [table_view(continual_table(summary_rows(records, baseline=gathering.baseline)))]
    figures, class_tables = [], []
    for key, members in _by_protocol(records).items():
        title = "{} · {} steps · memory {} · profile {}".format(*key)
        fig = gathering.guarded(f"curve of {title}", lambda m=members: svg(curve_figure(m)))
        if fig is not None:
            figures.append({"title": title, "svg": fig})
        per_class = gathering.guarded(f"per-class accuracy of {title}",
                                    lambda m=members, t=title: _class_table(group_records(m), t))
        if per_class is not None:
            class_tables.append(per_class)
    return _section("continual", "Continual learning", tables, figures, class_tables,
                    "Per-class accuracy after the last step")


def _by_protocol(records: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """Records that share one accuracy curve: same dataset, steps, memory and profile (learners may differ)."""
    out: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        c = r["config"]
        out.setdefault((c.get("dataset"), c.get("steps"), c.get("memory"), c.get("profile")), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: [str(x) for x in kv[0]]))


def _class_table(groups, title: str) -> dict[str, Any]:
    """Rows: the curve's lines; columns: classes; cells: accuracy after the last step, mean over complete orders."""
    from clbench.report.plots import _labels
    from clbench.report.table import Column

    per_row: list[dict[int, list[float]]] = []
    for group in groups:
        values: dict[int, list[float]] = {}
        for entry in group.complete_orders().values():
            for c, acc in entry["steps"][-1].get("class_accuracy", {}).items():
                values.setdefault(int(c), []).append(float(acc))
        per_row.append(values)
    classes = sorted({c for values in per_row for c in values})
    cells = [[label, *[f"{sum(v[c]) / len(v[c]):.1f}" if c in v else "-" for c in classes]]
             for label, v in zip(_labels(groups), per_row)]
    table = Table(f"per-class accuracy: {title}", [Column("condenser", key=True)] +
                  [Column(f"class {c}", numeric=True) for c in classes], cells, [], [],
                  "test accuracy (%) of each class after the last step, mean over complete orders x networks")
    return table_view(table)


def _static(records: list[dict[str, Any]]) -> dict[str, Any]:
    from clbench.report.compare import static_table
    from clbench.report.rows import static_rows

    return _section("static", "Static condensation", [table_view(static_table(static_rows(records)))])


def _diagnoses(gathering: Gathering, documents: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    from clbench.report.diagnose_table import summary_table

    tables = [gathering.guarded(str(path), lambda d=document, p=path: _titled(table_view(summary_table(d)),
                                                                              f"diagnosis: {p.name}"))
              for path, document in documents]
    return _section("diagnoses", "Diagnoses (style gap and diversity)", [t for t in tables if t is not None])


# -- one record -------------------------------------------------------------------------------------------
def _record(gathering: Gathering, record: dict[str, Any], path: Path) -> dict[str, Any]:
    from clbench.report.rows import hardware_label

    config, env = record.get("config", {}), record.get("environment", {})
    kind = record.get("kind", "continual")
    units = record.get("sets", []) if kind == "static" else record.get("orders", [])
    steps = [[u] if kind == "static" else u.get("steps", []) for u in units]  # a static set is its own step
    seconds = sum(float(s.get("condense_seconds", 0.0)) + _train_seconds(s) for unit in steps for s in unit)
    facts = next((unit[0]["condenser_facts"] for unit in steps if unit and unit[0].get("condenser_facts")), {})
    return {
        "id": "record-" + "".join(ch if ch.isalnum() else "-" for ch in str(record.get("run_id", path.stem))),
        "run_id": record.get("run_id", path.stem), "path": str(path), "kind": kind,
        "condenser": config.get("condenser"), "dataset": config.get("dataset"),
        "what": (f"{config.get('steps')} steps, memory {config.get('memory')}" if kind != "static"
                 else f"ipc {config.get('ipc')}"),
        "profile": config.get("profile"), "complete": bool(record.get("complete")),
        "created": record.get("created", ""), "hardware": hardware_label(record),
        "versions": ", ".join(f"{k} {env[k]}" for k in ("clbench", "torch", "avalanche", "python") if env.get(k)),
        "git": env.get("git_revision") or "", "seconds": seconds, "units": len(units),
        "command": reproduce_command(record),
        "config": json.dumps(config, indent=2, sort_keys=True, default=str),
        "source": json.dumps(record.get("condenser_source"), indent=2, sort_keys=True, default=str)
        if record.get("condenser_source") else "",
        "facts": json.dumps(facts, indent=2, sort_keys=True, default=str) if facts else "",
        "pictures": gathering.guarded(f"pictures of {path}", lambda: _pictures(gathering, record, path)) or [],
    }


def _train_seconds(step: dict[str, Any]) -> float:
    value = step.get("train_seconds", 0.0)
    return float(sum(value.values())) if isinstance(value, dict) else float(value)


def _pictures(gathering: Gathering, record: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """The PNG grids the run saved beside its record: each order's final memory, or each static set; the first
    only in the preview mode, scaled down to PREVIEW_WIDTH."""
    if gathering.images == "none":
        return []
    if record.get("kind") == "static":
        candidates = [(f"set {s['set']}", s.get("picture_file")) for s in record.get("sets", [])]
    else:
        candidates = [(f"order {o['order']}", _memory_picture(o.get("memory_file"))) for o in record.get("orders", [])]
    pictures = []
    for label, relative in candidates:
        if not relative:
            continue
        picture = path.parent / relative
        if not picture.is_file():  # removed since, or a folder or FIFO in its place: said, never read
            if picture.exists() or picture.is_symlink():
                gathering.problems.append(Problem(str(picture), f"the {label} picture of {path.name} is not a "
                                                                f"regular file; left out"))
            continue
        uri, size = picture_data_uri(path.parent / relative, PREVIEW_WIDTH if gathering.images == "preview" else None)
        pictures.append({"label": label, "uri": uri, "width": size[0], "height": size[1]})
        if gathering.images == "preview":
            break
    return pictures


def _memory_picture(memory_file: str | None) -> str | None:
    return None if not memory_file else str(Path(memory_file).with_suffix(".png"))
