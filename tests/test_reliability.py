"""No lost work, clear failures, repeatable numbers: killed, interrupted and concurrent runs (real processes),
resuming, damaged and foreign records, faulty condenser plugins, non-finite losses, unwritable or full disks.

Runs are tiny (digits, 5ipc, one network, 2 epochs); `tests.faulty_condensers:Slow` stretches a step so that a
signal lands in the middle of a run.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from clbench.protocol.config import RunConfig
from clbench.records.record import load_record

REPO = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "digits", "--steps", "5", "--orders", "2", "--memory", "5ipc", "--nets", "1",
        "--train", "epochs=2", "--device", "cpu", "--profile", "quick"]
TINY_CONFIG = dict(dataset="digits", steps=5, orders=2, memory="5ipc", networks_per_step=1, train={"epochs": 2},
                   device="cpu", profile="quick")


def slow(delay: float) -> list[str]:
    return ["--condenser", "tests.faulty_condensers:Slow", "--opt", f"delay={delay}"]


def outcome(record: dict) -> list:
    """What must not change between runs of one seed: per step, accuracies, per-class accuracies, memory size."""
    return [(o["order"], s["step"], s["accuracies"], s["class_accuracy"], s["memory_size"])
            for o in record["orders"] for s in o["steps"]]


def memories(path: Path, record: dict) -> list[torch.Tensor]:
    return [torch.load(path.parent / o["memory_file"], weights_only=True)["images"] for o in record["orders"]]


def records_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json"))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread here and in the subprocesses: CPU numbers depend on the count, and on a busy 2-core
    machine two threads are ten times slower for these tiny networks."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run in this process: the numbers every other run of seed 0 must reproduce."""
    from clbench.protocol.continual import run

    out = tmp_path_factory.mktemp("reference")
    return run(RunConfig(condenser="tests.faulty_condensers:Slow", opt={"delay": "0"}, out=str(out), **TINY_CONFIG))


