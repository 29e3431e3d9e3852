"""`clbench compare` on hand-made records: its numbers against a hand computation, mismatches shown, formats parse."""
from __future__ import annotations

import csv
import io
import json
import math
import re

import numpy as np
import pytest
from scipy import stats

from clbench.core.atomic import atomic_write_json
from clbench.core.errors import UsageError
from clbench.records.record import SCHEMA, SCHEMA_VERSION
from clbench.report.compare import print_table, render, summary_rows
from clbench.report.rows import compress_ids
from clbench.report.stats import paired_difference


def make_record(condenser: str, finals: dict[int, list[float]], *, first: float = 50.0, memory: str = "10ipc",
                profile: str = "quick", epochs: int = 3, seed: int = 0, network: str = "convnet",
                created: str = "2026-01-01T00:00:00", device_name: str = "Test machine", dataset: str = "digits",
                drop: float = 10.0, options: dict | None = None) -> dict:
    """A two-step record: step 0 sees classes {0, 1}, step 1 all four; `finals[order]` = final accuracy per net.

    Per-class accuracies: 90 and 80 after step 0, then 90 - drop and 80 - drop: forgetting is `drop`.
    Seconds per order: condensation 1 + 2 = 3, training 3 + 3 = 6.
    """
    orders = []
    for order, accs in finals.items():
        steps = [
            {"step": 0, "classes": [0, 1], "seen_classes": [0, 1], "ipc": 1, "memory_size": 2,
             "accuracies": [first + k for k in range(len(accs))], "class_accuracy": {"0": 90.0, "1": 80.0},
             "condense_seconds": 1.0, "train_seconds": 3.0, "condenser_facts": {}},
            {"step": 1, "classes": [2, 3], "seen_classes": [0, 1, 2, 3], "ipc": 1, "memory_size": 4,
             "accuracies": list(accs),
             "class_accuracy": {"0": 90.0 - drop, "1": 80.0 - drop, "2": 50.0, "3": 40.0},
             "condense_seconds": 2.0, "train_seconds": 3.0, "condenser_facts": {}},
        ]
        orders.append({"order": order, "class_order": [0, 1, 2, 3], "complete": True, "steps": steps,
                       "memory_file": None})
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "kind": "continual",
        "run_id": f"{dataset}-{condenser}-{created}-{seed}-{memory}-{epochs}", "complete": True, "created": created,
        "config": {"condenser": condenser, "condenser_options": options or {}, "dataset": dataset, "memory": memory,
                   "steps": 2, "orders": sorted(finals), "profile": profile, "device": "cpu", "seed": seed,
                   "network": network, "networks_per_step": len(next(iter(finals.values()))),
                   "train": {"epochs": epochs, "lr": 0.01}},
        "environment": {"device": "cpu", "device_name": device_name},
        "orders": orders,
        "summary": {},
    }


DM = {0: [60.0, 62.0], 1: [55.0, 59.0], 2: [70.0, 64.0], 3: [58.0, 61.0]}
HERDING = {0: [57.0, 60.0], 1: [54.0, 55.0], 2: [66.0, 63.0]}  # orders 0-2 only


def _row(rows, condenser, **fields):
    found = [r for r in rows if r["condenser"] == condenser and all(r[k] == v for k, v in fields.items())]
    assert len(found) == 1, found
    return found[0]


def test_row_numbers_match_a_hand_computation():
    rows = summary_rows([make_record("dm", DM, drop=12.0)])
    (row,) = rows
    finals = [a for accs in DM.values() for a in accs]
    assert row["n"] == 8 and row["orders"] == 4 and row["order_ids"] == "0-3"
    assert row["final_accuracy_mean"] == pytest.approx(sum(finals) / 8)
    assert row["final_accuracy_std"] == pytest.approx(math.sqrt(sum((a - sum(finals) / 8) ** 2 for a in finals) / 8))
    # average incremental accuracy per (order, network): (step-0 accuracy + final) / 2; step 0 is 50 + k
    aia = [(50.0 + k + a) / 2 for accs in DM.values() for k, a in enumerate(accs)]
    assert row["average_incremental_accuracy_mean"] == pytest.approx(np.mean(aia))
    assert row["average_incremental_accuracy_std"] == pytest.approx(np.std(aia))
    assert row["forgetting_mean"] == pytest.approx(12.0) and row["forgetting_std"] == pytest.approx(0.0)
    assert row["condense_seconds_per_order"] == pytest.approx(3.0)
    assert row["train_seconds_per_order"] == pytest.approx(6.0)
    assert row["condense_seconds"] == pytest.approx(12.0) and row["hardware"] == "Test machine (cpu)"
    assert row["notes"] == []


