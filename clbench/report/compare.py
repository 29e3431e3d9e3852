"""`clbench compare`: records -> rows -> one table builder for every output format.

Rows are keyed by protocol: (dataset, steps, memory, condenser, profile), and within that by every other
setting that changes the numbers (network, networks per step, training recipe, condenser options). Records
of one protocol pool their orders; records of different protocols are never averaged together: they get
their own rows, and what differs is written beside them. With a baseline, each row gains the paired
difference of final accuracy to the baseline's row of the same protocol, over the (seed, order, network)
that both ran.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from clbench.records.record import mean_std, order_forgetting, order_incremental_accuracies
from clbench.report.stats import TEST_NAME, paired_difference

FORMATS = ("table", "markdown", "csv", "latex", "json")
KEY_FIELDS = ("dataset", "steps", "memory", "condenser", "profile")
CONFIDENCE = 0.95


# -- grouping ----------------------------------------------------------------------------------------------
def protocol_key(record: dict[str, Any]) -> tuple:
    c = record["config"]
    return tuple(c.get(k) for k in KEY_FIELDS)


def protocol_variant(record: dict[str, Any]) -> dict[str, Any]:
    """The settings beyond the key that change results: network, networks per step, recipe, options.

    Flat `name -> value`, so that two variants can be told apart by naming only the fields that differ.
    """
    c = record["config"]
    flat: dict[str, Any] = {"network": c.get("network"), "networks_per_step": c.get("networks_per_step")}
    for k, v in sorted((c.get("train") or {}).items()):
        flat[f"train.{k}"] = v
    for k, v in sorted((c.get("condenser_options") or {}).items()):
        flat[f"opt.{k}"] = v
    return flat


def _frozen(d: dict[str, Any]) -> tuple:
    return tuple((k, json.dumps(v, sort_keys=True)) for k, v in sorted(d.items()))


def _shared(variant: dict[str, Any]) -> dict[str, Any]:
    """The part of a variant two condensers must share to be compared (their options naturally differ)."""
    return {k: v for k, v in variant.items() if not k.startswith("opt.")}


@dataclass
class Group:
    """The records of one protocol, with each (seed, order) kept once (the latest record's entry wins)."""

    key: tuple
    variant: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    orders: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)  # (seed, order) -> order entry
    duplicates: list[tuple[int, int]] = field(default_factory=list)

    @property
    def condenser(self) -> str:
        return self.key[KEY_FIELDS.index("condenser")]

    def comparable_key(self) -> tuple:
        """What must be equal for two groups to sit in one comparison: the key without the condenser."""
        return tuple(v for k, v in zip(KEY_FIELDS, self.key) if k != "condenser") + _frozen(_shared(self.variant))

    def complete_orders(self) -> dict[tuple[int, int], dict[str, Any]]:
        return {k: o for k, o in sorted(self.orders.items()) if o.get("complete")}

    def final_by_pair(self) -> dict[tuple[int, int, int], float]:
        """Final accuracy of each (seed, order, network index) of the complete orders."""
        return {(s, o, k): float(a) for (s, o), entry in self.complete_orders().items()
                for k, a in enumerate(entry["steps"][-1]["accuracies"])}

    def hardware(self) -> list[str]:
        return sorted({_hardware(r) for r in self.records})

    def curve(self) -> list[dict[str, float]]:
        """Accuracy after each step, pooled over every order that reached it: classes seen, mean, std, n."""
        entries = list(self.orders.values())
        points = []
        for t in range(max((len(e["steps"]) for e in entries), default=0)):
            reached = [e["steps"][t] for e in entries if len(e["steps"]) > t]
            accs = [float(a) for s in reached for a in s["accuracies"]]
            if accs:
                points.append({"classes": len(reached[0]["seen_classes"]), "mean": float(np.mean(accs)),
                               "std": float(np.std(accs)), "n": len(accs)})
        return points