@pytest.fixture(scope="module")
def processes(tmp_path_factory):
    """Two `python -m clbench run` processes at once into one --out: `killed` gets SIGKILL and `interrupted`
    SIGINT, each after its first step is saved. Their delays tell their records apart."""
    out = tmp_path_factory.mktemp("processes")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    plan = {"killed": (0.2, signal.SIGKILL), "interrupted": (0.21, signal.SIGINT)}
    procs, logs, paths = {}, {}, {}
    for name, (delay, _) in plan.items():
        logs[name] = out.parent / f"{out.name}-{name}.stderr"
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "clbench", "run", *slow(delay), *TINY, "--out", str(out)], cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=logs[name].open("w"))
    deadline = time.monotonic() + 240
    try:
        while len(paths) < len(plan) and time.monotonic() < deadline:
            for path in records_in(out):
                record = json.loads(path.read_text())
                name = next(n for n, (d, _) in plan.items() if record["config"]["condenser_options"]["delay"] == d)
                if name not in paths and record["orders"]:
                    procs[name].send_signal(plan[name][1])
                    paths[name] = path
            for name, proc in procs.items():
                if name not in paths and proc.poll() is not None:
                    pytest.fail(f"{name} ended before its signal:\n{logs[name].read_text()[-2000:]}")
            time.sleep(0.05)
        codes = {name: proc.wait(timeout=240) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    assert len(paths) == len(plan), "no step was written in time"
    return SimpleNamespace(paths=paths, codes=codes, stderr={n: f.read_text() for n, f in logs.items()}, out=out)


# -- killed, interrupted, concurrent, repeated -------------------------------------------------------------
@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_numbers(processes, reference, cli):
    path = processes.paths["killed"]
    assert processes.codes["killed"] == -signal.SIGKILL
    record = load_record(path)
    done = sum(len(o["steps"]) for o in record["orders"])
    assert not record["complete"] and 1 <= done < 10
    assert outcome(record) == outcome(reference[1])[:done]  # computed in another process, same numbers
    code, _, err = cli("resume", str(path))
    assert code == 0, err
    resumed = load_record(path)
    assert resumed["complete"] and all(o["complete"] for o in resumed["orders"])
    assert outcome(resumed) == outcome(reference[1])
    for a, b in zip(memories(path, resumed), memories(*reference)):
        assert torch.equal(a, b)
    assert not list(path.with_suffix("").glob("checkpoint-*")), "checkpoints of complete orders are removed"


@pytest.mark.slow
def test_sigint_stops_with_130_and_the_resume_command(processes, reference, cli):
    path = processes.paths["interrupted"]
    assert processes.codes["interrupted"] == 130, processes.stderr["interrupted"]
    assert f"to resume: clbench resume {path}" in processes.stderr["interrupted"]
    assert "interrupted by SIGINT" in processes.stderr["interrupted"]
    record = load_record(path)
    assert not record["complete"] and record["orders"]
    code, _, err = cli("resume", str(path))
    assert code == 0, err
    assert outcome(load_record(path)) == outcome(reference[1])


@pytest.mark.slow
def test_two_runs_into_one_folder_at_once_both_survive(processes):
    paths = records_in(processes.out)
    assert sorted(paths) == sorted(processes.paths.values())
    assert len({load_record(p)["run_id"] for p in paths}) == 2
    assert len({p.with_suffix("") for p in paths}) == 2  # snapshots and checkpoints in separate folders


def test_same_seed_same_numbers_other_seed_other_memory(reference, tmp_path):
    from clbench.protocol.continual import run

    config = {**TINY_CONFIG, "orders": 1}
    path, record = run(RunConfig(condenser="tests.faulty_condensers:Slow", opt={"delay": "0"}, out=str(tmp_path),
                                 **config))
    assert outcome(record) == outcome(reference[1])[:5]
    other_path, other = run(RunConfig(condenser="tests.faulty_condensers:Slow", opt={"delay": "0"}, seed=1,
                                      out=str(tmp_path), **config))
    assert not torch.equal(memories(path, record)[0], memories(other_path, other)[0])


@pytest.mark.parametrize("condenser", ["random", "herding"])
def test_resume_after_a_stop_mid_order_with_a_shrinking_total_budget(condenser, tmp_path):
    """A total budget shrinks earlier classes with the condenser's rule at every step: the resumed memory must
    shrink exactly as the uninterrupted one did."""
    from clbench.core.errors import Interrupted
    from clbench.protocol.continual import Reporter, resume, run
    from clbench.protocol.signals import StopRequested

    class StopAfterThreeSteps(Reporter):
        done = 0

        def step_finished(self, order, step):
            self.done += 1
            if self.done == 3:
                raise StopRequested()

    config = {**TINY_CONFIG, "memory": "30"}
    _, whole = run(RunConfig(condenser=condenser, out=str(tmp_path / "whole"), **config))
    with pytest.raises(Interrupted) as info:
        run(RunConfig(condenser=condenser, out=str(tmp_path / "stopped"), **config), StopAfterThreeSteps())
    assert info.value.steps_done == 3 and info.value.exit_code == 130
    torch.set_num_threads(2)  # another machine: the record's thread count is kept (CPU numbers depend on it)
    try:
        path, resumed = resume(info.value.record_path)
    finally:
        torch.set_num_threads(1)
    assert [s["memory_size"] for s in resumed["orders"][0]["steps"]] == [30, 28, 30, 24, 30]
    assert outcome(resumed) == outcome(whole)
    assert resumed["resumes"][0]["steps_done"] == 3 and resumed["resumes"][0]["threads_per_order"] == 1


# -- resuming what cannot be resumed --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    """A run stopped by a non-finite training loss at order 0, step 1: an incomplete record with a checkpoint."""
    from clbench.core.errors import NonFiniteError
    from clbench.protocol.continual import run

    out = tmp_path_factory.mktemp("diverged")
    with pytest.raises(NonFiniteError) as info:
        run(RunConfig(condenser="tests.faulty_condensers:Diverges", opt={"at_call": "1"}, out=str(out),
                      **TINY_CONFIG))
    return records_in(out)[0], str(info.value)


def copy_run(path: Path, folder: Path) -> Path:
    shutil.copy(path, folder / path.name)
    shutil.copytree(path.with_suffix(""), folder / path.stem)
    return folder / path.name


def test_non_finite_training_loss_names_condenser_order_step_epoch(diverged):
    path, message = diverged
    for part in ("'diverges'", "order 0, step 1", "network 1 of 1", "epoch 2", "completed steps saved: 1"):
        assert part in message
    record = load_record(path)
    assert not record["complete"] and record["error"]["type"] == "NonFiniteError"
    assert [len(o["steps"]) for o in record["orders"]] == [1]
    assert path.with_suffix("").joinpath("checkpoint-order0.pt").is_file()


def test_damaged_record_is_a_clear_error(cli, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "clbench.run", "schema_version": 1, "run_id": "x", "con')
    code, _, err = cli("run", *TINY, "--resume", str(bad))
    assert code == 2 and "not valid JSON" in err and "damaged" in err
    bad.write_text(json.dumps({"schema": "clbench.run", "schema_version": 1, "run_id": "x", "config": {},
                               "summary": {}}))
    code, _, err = cli("resume", str(bad))
    assert code == 2 and "damaged: the field 'orders' is missing" in err
    bad.write_text(json.dumps({"schema": "clbench.run", "schema_version": 9}))
    code, _, err = cli("resume", str(bad))
    assert code == 2 and "schema version 9" in err


def test_damaged_checkpoint_is_a_clear_error(diverged, cli, tmp_path):
    path = copy_run(diverged[0], tmp_path)
    checkpoint = path.with_suffix("") / "checkpoint-order0.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    code, _, err = cli("resume", str(path))
    assert code == 2 and f"checkpoint {checkpoint} is damaged" in err and "delete it" in err


def test_a_checkpoint_holding_python_objects_is_one_line_not_torchs_advice(diverged, cli, tmp_path):
    """torch's refusal under weights_only=True is a dozen lines with terminal escapes advising weights_only=False;
    the user gets one line saying what the file holds (and clbench never follows that advice)."""
    import argparse

    path = copy_run(diverged[0], tmp_path)
    checkpoint = path.with_suffix("") / "checkpoint-order0.pt"
    torch.save({"format": 1, "payload": argparse.Namespace(a=1)}, checkpoint)
    code, _, err = cli("resume", str(path))
    assert code == 2 and "Python objects besides tensors" in err and "delete it" in err
    assert "weights_only" not in err and "\x1b" not in err and len(err.strip().splitlines()) == 1


def test_record_of_another_configuration_is_refused_naming_the_keys(diverged, cli, tmp_path):
    path = copy_run(diverged[0], tmp_path)
    code, _, err = cli("run", "--condenser", "tests.faulty_condensers:Diverges", "--opt", "at_call=1", *TINY,
                       "--seed", "3", "--train", "epochs=3", "--resume", str(path))
    assert code == 2, err
    assert "another configuration" in err and "seed: 0 in the record, 3 now" in err
    assert "train.epochs: 2 in the record, 3 now" in err and "memory" not in err.split("differences:")[1]


def test_resuming_a_complete_record_says_so(reference, cli):
    code, _, err = cli("resume", str(reference[0]))
    assert code == 0 and "already complete" in err


# -- faulty plugins, output folders ---------------------------------------------------------------------------
@pytest.mark.parametrize("plugin, what", [
    ("Raises", "raised RuntimeError: plugin bug on purpose"),
    ("WrongShape", "returned images of shape (10, 1, 9, 8); expected (N, 1, 8, 8)"),
    ("WrongCount", "wrong number of images per class (expected 5)"),
    ("StrayLabels", "labels of classes it was not given"),
    ("NanImages", "non-finite images"),
    ("NanLoss", "loss is not finite at iteration 7"),
])
def test_faulty_plugin_is_named_with_what_was_wrong(plugin, what, cli, tmp_path):
    code, _, err = cli("run", "--condenser", f"tests.faulty_condensers:{plugin}", "--opt", "at_call=1", *TINY,
                       "--out", str(tmp_path))
    assert code == 1, err
    name = {"WrongShape": "wrong-shape", "WrongCount": "wrong-count", "StrayLabels": "stray-labels",
            "NanImages": "nan-images", "NanLoss": "nan-loss"}.get(plugin, plugin.lower())
    assert f"'{name}'" in err and "order 0, step 1 (classes [4, 9])" in err and what in err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: order 0, step 1")
    record = load_record(records_in(tmp_path)[0])
    assert not record["complete"] and [len(o["steps"]) for o in record["orders"]] == [1]


def test_out_below_a_file_is_refused_before_the_run(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = cli("run", *TINY, "--out", str(blocker / "sub"))
    assert code == 2 and f"a file, not a folder ({blocker} is)" in err and "Traceback" not in err


def test_too_little_free_space_is_refused_before_the_run(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
    code, _, err = cli("run", *TINY, "--out", str(tmp_path))
    assert code == 2 and "MiB free" in err
    assert not records_in(tmp_path)
    # the folders a refused run would have made are not left behind, empty
    code, _, err = cli("run", *TINY, "--out", str(tmp_path / "new" / "deeper"))
    assert code == 2 and "MiB free" in err and not (tmp_path / "new").exists()


def test_disk_full_mid_run_leaves_an_incomplete_resumable_record(cli, tmp_path, monkeypatch):
    import clbench.protocol.checkpoint

    real, calls = clbench.protocol.checkpoint.atomic_torch_save, []

    def fill_up(path, obj):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, obj)

    monkeypatch.setattr(clbench.protocol.checkpoint, "atomic_torch_save", fill_up)
    code, _, err = cli("run", "--condenser", "random", *TINY, "--out", str(tmp_path))
    assert code == 1 and "No space left on device" in err and "clbench resume" in err
    path = records_in(tmp_path)[0]
    record = load_record(path)
    assert not record["complete"] and [len(o["steps"]) for o in record["orders"]] == [1]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    monkeypatch.setattr(clbench.protocol.checkpoint, "atomic_torch_save", real)
    code, _, err = cli("resume", str(path), "--jobs", "1")
    assert code == 0, err
    assert load_record(path)["complete"]


# -- signals, unit level ----------------------------------------------------------------------------------------
def test_first_signal_requests_a_stop_second_exits_at_once(monkeypatch):
    from clbench.protocol.signals import StopRequested, StopSignals

    exits, killed, notes = [], [], []
    monkeypatch.setattr(os, "_exit", lambda code: exits.append(code))
    stop = StopSignals(notes.append)
    stop.children = [SimpleNamespace(kill=lambda: killed.append(True))]
    stop.check()  # nothing asked yet
    stop._handle(signal.SIGTERM, None)
    assert notes == ["SIGTERM"] and not exits
    with pytest.raises(StopRequested):
        stop.check()
    stop._handle(signal.SIGINT, None)
    assert exits == [130] and killed == [True]


def test_interrupted_exit_code_and_resume_command(tmp_path):
    from clbench.core.errors import Interrupted

    exc = Interrupted(tmp_path / "r.json", "SIGTERM", 3, 10, jobs=2)
    assert exc.exit_code == 143 and exc.resume_command == f"clbench resume {tmp_path / 'r.json'} --jobs 2"
    assert "3 of 10 steps are saved" in str(exc)


def test_a_record_being_written_by_a_live_process_is_not_resumed(diverged, cli, tmp_path):
    import socket

    path = copy_run(diverged[0], tmp_path)
    lock = path.with_suffix("") / "running.lock"
    lock.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))  # a live process
    code, _, err = cli("resume", str(path))
    assert code == 2 and f"being written by process {os.getppid()}" in err
    lock.write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname()}))  # no such process
    code, _, err = cli("resume", str(path))
    # resumed from step 1; the plugin counts its own calls, so it now diverges one step later
    assert code == 1 and "order 0, step 2" in err and "non-finite" in err
    assert not lock.exists()


