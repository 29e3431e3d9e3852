"""Records -> rows for `clbench compare`: one row per protocol, with the paired difference to a baseline.

Rows are keyed by protocol: (dataset, steps, memory, condenser, profile), and within that by every other
setting that changes the numbers (network, networks per step, training recipe, condenser options). Records
of one protocol pool their orders; records of different protocols are never averaged together: they get
their own rows, and what differs is written beside them. With a baseline, each row gains the paired
difference of final accuracy to the baseline's row of the same protocol, over the (seed, order, network)
that both ran. The metrics themselves come from clbench.records.summary, as a record's own summary does.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from clbench.protocol.checkpoint import RECORD_DEFAULTS
from clbench.records.summary import (
    accuracy_curve,
    mean_std,
    metrics,
    order_final_accuracies,
    order_seconds,
    static_accuracies,
    total_seconds,
)
from clbench.report.stats import TEST_NAME, paired_difference

KEY_FIELDS = ("dataset", "steps", "memory", "condenser", "profile", "learner")  # never pooled across
CONFIDENCE = 0.95
# Options a condenser gained after some of its records were written, whose new default computes something
# else than those records did: the value such a record ran with (DDM before its fidelity options: pre-ReLU
# taps, unscaled weights). Any other option a record lacks ran as the option's default does now.
LEGACY_OPTIONS = {"ddm": {"style_tap": "pre_relu", "balance": "none"}}


# -- grouping ----------------------------------------------------------------------------------------------
def canonical_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records with each condenser keyed by one name, so that a plugin given by its entry-point name in one
    run and by module:Class in another is one condenser: the name its record's condenser_source holds, else
    clbench.condensers.canonical_name of the name given. The records themselves are left unchanged."""
    from clbench.condensers import canonical_name

    out = []
    for record in records:
        source = record.get("condenser_source")
        name = source.get("name") if isinstance(source, dict) else None
        given = record["config"].get("condenser")
        name = name if isinstance(name, str) else canonical_name(given) if isinstance(given, str) else given
        out.append(record if name == given else {**record, "config": {**record["config"], "condenser": name}})
    return out


def protocol_key(record: dict[str, Any]) -> tuple:
    c = {"learner": "retrain", **record["config"]}  # records from before the learners were all retrain
    return tuple(c.get(k) for k in KEY_FIELDS)


def protocol_variant(record: dict[str, Any]) -> dict[str, Any]:
    """The settings beyond the key that change results: network, networks per step, recipe, options.

    Flat `name -> value`, so that two variants can be told apart by naming only the fields that differ.
    """
    c = record["config"]
    return {"network": c.get("network"), "networks_per_step": c.get("networks_per_step"), **_recipe_and_options(c)}


def _recipe_and_options(config: dict[str, Any]) -> dict[str, Any]:
    """The training recipe and the condenser's options of a record's config, flat: `train.<k>`, `opt.<k>`."""
    flat = {f"train.{k}": v for k, v in sorted((config.get("train") or {}).items())}
    flat.update({f"opt.{k}": v for k, v in sorted((config.get("condenser_options") or {}).items())})
    # What records written before a key was added ran with, so that they pool with new runs of the same settings.
    options = _option_defaults(str(config.get("condenser")), str(config.get("profile")))
    for key, value in RECORD_DEFAULTS.items():
        section, _, name = key.partition(".")
        if section == "train" and config.get("train") and f"train.{name}" not in flat:
            flat[f"train.{name}"] = value
    if config.get("condenser_options") is not None:
        legacy = LEGACY_OPTIONS.get(str(config.get("condenser")), {})
        for name, value in options.items():
            value = RECORD_DEFAULTS.get(f"condenser_options.{name}", value)
            flat.setdefault(f"opt.{name}", legacy.get(name, value))
    return dict(sorted(flat.items()))