def _hardware(record: dict[str, Any]) -> str:
    env = record.get("environment") or {}
    name = env.get("device_name") or "unknown hardware"
    device = env.get("device") or record["config"].get("device") or ""
    kind = device.split(":")[0]
    return f"{name} ({kind})" if kind and kind not in name.lower() else name


def group_records(records: Iterable[dict[str, Any]]) -> list[Group]:
    """Records split by protocol (key and variant); sorted so rows of one protocol sit together."""
    groups: dict[tuple, Group] = {}
    for record in sorted(records, key=lambda r: (str(r.get("created", "")), str(r.get("run_id", "")))):
        variant = protocol_variant(record)
        gkey = (protocol_key(record), _frozen(variant))
        group = groups.setdefault(gkey, Group(protocol_key(record), variant))
        group.records.append(record)
        seed = int(record["config"].get("seed", 0) or 0)
        for entry in record["orders"]:
            slot = (seed, int(entry["order"]))
            previous = group.orders.get(slot)
            if previous is not None:
                group.duplicates.append(slot)
                if previous.get("complete") and not entry.get("complete"):
                    continue  # a finished order beats a later unfinished one
            group.orders[slot] = entry
    return sorted(groups.values(), key=lambda g: ([str(x) for x in g.comparable_key()], str(g.condenser),
                                                  _frozen(g.variant)))


# -- rows ------------------------------------------------------------------------------------------------
def compress_ids(ids: Iterable[int]) -> str:
    """[0, 1, 2, 4] -> "0-2,4": which orders a row holds, short enough for a table cell."""
    values = sorted(set(int(i) for i in ids))
    if not values:
        return "-"
    parts, start, prev = [], values[0], values[0]
    for v in values[1:] + [None]:  # type: ignore[list-item]
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ",".join(parts)


def _differing(variants: list[dict[str, Any]], mine: dict[str, Any]) -> str:
    keys = sorted({k for v in variants for k in v if any(v.get(k) != w.get(k) for w in variants)})
    return " ".join(f"{k}={mine.get(k)}" for k in keys)


def _row(group: Group) -> dict[str, Any]:
    complete = group.complete_orders()
    final = list(group.final_by_pair().values())
    incremental = [a for e in complete.values() for a in order_incremental_accuracies(e)]
    forgetting = [f for e in complete.values() if (f := order_forgetting(e)) is not None]
    fm, fs = mean_std(final)
    im, is_ = mean_std(incremental)
    gm, gs = mean_std(forgetting)
    per_order_condense = [sum(s["condense_seconds"] for s in e["steps"]) for e in complete.values()]
    per_order_train = [sum(s["train_seconds"] for s in e["steps"]) for e in complete.values()]
    row: dict[str, Any] = dict(zip(KEY_FIELDS, group.key))
    row.update(
        {
            "network": group.variant.get("network"),
            "networks_per_step": group.variant.get("networks_per_step"),
            "epochs": group.variant.get("train.epochs"),
            "variant": "",
            "orders": len({o for _, o in complete}),
            "order_ids": compress_ids(o for _, o in complete),
            "seeds": compress_ids(s for s, _ in complete),
            "n": len(final),
            "final_mean": fm,
            "final_std": fs,
            "aia_mean": im,
            "aia_std": is_,
            "forgetting_mean": gm,
            "forgetting_std": gs,
            "condense_seconds": float(sum(s["condense_seconds"] for e in group.orders.values() for s in e["steps"])),
            "train_seconds": float(sum(s["train_seconds"] for e in group.orders.values() for s in e["steps"])),
            "condense_seconds_per_order": float(np.mean(per_order_condense)) if per_order_condense else None,
            "train_seconds_per_order": float(np.mean(per_order_train)) if per_order_train else None,
            "hardware": ", ".join(group.hardware()),
            "records": len(group.records),
            "complete": all(r.get("complete") for r in group.records),
            "notes": [],
        }
    )
    pending = len(group.orders) - len(complete)
    if pending:
        row["notes"].append(f"{pending} unfinished order(s) left out of the summaries (kept in the curve)")
    if group.duplicates:
        dup = compress_ids(o for _, o in group.duplicates)
        row["notes"].append(f"order(s) {dup} appear in more than one record; the latest record's result is used")
    return row