def test_out_of_memory_in_training_is_a_clear_error_after_saving(cli, tmp_path, monkeypatch):
    import clbench.training.batched as strategy  # the strategy trains through train_networks

    real, calls = strategy.train_network, []

    def runs_out(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(strategy, "train_network", runs_out)
    code, _, err = cli("run", "--condenser", "random", *TINY, "--out", str(tmp_path))
    last = err.strip().splitlines()[-1]
    assert code == 1 and last.startswith("error: order 0, step 2") and "out of memory on cpu" in last
    assert "then resume" in last and "Traceback" not in err
    assert [len(o["steps"]) for o in load_record(records_in(tmp_path)[0])["orders"]] == [2]


def test_out_of_memory_while_condensing_is_the_out_of_memory_error_not_a_plugin_bug(cli, tmp_path):
    code, _, err = cli("run", "--condenser", "tests.faulty_condensers:OutOfMemory", "--opt", "at_call=1", *TINY,
                       "--out", str(tmp_path))
    last = err.strip().splitlines()[-1]
    assert code == 1 and last.startswith("error: order 0, step 1") and "out of memory on cpu" in last
    assert "then resume" in last and "raised" not in err and "Traceback" not in err
    assert [len(o["steps"]) for o in load_record(records_in(tmp_path)[0])["orders"]] == [1]


def test_a_condenser_exiting_with_success_is_its_failure_and_a_failing_exit_passes_through():
    """sys.exit(0) inside condense would end a run "successfully" with an incomplete record; a failing exit
    (submitit's requeue at a Slurm time limit exits -1 from its signal handler) must still end the process."""
    import pytest

    from clbench.core.errors import CondenserError
    from clbench.memory.checks import run_condenser
    from clbench.testing import make_task

    class Exits:
        name = "exits"

        def __init__(self, code):
            self.code = code

        def condense(self, task):
            raise SystemExit(self.code)

    task = make_task(classes=(0, 1), ipc=1, per_class=4, width=8)
    for code in (0, None):
        with pytest.raises(CondenserError, match=r"'exits' called sys.exit"):
            run_condenser(Exits(code), task)
    with pytest.raises(SystemExit) as exited:
        run_condenser(Exits(-1), task)
    assert exited.value.code == -1