@functools.lru_cache(maxsize=None)
def _option_defaults(condenser: Any, profile: Any) -> dict[str, Any]:
    """A condenser's options as installed now, at their defaults for `profile` (none where it is not installed).
    Cached: a compare reads many records of few condensers (callers only read the dict)."""
    import dataclasses

    from clbench.condensers import get_condenser
    from clbench.core.options import build_options

    try:
        options = get_condenser(str(condenser)).Options
        built = build_options(options, {}, "quick" if profile == "quick" else "paper")
        return {f.name: json.loads(json.dumps(getattr(built, f.name))) for f in dataclasses.fields(options)}
    except Exception:  # a plugin that is not installed, or a record without a condenser: nothing to fill in
        return {}


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
        return {(s, o, k): a for (s, o), entry in self.complete_orders().items()
                for k, a in enumerate(order_final_accuracies(entry))}

    def hardware(self) -> list[str]:
        return sorted({hardware_label(r) for r in self.records})

    def curve(self) -> list[dict[str, float]]:
        """Accuracy after each step, pooled over every order that reached it: classes seen, mean, std, n."""
        return [p for p in accuracy_curve(list(self.orders.values())) if p["n"]]


def hardware_label(record: dict[str, Any]) -> str:
    """The machine a record's times come from: "<device name> (<device kind>)", e.g. "NVIDIA H100 (cuda)"."""
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


def differing_settings(variants: list[dict[str, Any]], mine: dict[str, Any]) -> str:
    """`mine`'s values of the settings that differ among `variants`: "k=v k2=v2" (what tells rows apart)."""
    keys = sorted({k for v in variants for k in v if any(v.get(k) != w.get(k) for w in variants)})
    return " ".join(f"{k}={mine.get(k)}" for k in keys)


def _row(group: Group) -> dict[str, Any]:
    complete = group.complete_orders()
    m = metrics(complete.values())
    per_order_condense = [order_seconds(e, "condense") for e in complete.values()]
    per_order_train = [order_seconds(e, "train") for e in complete.values()]
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
            "n": m.n,
            "final_accuracy_mean": m.final[0],
            "final_accuracy_std": m.final[1],
            "average_incremental_accuracy_mean": m.incremental[0],
            "average_incremental_accuracy_std": m.incremental[1],
            "forgetting_mean": m.forgetting[0],
            "forgetting_std": m.forgetting[1],
            "memory_mib": _final_memory_mib(complete.values()),
            "condense_peak_mib": _peak_mib(complete.values(), "condense"),
            "train_peak_mib": _peak_mib(complete.values(), "train"),
            "condense_seconds": total_seconds(group.orders.values(), "condense"),
            "train_seconds": total_seconds(group.orders.values(), "train"),
            "condense_seconds_per_order": mean_std(per_order_condense)[0],
            "train_seconds_per_order": mean_std(per_order_train)[0],
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


def _final_memory_mib(orders: Iterable[dict[str, Any]]) -> float | None:
    """The memory after the last step as stored (MiB), averaged over the orders; None for records from before
    clbench counted it."""
    sizes = [o["steps"][-1]["memory_bytes"] for o in orders if o.get("steps") and "memory_bytes" in o["steps"][-1]]
    return sum(sizes) / len(sizes) / 2**20 if sizes else None


def _peak_mib(orders: Iterable[dict[str, Any]], phase: str) -> float | None:
    """The highest peak memory of any step's `phase` (condense, train) over the orders (MiB): what a machine
    needs to run it; None where no step measured it (old records, a system without the counter)."""
    peaks = [s[f"{phase}_peak_bytes"] for o in orders for s in o.get("steps", []) if f"{phase}_peak_bytes" in s]
    return max(peaks) / 2**20 if peaks else None


def _protocol_words(group: Group) -> str:
    d, steps, memory, _, profile, learner = group.key
    return f"{d}, {steps} steps, memory {memory}, profile {profile}, learner {learner}"


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
                rows[i]["variant"] = differing_settings(variants, groups[i].variant)
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
                f"({' | '.join(differing_settings([m.variant for m in matches], m.variant) for m in matches)}); "
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