def _protocol_words(group: Group) -> str:
    d, steps, memory, _, profile = group.key
    return f"{d}, {steps} steps, memory {memory}, profile {profile}"


def summary_rows(records: list[dict[str, Any]], baseline: str | None = None) -> list[dict[str, Any]]:
    """One row per protocol, mean and std over (seed, order, network); mismatches written into `notes`.

    With `baseline` (a condenser name), each row also gets the paired difference of its final accuracy to the
    baseline's row of the same protocol: `diff_mean`, `diff_ci_low`, `diff_ci_high`, `p_value`, `diff_n`.
    """
    groups = group_records(records)
    rows = [_row(g) for g in groups]

    # Same key, different settings: separate rows (never pooled), labelled with what differs.
    by_key: dict[tuple, list[int]] = {}
    for i, g in enumerate(groups):
        by_key.setdefault(g.key, []).append(i)
    for indices in by_key.values():
        if len(indices) > 1:
            variants = [groups[i].variant for i in indices]
            for i in indices:
                rows[i]["variant"] = _differing(variants, groups[i].variant)
                rows[i]["notes"].append(
                    f"{groups[i].condenser} on {_protocol_words(groups[i])} was run with different settings; "
                    f"each setting has its own row (not pooled)")

    # One protocol, different condensers: different class orders are pointed out.
    by_protocol: dict[tuple, list[int]] = {}
    for i, g in enumerate(groups):
        by_protocol.setdefault(g.comparable_key(), []).append(i)
    for indices in by_protocol.values():
        sets = {rows[i]["condenser"] + (f" [{rows[i]['variant']}]" if rows[i]["variant"] else ""):
                (rows[i]["seeds"], rows[i]["order_ids"]) for i in indices}
        if len(set(sets.values())) > 1:
            listing = "; ".join(f"{name}: orders {o}" + (f" seed {s}" if s != "0" else "")
                                for name, (s, o) in sets.items())
            for i in indices:
                rows[i]["notes"].append(f"rows of {_protocol_words(groups[i])} ran different class orders "
                                        f"({listing})")

    hardware = {r["hardware"] for r in rows}
    if len(hardware) > 1:
        for r in rows:
            r["notes"].append(f"times were measured on different hardware ({'; '.join(sorted(hardware))})")

    if baseline is not None:
        _add_baseline(groups, rows, baseline)
    return rows


def _add_baseline(groups: list[Group], rows: list[dict[str, Any]], baseline: str) -> None:
    test = f"{TEST_NAME} over (seed, order, network) pairs of final accuracy, {CONFIDENCE:.0%} t interval"
    base_groups = [g for g in groups if g.condenser == baseline]
    for g, row in zip(groups, rows):
        row.update({"baseline": baseline, "test": test, "diff_n": 0, "diff_mean": None, "diff_ci_low": None,
                    "diff_ci_high": None, "p_value": None})
        if g.condenser == baseline:
            continue
        matches = [b for b in base_groups if b.comparable_key() == g.comparable_key()]
        if not matches:
            row["notes"].append(_no_baseline(g, base_groups, baseline))
            continue
        if len(matches) > 1:
            row["notes"].append(
                f"{baseline} has {len(matches)} settings for {_protocol_words(g)} "
                f"({' | '.join(_differing([m.variant for m in matches], m.variant) for m in matches)}); "
                f"no single baseline to pair with")
            continue
        base = matches[0]
        mine, theirs = g.final_by_pair(), base.final_by_pair()
        common = sorted(set(mine) & set(theirs))
        if not common:
            row["notes"].append(f"no (seed, order, network) in common with {baseline}: nothing to pair")
            continue
        if set(mine) != set(theirs):
            row["notes"].append(
                f"paired with {baseline} over orders {compress_ids(o for _, o, _ in common)} only "
                f"({g.condenser}: {compress_ids(o for _, o, _ in mine)}, "
                f"{baseline}: {compress_ids(o for _, o, _ in theirs)})")
        result = paired_difference([mine[p] for p in common], [theirs[p] for p in common], CONFIDENCE)
        row.update({"diff_n": result.n, "diff_mean": result.mean, "diff_ci_low": result.ci_low,
                    "diff_ci_high": result.ci_high, "p_value": result.p_value})
    if not base_groups:
        for row in rows:
            row["notes"].append(f"no record of the baseline {baseline!r} among the records compared")