def test_paired_difference_against_a_hand_computation():
    rows = summary_rows([make_record("dm", DM), make_record("herding", HERDING)], baseline="dm")
    herding = _row(rows, "herding")
    # pairs: (order, network) over the orders both ran, 0-2
    a = np.array([a for o in (0, 1, 2) for a in HERDING[o]])
    b = np.array([b for o in (0, 1, 2) for b in DM[o]])
    d = a - b
    n = d.size
    se = d.std(ddof=1) / math.sqrt(n)
    half = stats.t.ppf(0.975, n - 1) * se
    p = 2 * stats.t.sf(abs(d.mean() / se), n - 1)
    assert herding["diff_n"] == n == 6
    assert herding["diff_mean"] == pytest.approx(d.mean()) and d.mean() == pytest.approx(-2.5)
    assert herding["diff_ci_low"] == pytest.approx(d.mean() - half)
    assert herding["diff_ci_high"] == pytest.approx(d.mean() + half)
    assert herding["p_value"] == pytest.approx(p)
    assert "paired t-test" in herding["test"] and "95%" in herding["test"]
    # the orders that were left out are said, and the baseline row pairs with nothing
    assert any("paired with dm over orders 0-2 only" in note and "dm: 0-3" in note for note in herding["notes"])
    assert _row(rows, "dm")["diff_mean"] is None
    # the rows themselves still hold every order each condenser ran
    assert _row(rows, "dm")["n"] == 8 and herding["n"] == 6


def test_paired_difference_edge_cases():
    one = paired_difference([3.0], [1.0])
    assert one.mean == 2.0 and one.ci_low is None and one.p_value is None
    same = paired_difference([3.0, 4.0, 5.0], [1.0, 2.0, 3.0])
    assert same.mean == 2.0 and same.ci_low == same.ci_high == 2.0 and same.p_value is None
    with pytest.raises(ValueError, match="equal length"):
        paired_difference([1.0, 2.0], [1.0])


def test_different_protocols_are_never_pooled_and_the_mismatch_is_shown():
    records = [
        make_record("dm", DM, memory="10ipc"),
        make_record("herding", HERDING, memory="20ipc"),
        make_record("random", {0: [10.0, 20.0]}, epochs=3),
        make_record("random", {0: [30.0, 50.0]}, epochs=5),
    ]
    rows = summary_rows(records, baseline="dm")
    # herding ran another memory: its own row, no difference computed, and the reason written beside it
    herding = _row(rows, "herding")
    assert herding["memory"] == "20ipc" and herding["diff_mean"] is None
    assert any("protocol mismatch" in n and "memory=10ipc" in n for n in herding["notes"])
    # random ran with two recipes: two rows, each with its own numbers, labelled by what differs
    r3, r5 = _row(rows, "random", epochs=3), _row(rows, "random", epochs=5)
    assert r3["final_accuracy_mean"] == pytest.approx(15.0) and r5["final_accuracy_mean"] == pytest.approx(40.0)
    assert r3["variant"] == "train.epochs=3" and r5["variant"] == "train.epochs=5"
    assert any("not pooled" in n for n in r3["notes"])
    # random epochs=3 matches dm's protocol and is compared; epochs=5 is not
    assert r3["diff_n"] == 2 and r5["diff_mean"] is None
    assert any("train.epochs=3" in n for n in r5["notes"])


def test_profile_and_order_mismatches_are_shown():
    rows = summary_rows([make_record("dm", DM, profile="paper"), make_record("herding", HERDING)], baseline="dm")
    herding = _row(rows, "herding")
    assert herding["diff_mean"] is None and any("profile=paper" in n for n in herding["notes"])
    rows = summary_rows([make_record("dm", DM), make_record("herding", HERDING)])
    assert all(any("different class orders" in n and "herding: orders 0-2" in n for n in r["notes"]) for r in rows)


def test_a_repeated_order_is_counted_once_latest_first():
    old = make_record("dm", {0: [10.0, 10.0]}, created="2026-01-01T00:00:00")
    new = make_record("dm", {0: [20.0, 30.0], 1: [40.0, 40.0]}, created="2026-02-01T00:00:00")
    (row,) = summary_rows([new, old])
    assert row["n"] == 4 and row["final_accuracy_mean"] == pytest.approx(32.5)
    assert any("latest" in n for n in row["notes"])


def test_different_hardware_is_shown():
    rows = summary_rows([make_record("dm", DM), make_record("herding", HERDING, device_name="NVIDIA H100")])
    assert all(any("different hardware" in n for n in r["notes"]) for r in rows)


