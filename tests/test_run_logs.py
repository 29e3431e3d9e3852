"""`clbench run --log csv|tensorboard`: per-order files in the run's folder with the record's accuracies, the
condensers' losses as read back, every epoch's training loss; both learners, --jobs; bad input refused."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch

TINY = dict(dataset="digits", steps=2, orders=2, memory="3ipc", width=8, train={"epochs": 3}, device="cpu",
            profile="quick", condenser="dm", opt={"iterations": 10, "report_every": 4})
CLI_TINY = ["--dataset", "digits", "--steps", "2", "--orders", "1", "--memory", "3ipc", "--width", "8",
            "--train", "epochs=1", "--device", "cpu", "--profile", "quick", "--condenser", "random"]


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module", params=["retrain", "replay"])
def logged(request, tmp_path_factory):
    """A tiny DM run with both loggers, its two orders in two worker processes."""
    from clbench.protocol.config import RunConfig
    from clbench.protocol.continual import run

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # --jobs 2: one thread per order
    try:
        path, record = run(RunConfig(out=str(tmp_path_factory.mktemp("logs")), jobs=2, log="csv,tensorboard",
                                     learner=request.param, **TINY))
    finally:
        torch.set_num_threads(threads)
    return path, record


@pytest.mark.slow
def test_csv_steps_hold_the_records_accuracies_per_order(logged):
    path, record = logged
    assert "log" not in record["config"]  # not part of what the run computes: resume compares without it
    for order in record["orders"]:
        folder = path.with_suffix("") / "logs" / f"order{order['order']}"
        got = rows(folder / "steps.csv")
        assert [(int(r["order"]), int(r["step"]), int(r["network"])) for r in got] == [
            (order["order"], s["step"], 0) for s in order["steps"]]
        assert [float(r["accuracy"]) for r in got] == [s["accuracies"][0] for s in order["steps"]]
        assert [int(r["memory_size"]) for r in got] == [s["memory_size"] for s in order["steps"]]


@pytest.mark.slow
def test_csv_condense_rows_are_the_losses_read_back_and_train_rows_every_epoch(logged):
    path, record = logged
    folder = path.with_suffix("") / "logs" / "order0"
    condense = rows(folder / "condense.csv")
    # DM reads its losses back at iterations 4, 8 and 10 (report_every 4, and the last) of each step
    assert sorted({(int(r["step"]), int(r["iteration"])) for r in condense}) == [
        (t, i) for t in range(2) for i in (4, 8, 10)]
    assert {r["name"] for r in condense} >= {"loss", "total"}
    assert all(float(r["value"]) > 0 for r in condense)
    final = {int(r["step"]): float(r["value"]) for r in condense if r["name"] == "total" and r["iteration"] == "10"}
    steps = record["orders"][0]["steps"]
    assert final == pytest.approx({t: steps[t]["condenser_facts"]["final_losses"]["total"] for t in range(2)})
    train = rows(folder / "train.csv")
    assert [(int(r["step"]), int(r["epoch"])) for r in train] == [(t, e) for t in range(2) for e in (1, 2, 3)]
    assert all(0 < float(r["loss"]) < 10 for r in train)


@pytest.mark.slow
def test_tensorboard_events_hold_the_same_scalars(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path, record = logged
    for order in record["orders"]:
        folder = path.with_suffix("") / "logs" / f"order{order['order']}"
        events = EventAccumulator(str(folder))
        events.Reload()
        accuracy = [(e.step, e.value) for e in events.Scalars("eval/accuracy")]
        as_float32 = [float(torch.tensor(s["accuracy_mean"], dtype=torch.float32)) for s in order["steps"]]
        assert accuracy == list(zip(range(2), as_float32))
        train = rows(folder / "train.csv")
        losses = [e.value for e in events.Scalars("train/loss/net0")]
        assert losses == [float(torch.tensor(float(r["loss"]), dtype=torch.float32)) for r in train]
        assert [e.step for e in events.Scalars("train/loss/net0")] == [t * 3 + e for t in range(2) for e in (1, 2, 3)]
        assert [e.step for e in events.Scalars("condense/total")] == [t * 10 + i for t in range(2) for i in (4, 8, 10)]


def test_a_resumed_csv_log_drops_the_rows_of_steps_not_saved(tmp_path):
    from clbench.protocol.logs import CsvLog

    log = CsvLog(tmp_path, order=3, steps_done=0)
    for step in range(3):
        log.epoch(step, 0, 1, 1, 0.5)
        log.condense(step, 5, 10, {"loss": 1.0})
    log.close()
    with (tmp_path / "train.csv").open("a") as handle:
        handle.write("3,3,0")  # a line cut by a kill
    CsvLog(tmp_path, order=3, steps_done=2).close()  # steps 0 and 1 are in the record
    assert [r["step"] for r in rows(tmp_path / "train.csv")] == ["0", "1"]
    assert [r["step"] for r in rows(tmp_path / "condense.csv")] == ["0", "1"]
    assert rows(tmp_path / "steps.csv") == []


def test_condenser_reports_are_logged_when_their_numbers_are_new(tmp_path):
    from clbench.protocol.logs import OrderLog

    log = OrderLog(["csv"], tmp_path / "run.json", order=0, steps_done=0)
    log.started(0)
    for it, value in [(1, float("nan")), (2, float("nan")), (3, 0.5), (4, 0.5), (5, 0.25), (6, 0.25)]:
        log.condense(it, 6, {"loss": value, "phase": "match"})
    log.started(1)
    log.condense(3, 6, {"loss": 0.25})  # a new step: logged even if the number repeats
    log.close()
    got = rows(tmp_path / "run" / "logs" / "order0" / "condense.csv")
    assert [(r["step"], r["iteration"], r["name"], r["value"]) for r in got] == [
        ("0", "3", "loss", "0.5"), ("0", "5", "loss", "0.25"), ("1", "3", "loss", "0.25")]


@pytest.mark.parametrize("value, message", [
    ("json", "--log: unknown logger 'json'"),
    ("csv,wandb", "--log: unknown logger 'wandb'"),
])
def test_unknown_log_is_one_line_exit_2_and_writes_nothing(cli, tmp_path, value, message):
    out = tmp_path / "out"
    code, stdout, err = cli("run", *CLI_TINY, "--log", value, "--out", str(out))
    assert code == 2, (stdout, err)
    assert err.strip().startswith(f"error: {message}"), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_tensorboard_without_the_package_is_one_line_exit_2_and_writes_nothing(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now fails, as when not installed
    out = tmp_path / "out"
    code, stdout, err = cli("run", *CLI_TINY, "--log", "tensorboard", "--out", str(out))
    assert code == 2, (stdout, err)
    assert "--log tensorboard needs the tensorboard package: pip install -e '.[tensorboard]'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_log_is_a_run_option_saved_for_resume_but_not_in_the_compared_config():
    from clbench.protocol.checkpoint import config_differences
    from clbench.protocol.config import RunConfig
    from clbench.protocol.prepare import prepare, resolved_config

    with_log = resolved_config(prepare(RunConfig(log="csv", **{**TINY, "learner": "replay"})))
    without = resolved_config(prepare(RunConfig(**{**TINY, "learner": "replay"})))
    assert config_differences(with_log, without) == [] and "log" not in with_log