def _no_baseline(g: Group, base_groups: list[Group], baseline: str) -> str:
    """Why a row has no baseline: name what the baseline's closest runs differ in."""
    if not base_groups:
        return f"no record of the baseline {baseline!r}"
    mine = {**dict(zip(KEY_FIELDS, g.key)), **_shared(g.variant)}
    offers = []
    for b in base_groups:
        theirs = {**dict(zip(KEY_FIELDS, b.key)), **_shared(b.variant)}
        diff = [f"{k}={theirs.get(k)}" for k in mine if k != "condenser" and mine.get(k) != theirs.get(k)]
        offers.append(" ".join(diff))
    return (f"protocol mismatch: no {baseline} run with this row's protocol; {baseline} was run with "
            + " | ".join(sorted(set(offers))) + " (not compared)")


# -- one table builder for every format ------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    key: str
    title: str  # full title (markdown, latex, csv header of the human-readable formats)
    short: str  # compact title for the rich table


BASE_COLUMNS = [
    Column("dataset", "dataset", "dataset"), Column("steps", "steps", "steps"),
    Column("memory", "memory", "memory"), Column("condenser", "condenser", "condenser"),
    Column("profile", "profile", "profile"), Column("variant", "settings", "settings"),
    Column("orders", "orders", "orders"),
    Column("final", "final acc (%)", "final %"), Column("aia", "avg inc acc (%)", "AIA %"),
    Column("forgetting", "forgetting (pts)", "forget"),
    Column("condense_seconds_per_order", "condense s/order", "cond s"),
    Column("train_seconds_per_order", "train s/order", "train s"),
]
BASELINE_COLUMNS = [
    Column("diff", "Δ final vs {b}", "Δ {b}"), Column("ci", "95% CI", "95% CI"), Column("p_value", "p", "p"),
]
KEY_COLUMNS = ("dataset", "steps", "memory", "profile")


def _fmt_signed(x: float) -> str:
    return f"{x:+.2f}"


def _cell(row: dict[str, Any], key: str, pm: str = " ± ") -> str:
    if key in ("final", "aia", "forgetting"):
        mean, std = row.get(f"{key}_mean"), row.get(f"{key}_std")
        if mean is None:
            return "-"
        return f"{mean:.2f}{pm}{std:.2f}" if std is not None else f"{mean:.2f}"
    if key == "diff":
        return "-" if row.get("diff_mean") is None else _fmt_signed(row["diff_mean"])
    if key == "ci":
        lo, hi = row.get("diff_ci_low"), row.get("diff_ci_high")
        return "-" if lo is None else f"[{_fmt_signed(lo)}, {_fmt_signed(hi)}]"
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
        return f"{value:.1f}" if "seconds" in key else f"{value:.2f}"
    return str(value)


def _columns(rows: list[dict[str, Any]], compact: bool) -> list[Column]:
    columns = list(BASE_COLUMNS)
    if not any(r.get("variant") for r in rows):
        columns = [c for c in columns if c.key != "variant"]
    if compact and rows:
        columns = [c for c in columns if not (c.key in KEY_COLUMNS and len({str(r.get(c.key)) for r in rows}) == 1)]
    baseline = next((r["baseline"] for r in rows if r.get("baseline")), None)
    if baseline is not None:
        columns += [Column(c.key, c.title.format(b=baseline), c.short.format(b=baseline)) for c in BASELINE_COLUMNS]
    return columns


