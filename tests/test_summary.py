"""The summary metrics, computed in clbench.records.summary only: against hand-computed values on tiny records,
and `clbench compare`'s rows against a record's own summary (one computation, the same numbers)."""
from __future__ import annotations

import math

import pytest

from clbench.records import summary
from tests.test_report import DM, make_record


def _step(seen, accs, classes, condense, train):
    return {"seen_classes": seen, "accuracies": accs, "class_accuracy": classes,
            "condense_seconds": condense, "train_seconds": train}


def tiny_orders():
    """Two complete orders of two steps with two networks each, and one order stopped after its first step."""
    a = {"order": 0, "complete": True, "steps": [
        _step([0, 1], [80.0, 70.0], {"0": 90.0, "1": 70.0}, 1.0, 2.0),
        _step([0, 1, 2, 3], [60.0, 50.0], {"0": 80.0, "1": 40.0, "2": 60.0, "3": 50.0}, 3.0, 4.0)]}
    b = {"order": 1, "complete": True, "steps": [
        _step([0, 1], [90.0, 80.0], {"0": 100.0, "1": 80.0}, 1.0, 1.0),
        _step([0, 1, 2, 3], [70.0, 60.0], {"0": 100.0, "1": 60.0, "2": 55.0, "3": 45.0}, 1.0, 1.0)]}
    c = {"order": 2, "complete": False, "steps": [_step([0, 1], [20.0, 30.0], {"0": 20.0, "1": 30.0}, 5.0, 5.0)]}
    return [a, b, c]


def test_summarise_against_a_hand_computation():
    s = summary.summarise(tiny_orders())
    # final accuracies of the complete orders: 60, 50, 70, 60 -> mean 60, deviations 0, -10, 10, 0
    assert s["final_accuracy_mean"] == pytest.approx(60.0)
    assert s["final_accuracy_std"] == pytest.approx(math.sqrt(200 / 4))
    # average incremental accuracy per (order, network): (80+60)/2, (70+50)/2, (90+70)/2, (80+60)/2
    assert s["average_incremental_accuracy_mean"] == pytest.approx(70.0)
    assert s["average_incremental_accuracy_std"] == pytest.approx(math.sqrt(200 / 4))
    # forgetting: order 0 drops 90->80 and 70->40 (mean 20), order 1 drops 100->100 and 80->60 (mean 10)
    assert s["forgetting_mean"] == pytest.approx(15.0) and s["forgetting_std"] == pytest.approx(5.0)
    assert s["orders_complete"] == 2
    # seconds count the unfinished order too
    assert s["condense_seconds"] == pytest.approx(1 + 3 + 1 + 1 + 5) and s["train_seconds"] == pytest.approx(13.0)
    # the curve pools every order that reached the step, the unfinished one included
    first = [80.0, 70.0, 90.0, 80.0, 20.0, 30.0]
    mean = sum(first) / 6
    assert [p["classes"] for p in s["curve"]] == [2, 4] and [p["n"] for p in s["curve"]] == [6, 4]
    assert s["curve"][0]["mean"] == pytest.approx(mean)
    assert s["curve"][0]["std"] == pytest.approx(math.sqrt(sum((a - mean) ** 2 for a in first) / 6))
    assert s["curve"][1]["mean"] == pytest.approx(60.0) and s["curve"][1]["std"] == pytest.approx(math.sqrt(50))


def test_one_order_and_no_order():
    (a, *_) = tiny_orders()
    assert summary.order_final_accuracies(a) == [60.0, 50.0]
    assert summary.order_incremental_accuracies(a) == [70.0, 60.0]
    assert summary.order_forgetting(a) == pytest.approx(20.0)
    assert summary.order_forgetting({"steps": a["steps"][:1]}) is None  # nothing learnt before a last step
    assert summary.order_seconds(a, "condense") == 4.0 and summary.order_seconds(a, "train") == 6.0
    empty = summary.summarise([])
    assert empty["final_accuracy_mean"] is None and empty["curve"] == [] and empty["orders_complete"] == 0
    assert summary.mean_std([]) == (None, None)


def test_summarise_static_against_a_hand_computation():
    sets = [
        {"complete": True, "accuracies": {"convnet": [50.0, 60.0], "alexnet": [40.0]}, "condense_seconds": 2.0,
         "train_seconds": {"convnet": 3.0, "alexnet": 1.0}},
        {"complete": True, "accuracies": {"convnet": [70.0]}, "condense_seconds": 1.0,
         "train_seconds": {"convnet": 2.0}},
        {"complete": False, "accuracies": {"convnet": [0.0]}, "condense_seconds": 4.0,
         "train_seconds": {"convnet": 1.0}},
    ]
    s = summary.summarise_static(sets, ["convnet", "alexnet", "resnet"])
    assert s["accuracy"]["convnet"] == {"mean": pytest.approx(60.0), "std": pytest.approx(math.sqrt(200 / 3)),
                                        "n": 3}
    assert s["accuracy"]["alexnet"] == {"mean": 40.0, "std": 0.0, "n": 1}
    assert s["accuracy"]["resnet"] == {"mean": None, "std": None, "n": 0}
    assert s["sets_complete"] == 2 and s["condense_seconds"] == 7.0 and s["train_seconds"] == 7.0


def test_compare_rows_and_the_record_summary_are_one_computation():
    from clbench.report.rows import group_records, summary_rows

    record = make_record("dm", DM, drop=7.0)
    record["orders"][1]["complete"] = False  # left out of both, kept in both curves
    expected = summary.summarise(record["orders"])
    (row,) = summary_rows([record])
    # the same values pooled in the same order: equal to the last bit, not merely close
    for key in ("final_accuracy", "average_incremental_accuracy", "forgetting"):  # the same keys in both
        assert (row[f"{key}_mean"], row[f"{key}_std"]) == (expected[f"{key}_mean"], expected[f"{key}_std"])
    assert (row["forgetting_mean"], row["forgetting_std"]) == (expected["forgetting_mean"], expected["forgetting_std"])
    assert row["orders"] == expected["orders_complete"] == 3 and row["n"] == 6
    assert (row["condense_seconds"], row["train_seconds"]) == (expected["condense_seconds"], expected["train_seconds"])
    (group,) = group_records([record])
    assert group.curve() == expected["curve"]
