"""`clbench run --learner replay`: one network trained continually by Avalanche's Naive + ReplayPlugin with the
condensed storage policy; recorded, compared and swept apart from the default `retrain` learner."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from tests.conftest import run_parallel_and_sequential

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "digits", "--steps", "2", "--orders", "2", "--memory", "3ipc", "--width", "8",
        "--train", "epochs=1", "--device", "cpu", "--profile", "quick", "--condenser", "random"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--learner", "finetune"], "--learner: unknown protocol 'finetune'. Known: joint, replay, retrain"),
        (["--learner", "replay", "--nets", "3"], "--nets 3: the replay learner trains one network"),
        (["--learner", "replay", "--train", "micro_batch=16"], "micro_batch=16: applies to the retrain learner"),
        (["--learner", "replay", "--train", "compile=true"], "compile=True: applies to the retrain learner"),
    ],
)
def test_bad_learner_input_is_one_line_exit_2_and_writes_nothing(cli, args, message, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = cli("run", *TINY, *args, "--out", str(out))
    assert code == 2, (stdout, err)
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def _reference_record() -> dict:
    path = sorted((ROOT / "results" / "reference").glob("fashion-mnist-random-*.json"))[0]
    return json.loads(path.read_text())


def test_compare_never_pools_learners_and_old_records_are_retrain():
    from clbench.report.rows import summary_rows

    old = _reference_record()
    assert "learner" not in old["config"]  # written before learners existed
    replay = copy.deepcopy(old)
    replay["config"]["learner"] = "replay"
    replay["run_id"] += "-replay"
    rows = summary_rows([old, replay])
    assert sorted(r["learner"] for r in rows) == ["replay", "retrain"]
    assert all(r["orders"] == rows[0]["orders"] for r in rows)  # each row its own orders, not pooled


def test_old_records_resume_as_retrain():
    from clbench.protocol.checkpoint import config_differences

    recorded = {"condenser": "dm", "memory": "20ipc"}
    assert config_differences(recorded, {**recorded, "learner": "retrain"}) == []
    assert config_differences(recorded, {**recorded, "learner": "replay"})


def test_sweep_takes_learner_as_a_grid_axis(tmp_path):
    from clbench.sweep.spec import parse_spec

    spec = parse_spec({"condenser": "random", "dataset": "digits", "steps": 2, "orders": 1,
                       "learner": ["retrain", "replay"]}, folder=tmp_path)
    assert sorted(run["learner"] for run in spec.runs) == ["replay", "retrain"]


TINY_CONFIG = dict(condenser="random", dataset="digits", steps=2, orders=2, memory="3ipc", width=8,
                   train={"epochs": 1}, device="cpu", profile="quick", learner="replay")


@pytest.fixture(scope="module")
def replay_runs(tmp_path_factory):
    """The same tiny replay run with --jobs 2 and sequentially, one thread per order in both (as test_jobs)."""
    (parallel, _), (sequential, _) = run_parallel_and_sequential(tmp_path_factory.mktemp("replay"), **TINY_CONFIG)
    return sequential, parallel


def _accuracies(path: Path) -> list[list[float]]:
    record = json.loads(path.read_text())
    return [[s["accuracies"] for s in o["steps"]] for o in record["orders"]]


@pytest.mark.slow
def test_replay_record_names_the_learner_and_holds_a_growing_memory(replay_runs):
    record = json.loads(replay_runs[0].read_text())
    assert record["complete"] and record["config"]["learner"] == "replay"
    assert record["config"]["networks_per_step"] == 1
    for order in record["orders"]:
        assert [s["memory_size"] for s in order["steps"]] == [15, 30]  # 3 ipc x 5 then 10 classes
        assert all(len(s["accuracies"]) == 1 for s in order["steps"])
        assert len(order["steps"][-1]["class_accuracy"]) == 10  # tested on every class seen
        assert (replay_runs[0].parent / order["memory_file"]).is_file()


@pytest.mark.slow
def test_replay_runs_with_jobs(replay_runs):
    # Bit-identical to the sequential run. A mismatch once seen here (52.2 against 20.2) was not a numerical
    # effect: the spawned workers imported clbench/nets/networks.py from disk while it was being edited (the
    # ConvNet depth change of b855eb5), and 20.2 and 52.2 are exactly the old and the new code's accuracies.
    def shape(path: Path) -> list:
        record = json.loads(path.read_text())
        return [(o["order"], s["classes"], s["memory_size"]) for o in record["orders"] for s in o["steps"]]

    assert shape(replay_runs[0]) == shape(replay_runs[1])
    assert _accuracies(replay_runs[0]) == _accuracies(replay_runs[1])


@pytest.mark.slow
def test_a_replay_order_without_its_checkpoint_restarts_from_its_first_step(replay_runs, cli, tmp_path):
    # a record cut after order 1's first step whose checkpoint is gone (e.g. written by an older clbench)
    source = replay_runs[0]
    record = json.loads(source.read_text())
    record["complete"] = False
    record["orders"][1]["complete"] = False
    record["orders"][1]["steps"] = record["orders"][1]["steps"][:1]
    del record["orders"][1]["memory_file"]
    path = tmp_path / source.name
    path.write_text(json.dumps(record))
    code, out, err = cli("resume", str(path))
    assert code == 0, err
    resumed = json.loads(path.read_text())
    assert resumed["complete"] and len(resumed["orders"][1]["steps"]) == 2
    assert _accuracies(path) == _accuracies(source)


# -- minibatches gathered from the tensors: Avalanche's batches, Avalanche's draws -----------------------------
def _loaders(uint8: bool = False):
    """Step 1 of a digits replay: Avalanche's ReplayDataLoader over the experience and a 3ipc memory, and the
    TaskBalancedDataLoader of step 0 (no memory yet); both as Naive + ReplayPlugin build them. With `uint8`, the
    real images as a run holds them (uint8, normalised per image by Avalanche's loader, per batch by ours)."""
    import warnings

    from avalanche.benchmarks.utils.data_loader import ReplayDataLoader, TaskBalancedDataLoader

    from clbench.data.datasets import load_dataset
    from clbench.protocol.replay import _tensor_stream
    from clbench.strategies.condensed_buffer import CondensedBuffer
    from clbench.strategies.condensed_rehearsal import RealData

    ds = load_dataset("digits")
    (train_x, train_y), (test_x, test_y) = ds.normalised("train"), ds.normalised("test")
    data = ds.resident("cpu") if uint8 else RealData(train_x, train_y, test_x, test_y, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stream = _tensor_stream(data, [3, 1, 4, 0, 5, 2, 8, 7, 6, 9], 2).train_stream
    buffer = CondensedBuffer("random", "3ipc", num_classes=10, width=8)
    buffer.add_experience(stream[0])
    first = stream[1].dataset.train()
    step0 = TaskBalancedDataLoader(stream[0].dataset.train(), oversample_small_groups=True, batch_size=16,
                                   shuffle=True, num_workers=0)
    step1 = ReplayDataLoader(first, buffer.buffer, batch_size=16, batch_size_mem=16, shuffle=True, num_workers=0)
    real = (data.train, train_y) if uint8 else (train_x, train_y)
    sources = {"sample_index": lambda: real, "memory_index": lambda: buffer.memory.tensors()}
    return [step0, step1], sources


def _epochs(loader, seed: int, epochs: int = 2) -> tuple[list, torch.Tensor]:
    """Every batch of `epochs` epochs from a seeded global generator, and the generator's state after them."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        batches = [[t.clone() for t in batch] for _ in range(epochs) for batch in loader]
        return batches, torch.get_rng_state()


@pytest.mark.parametrize("uint8", [False, True])
def test_gathered_batches_are_avalanches_batches_with_the_same_draws(uint8):
    from types import SimpleNamespace

    from clbench.protocol.tensor_batches import TensorBatches

    loaders, sources = _loaders(uint8)
    floats = [_epochs(loader, seed=5)[0] for loader in _loaders(False)[0]] if uint8 else None
    for n, loader in enumerate(loaders):
        expected, state = _epochs(loader, seed=5)
        if floats is not None:  # Avalanche's own loader over uint8 images: the float images, to the bit
            assert all(torch.equal(x, y) for a, b in zip(expected, floats[n]) for x, y in zip(a, b))
        TensorBatches(sources).before_training_exp(SimpleNamespace(dataloader=loader))
        got, state_after = _epochs(loader, seed=5)
        assert len(got) == len(expected) > 2
        for a, b in zip(got, expected):
            assert len(a) == len(b) == 3
            for x, y in zip(a, b):
                assert x.dtype == y.dtype and torch.equal(x, y)
        assert torch.equal(state, state_after)  # later draws (the next epoch, the next step) are unchanged
    assert any(len(set(b[1].tolist())) > 5 for b in expected)  # step 1 batches mix new classes and memory


def test_a_loader_over_other_datasets_keeps_avalanches_path():
    from types import SimpleNamespace

    from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset as tensors
    from avalanche.benchmarks.utils.data_loader import TaskBalancedDataLoader

    from clbench.protocol.tensor_batches import TensorBatches

    loader = TaskBalancedDataLoader(tensors(torch.zeros(8, 1, 2, 2), torch.arange(8)), batch_size=4)
    before = loader._make_pytorch_loader
    TensorBatches({"sample_index": lambda: (torch.zeros(8, 1, 2, 2), torch.arange(8))}).before_training_exp(
        SimpleNamespace(dataloader=loader))
    assert loader._make_pytorch_loader == before


# -- a killed replay run resumes at its next step with the uninterrupted numbers ------------------------------
KILL_CONFIG = dict(condenser="tests.faulty_condensers:Slow", dataset="digits", steps=5, orders=1, memory="3ipc",
                   width=8, train={"epochs": 2}, device="cpu", profile="quick", learner="replay")


@pytest.mark.slow
def test_sigkill_mid_replay_order_then_resume_gives_the_uninterrupted_numbers(tmp_path, cli):
    import os
    import signal
    import subprocess
    import sys
    import time

    from clbench.protocol.config import RunConfig
    from clbench.protocol.continual import run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference, whole = run(RunConfig(opt={"delay": "0"}, out=str(tmp_path / "whole"), **KILL_CONFIG))
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "killed"
    args = ["--condenser", KILL_CONFIG["condenser"], "--opt", "delay=1", "--dataset", "digits", "--steps", "5",
            "--orders", "1", "--memory", "3ipc", "--width", "8", "--train", "epochs=2", "--device", "cpu",
            "--profile", "quick", "--learner", "replay", "--log", "csv", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "clbench", "run", *args], cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, path = time.monotonic() + 240, None
    try:
        while path is None and time.monotonic() < deadline and proc.poll() is None:
            for candidate in out.glob("*.json"):
                if json.loads(candidate.read_text())["orders"]:
                    proc.send_signal(signal.SIGKILL)
                    path = candidate
            time.sleep(0.05)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert path is not None, proc.stderr.read().decode()[-2000:]
    done = len(json.loads(path.read_text())["orders"][0]["steps"])
    assert 1 <= done < 5
    assert list(path.with_suffix("").glob("checkpoint-order0.pt"))
    code, _, err = cli("resume", str(path))
    assert code == 0, err
    resumed = json.loads(path.read_text())
    assert resumed["complete"]

    def outcome(record: dict) -> list:
        return [(s["step"], s["accuracies"], s["class_accuracy"], s["memory_size"])
                for o in record["orders"] for s in o["steps"]]

    assert outcome(resumed) == outcome(whole)
    memory = torch.load(path.parent / resumed["orders"][0]["memory_file"], weights_only=True)["images"]
    assert torch.equal(memory, torch.load(reference.parent / whole["orders"][0]["memory_file"],
                                          weights_only=True)["images"])
    # the log of the killed run continues: one row per step, none twice (a cut step's rows are dropped)
    steps_csv = (path.with_suffix("") / "logs" / "order0" / "steps.csv").read_text().splitlines()[1:]
    assert [float(r.split(",")[3]) for r in steps_csv] == [s["accuracies"][0] for s in resumed["orders"][0]["steps"]]