def footnotes(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[int]]]:
    """Distinct notes, numbered from 1, and for each row the numbers of its notes."""
    notes: list[str] = []
    refs: list[list[int]] = []
    for row in rows:
        mine = []
        for note in row.get("notes", []):
            if note not in notes:
                notes.append(note)
            mine.append(notes.index(note) + 1)
        refs.append(mine)
    return notes, refs


def caption(rows: list[dict[str, Any]], compact: bool = False) -> str:
    """What the numbers are, over what, and on which hardware; compact adds the fields common to all rows."""
    parts = []
    if compact and rows:
        common = {k: rows[0].get(k) for k in KEY_COLUMNS if len({str(r.get(k)) for r in rows}) == 1}
        if common:
            words = {"dataset": "{}", "steps": "{} steps", "memory": "memory {}", "profile": "profile {}"}
            parts.append(", ".join(words[k].format(v) for k, v in common.items()))
    hardware = sorted({r["hardware"] for r in rows if r.get("hardware")})
    if hardware:
        parts.append("hardware: " + "; ".join(hardware))
    parts.append("mean ± std (population) over seeds x orders x networks; times are seconds per order")
    test = next((r["test"] for r in rows if r.get("test")), None)
    if test:
        parts.append(f"Δ: {test}")
    return ". ".join(parts)


def _with_refs(cells: list[str], refs: list[int]) -> list[str]:
    return cells + [",".join(f"[{n}]" for n in refs) or "-"]