# -- static condensation records -> rows -------------------------------------------------------------------
STATIC_KEY_FIELDS = ("dataset", "condenser", "ipc", "profile", "network")


def static_variant(record: dict[str, Any]) -> dict[str, Any]:
    """The settings of a static record beyond its key that change results: condensation network and width,
    training recipe, condenser options (flat `name -> value`, as `protocol_variant`)."""
    c = record["config"]
    return {"network": c.get("network"), "width": c.get("width"), **_recipe_and_options(c)}


def static_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, condenser, ipc, profile, evaluation network) and variant, pooling the complete
    sets of all records of that key. Records whose settings differ (e.g. an ablation's condenser options)
    are never averaged together: each variant is its own row, its condenser named with what differs.

    Row fields: dataset, condenser, ipc, profile, network (the evaluation network), condensed_with (the
    condensation network), sets (distinct set indices), n (trainings pooled), mean, std (percent, population
    std), condense_seconds, train_seconds (this network's training), condense_seconds_per_set,
    condense_peak_mib (the highest set's; None where unmeasured), complete, records. Non-static records are
    ignored, so `compare` may pass every record it found.
    """
    groups: dict[tuple, list[tuple[dict, str]]] = {}
    variants: dict[tuple, dict[str, Any]] = {}
    for record in records:
        if record.get("kind") != "static":
            continue
        config, variant = record["config"], static_variant(record)
        for name in config.get("eval_nets", []):
            key = (config["dataset"], config["condenser"], config["ipc"], config["profile"], name)
            groups.setdefault(key + _frozen(variant), []).append((record, name))
            variants[key + _frozen(variant)] = variant
    # A variant is named by what differs among the variants of its condenser at ANY ipc, so that one variant
    # keeps one name across the ipc columns of the table.
    by_condenser: dict[tuple, list[dict[str, Any]]] = {}
    for full in groups:
        by_condenser.setdefault(_without_ipc(full), []).append(variants[full])
    rows = []
    for full, members in sorted(groups.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        key = full[: len(STATIC_KEY_FIELDS)]
        values, set_ids, condense, train, peaks, condensed = [], set(), 0.0, 0.0, [], 0
        for record, name in members:
            done = [s for s in record.get("sets", []) if s.get("complete")]
            values.extend(static_accuracies(done, name))
            set_ids.update(s["set"] for s in done)
            condense += sum(float(s["condense_seconds"]) for s in done)
            train += sum(float(s["train_seconds"].get(name, 0.0)) for s in done)
            peaks += [s["condense_peak_bytes"] for s in done if "condense_peak_bytes" in s]
            condensed += len(done)
        row = dict(zip(STATIC_KEY_FIELDS, key))
        siblings = by_condenser[_without_ipc(full)]
        differs = differing_settings(siblings, variants[full]) if len(siblings) > 1 else ""
        if differs:
            row["condenser"] = f"{row['condenser']} [{differs}]"
        mean, std = mean_std(values)
        row.update({
            "condensed_with": variants[full]["network"] or "convnet",
            "sets": len(set_ids),
            "n": len(values),
            "mean": mean,
            "std": std,
            "condense_seconds": condense,
            "train_seconds": train,
            "condense_seconds_per_set": condense / condensed if condensed else None,
            "condense_peak_mib": max(peaks) / 2**20 if peaks else None,
            "complete": all(r.get("complete") for r, _ in members),
            "records": len({r["run_id"] for r, _ in members}),
        })
        rows.append(row)
    return rows


def _without_ipc(full_key: tuple) -> tuple:
    """The key fields of a static row's full key (STATIC_KEY_FIELDS, then the frozen variant) but the ipc."""
    ipc = STATIC_KEY_FIELDS.index("ipc")
    return full_key[:ipc] + full_key[ipc + 1: len(STATIC_KEY_FIELDS)]