def _rows():
    return summary_rows([make_record("dm", DM), make_record("herding", HERDING)], baseline="dm")


def test_csv_parses_and_holds_the_numbers():
    rows = _rows()
    parsed = list(csv.DictReader(io.StringIO(render(rows, "csv"))))
    assert [r["condenser"] for r in parsed] == ["dm", "herding"]
    assert float(parsed[1]["diff_mean"]) == pytest.approx(rows[1]["diff_mean"])
    assert float(parsed[0]["final_accuracy_std"]) == pytest.approx(rows[0]["final_accuracy_std"])
    assert "paired with dm" in parsed[1]["notes"]


def test_json_parses():
    rows = _rows()
    parsed = json.loads(render(rows, "json"))
    assert parsed[1]["p_value"] == pytest.approx(rows[1]["p_value"]) and parsed[1]["baseline"] == "dm"


def test_markdown_is_a_table_with_footnotes():
    text = render(_rows(), "markdown")
    table = [line for line in text.splitlines() if line.startswith("|")]
    widths = {len(line.strip().strip("|").split("|")) for line in table}
    assert len(table) == 4 and len(widths) == 1, table
    assert re.fullmatch(r"\|(---\|)+", table[1])
    assert "Δ final vs dm" in table[0] and "95% CI" in table[0]
    assert "paired t-test" in text and "[1]" in text


def test_latex_is_a_tabular():
    text = render(_rows(), "latex")
    match = re.search(r"\\begin\{tabular\}\{(l+)\}(.*?)\\end\{tabular\}", text, re.S)
    assert match, text
    columns = len(match.group(1))
    body = [line for line in match.group(2).splitlines() if line.endswith(r"\\")]
    assert len(body) == 3 and all(line.count("&") == columns - 1 for line in body)
    assert r"$\pm$" in text and r"\%" in text and "paired t-test" in text


def test_unknown_format_raises():
    with pytest.raises(UsageError, match="unknown output format 'xml'"):
        render(_rows(), "xml")
    with pytest.raises(ValueError, match="console"):
        render(_rows(), "table")  # drawn by rich on a console, not text


def test_rich_table_is_whole_in_an_80_column_log():
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=80, force_terminal=False)
    print_table(_rows(), "table", console)
    out = buffer.getvalue()
    assert "…" not in out  # nothing truncated
    assert "herding" in out and "-2.50" in out and "paired t-test" in out
    # columns common to every row moved to the caption
    assert "digits, 2 steps, memory 10ipc, profile quick" in out


def test_compress_ids():
    assert compress_ids([4, 0, 1, 2, 7, 8]) == "0-2,4,7-8" and compress_ids([]) == "-"


def test_compare_cli_baseline_and_plot(cli, tmp_path):
    atomic_write_json(tmp_path / "dm.json", make_record("dm", DM))
    atomic_write_json(tmp_path / "herding.json", make_record("herding", HERDING))
    code, out, err = cli("compare", str(tmp_path), "--baseline", "dm", "--format", "json",
                         "--plot", str(tmp_path / "pics" / "curve.png"))
    assert code == 0, err
    rows = json.loads(out)
    assert rows[1]["diff_mean"] == pytest.approx(-2.5)
    assert (tmp_path / "pics" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = cli("compare", str(tmp_path), "--baseline", "ddm")
    assert code == 2 and "no record of that condenser" in err and "dm, herding" in err
    code, _, err = cli("compare", str(tmp_path), "--format", "xml")
    assert code == 2 and "--format 'xml'" in err


def test_compare_refuses_a_bad_plot_name_before_printing(cli, tmp_path):
    atomic_write_json(tmp_path / "dm.json", make_record("dm", DM))
    code, out, err = cli("compare", str(tmp_path), "--plot", str(tmp_path / "curve.gif"))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "--plot" in err and "curve.gif" in err and ".png" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dm.json"]  # nothing written


def test_compare_plot_of_static_records_only_says_nothing_was_drawn(cli, tmp_path):
    from tests.test_static_compare import _record

    static = {**_record("dm", {}, 70.0, "s"), "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
              "created": "2026-01-01T00:00:00", "environment": {}, "orders": [], "summary": {}}
    atomic_write_json(tmp_path / "static.json", static)
    code, out, err = cli("compare", str(tmp_path), "--plot", str(tmp_path / "curve.png"))
    assert code == 0, err
    assert "70.00" in out  # the static table is printed
    (line,) = [x for x in err.splitlines() if x.strip()]
    assert "--plot" in line and "static" in line and "no curve" in line
    assert not (tmp_path / "curve.png").exists()