def render(rows: list[dict[str, Any]], fmt: str) -> str:
    """The text of the table in `fmt` (all but `table`, which rich prints)."""
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        fieldnames = list(dict.fromkeys(k for r in rows for k in r)) if rows else [c.key for c in BASE_COLUMNS]
        writer = csv.DictWriter(buffer, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows({**r, "notes": "; ".join(r.get("notes", []))} for r in rows)
        return buffer.getvalue()
    columns = _columns(rows, compact=False)
    notes, refs = footnotes(rows)
    with_notes = bool(notes)
    headers = [c.title for c in columns] + (["notes"] if with_notes else [])
    if fmt == "markdown":
        cells = [[_cell(r, c.key) for c in columns] for r in rows]
        if with_notes:
            cells = [_with_refs(c, ref) for c, ref in zip(cells, refs)]
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        lines += ["", caption(rows) + "."]
        lines += [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
        return "\n".join(lines) + "\n"
    if fmt == "latex":
        cells = [[_latex(_cell(r, c.key, " $\\pm$ ")) for c in columns] for r in rows]
        if with_notes:
            cells = [_with_refs(c, ref) for c, ref in zip(cells, refs)]
        head = " & ".join(_latex(h) for h in headers)
        body = "\n".join(" & ".join(c) + r" \\" for c in cells)
        text = (f"\\begin{{tabular}}{{{'l' * len(headers)}}}\n\\toprule\n{head} \\\\\n\\midrule\n{body}\n"
                f"\\bottomrule\n\\end{{tabular}}\n")
        text += "\\par\\smallskip{\\footnotesize " + _latex(caption(rows)) + "."
        text += "".join(f"\\\\\n[{i}] {_latex(n)}" for i, n in enumerate(notes, 1)) + "}\n"
        return text
    raise ValueError(f"unknown format {fmt!r}")


_LATEX_ESCAPES = {"%": r"\%", "&": r"\&", "_": r"\_", "#": r"\#", "Δ": r"$\Delta$", "±": r"$\pm$"}


def _latex(text: str) -> str:
    if "$\\pm$" in text:  # already made by _cell for latex
        head, _, tail = text.partition(" $\\pm$ ")
        return _latex(head) + " $\\pm$ " + _latex(tail)
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def rich_table(rows: list[dict[str, Any]]):
    """The rich Table: columns common to every row move to the title, so that it reads in 80 columns."""
    from rich import box
    from rich.table import Table

    columns = _columns(rows, compact=True)
    notes, refs = footnotes(rows)
    table = Table(title="clbench results", caption=caption(rows, compact=True) + ".", caption_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for c in columns:
        numeric = c.key not in ("dataset", "memory", "condenser", "profile", "variant", "orders")
        table.add_column(c.short, justify="right" if numeric else "left", no_wrap=c.key != "variant")
    if notes:
        table.add_column("notes", no_wrap=True)
    for r, ref in zip(rows, refs):
        cells = [_cell(r, c.key) for c in columns]
        table.add_row(*(_with_refs(cells, ref) if notes else cells))
    return table, notes


def print_table(rows: list[dict[str, Any]], fmt: str, console) -> None:
    """Print `rows` in `fmt`; the rich table widens a non-terminal console to fit rather than truncating."""
    if fmt != "table":
        console.print(render(rows, fmt), end="", markup=False, highlight=False, soft_wrap=True)
        return
    table, notes = rich_table(rows)
    if not console.is_terminal:
        natural = console.measure(table, options=console.options.update(max_width=10_000)).maximum
        console.width = max(console.width, natural)
    console.print(table)
    for i, note in enumerate(notes, 1):
        console.print(f"[{i}] {note}", markup=False, highlight=False, soft_wrap=True)


# -- static condensation records (`clbench condense`): rows condenser, columns ipc x evaluation network ----
def static_pivot(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    """Headers, text cells and flat dicts of the static table: one line per (dataset, condenser, profile)."""
    columns = sorted({(r["ipc"], r["network"]) for r in rows}, key=lambda c: (c[0], c[1]))
    lines: dict[tuple, dict[tuple, dict]] = {}
    for r in rows:
        lines.setdefault((r["dataset"], r["condenser"], r["profile"]), {})[(r["ipc"], r["network"])] = r
    headers = ["dataset", "condenser", "profile"] + [f"ipc {ipc} {net}" for ipc, net in columns]
    cells, flat = [], []
    for key, by_column in sorted(lines.items()):
        row_cells, row_flat = list(map(str, key)), dict(zip(["dataset", "condenser", "profile"], key))
        for column, title in zip(columns, headers[3:]):
            r = by_column.get(column)
            ok = r is not None and r["mean"] is not None
            row_cells.append(f"{r['mean']:.2f} ± {r['std']:.2f}" if ok else "-")
            row_flat[f"{title} mean"] = r["mean"] if ok else None
            row_flat[f"{title} std"] = r["std"] if ok else None
        cells.append(row_cells)
        flat.append(row_flat)
    return headers, cells, flat


def render_static(rows: list[dict[str, Any]], fmt: str, console) -> None:
    headers, cells, flat = static_pivot(rows)
    note = "test accuracy (%) on the full test set, mean ± std over synthetic sets x evaluation trainings"
    if fmt == "table":
        from rich.table import Table

        table = Table(title="static condensation", caption=note)
        for h in headers:
            table.add_column(h)
        for row in cells:
            table.add_row(*row)
        console.print(table)
        return
    if fmt == "json":
        text = json.dumps(flat, indent=2) + "\n"
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(flat[0]) if flat else headers)
        writer.writeheader()
        writer.writerows(flat)
        text = buffer.getvalue()
    elif fmt == "markdown":
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in cells] + ["", note + "."]
        text = "\n".join(lines) + "\n"
    elif fmt == "latex":
        body = "\n".join(" & ".join(_latex(c) for c in row) + r" \\" for row in cells)
        text = (f"\\begin{{tabular}}{{{'l' * len(headers)}}}\n\\toprule\n{' & '.join(_latex(h) for h in headers)} \\\\\n"
                f"\\midrule\n{body}\n\\bottomrule\n\\end{{tabular}}\n")
    else:
        raise ValueError(f"unknown format {fmt!r}")
    console.print(text, end="", markup=False, highlight=False, soft_wrap=True)
