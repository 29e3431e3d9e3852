"""`--jobs N`: orders in spawned processes give the record of a sequential run, gathered in order."""
from __future__ import annotations

import pytest

from clbench.records.record import load_record
from tests.conftest import run_parallel_and_sequential

TINY_CONFIG = dict(condenser="herding", dataset="digits", steps=5, orders=2, memory="5ipc", networks_per_step=1,
                   train={"epochs": 2}, device="cpu", profile="quick")


def outcome(record: dict) -> list:
    return [(o["order"], s["step"], s["accuracies"], s["class_accuracy"], s["memory_size"])
            for o in record["orders"] for s in o["steps"]]


@pytest.mark.slow
def test_jobs_2_gives_the_sequential_record(tmp_path):
    (path, parallel), (_, sequential) = run_parallel_and_sequential(tmp_path, **TINY_CONFIG)
    assert parallel["complete"] and [o["order"] for o in parallel["orders"]] == [0, 1]
    assert parallel["environment"]["threads_per_order"] == 1
    assert outcome(parallel) == outcome(sequential)
    assert load_record(path) == parallel  # what was returned is what is on disk
    for order in parallel["orders"]:
        assert (path.parent / order["memory_file"]).is_file()
    assert parallel["summary"]["final_accuracy_mean"] == pytest.approx(sequential["summary"]["final_accuracy_mean"])


def test_jobs_refuses_zero(cli, tmp_path):
    code, _, err = cli("run", "--dataset", "digits", "--jobs", "0", "--out", str(tmp_path))
    assert code == 2 and "--jobs 0" in err
