"""The static benchmark: every evaluation network trains through its code path; `condense` writes a sound record."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clbench.nets.augment import make_augment
from clbench.protocol import static
from clbench.records.record import load_record
from clbench.report.rows import static_rows
from clbench.training.recipe import TrainRecipe

EVAL_NETS = ("convnet", "alexnet", "vgg11", "resnet18")


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", EVAL_NETS)
def test_each_eval_net_trains_a_step_and_tests(monkeypatch, name: str, channels: int, size: int) -> None:
    seen = {}
    real_train = static.train_network

    def spy(net, images, labels, recipe, augment, generator, progress=None):
        before = net.classifier.weight.detach().clone()
        loss = real_train(net, images, labels, recipe, augment, generator, progress)
        seen["changed"] = not torch.equal(before, net.classifier.weight)
        seen["loss"] = loss
        return loss

    monkeypatch.setattr(static, "train_network", spy)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, channels, size, size, generator=gen)  # one image: one step costs least on a CPU
    y = torch.tensor([2])
    recipe = TrainRecipe(epochs=1, batch_size=1)
    acc, per_class = static.train_and_test(name, x, y, x, y, recipe, make_augment(recipe.dsa_strategy), 3,
                                           network_seed=1, train_seed=2)
    assert seen["changed"] and np.isfinite(seen["loss"])
    assert acc in (0.0, 100.0) and set(per_class) == {2}


def test_parse_eval_nets() -> None:
    assert static.parse_eval_nets(" convnet, alexnet ,convnet") == ("convnet", "alexnet")
    assert static.parse_eval_nets(["vgg11,resnet18", "alexnet_bn"]) == ("vgg11", "resnet18", "alexnet_bn")
    with pytest.raises(static.UsageError, match="--eval-nets: unknown network 'alexnett'. Did you mean alexnet"):
        static.parse_eval_nets("convnet,alexnett")
    with pytest.raises(static.UsageError, match="at least one"):
        static.parse_eval_nets(" , ")


TINY = ["--dataset", "digits", "--ipc", "2", "--eval-nets", "convnet,alexnet", "--evals", "1",
        "--train", "epochs=2", "--device", "cpu", "--profile", "quick"]


@pytest.mark.slow
def test_condense_writes_a_sound_record(cli, tmp_path) -> None:
    code, out, err = cli("condense", "--condenser", "random", "--sets", "2", *TINY, "--out", str(tmp_path))
    assert code == 0, err
    (path,) = tmp_path.glob("*.json")
    record = json.loads(path.read_text())
    assert load_record(path)["run_id"] == record["run_id"]  # a valid run record for readers
    assert record["schema"] == "clbench.run" and record["schema_version"] == 1
    assert record["kind"] == "static" and record["complete"] and record["orders"] == []
    c = record["config"]
    assert (c["condenser"], c["dataset"], c["ipc"], c["sets"], c["evals"]) == ("random", "digits", 2, [0, 1], 1)
    assert c["eval_nets"] == ["convnet", "alexnet"] and c["network"] == "convnet" and c["profile"] == "quick"
    assert c["train"]["epochs"] == 2 and c["seed"] == 0

    from clbench.data.datasets import load_dataset

    train_x, _ = load_dataset("digits").normalised("train")
    pictures = []
    for index, entry in enumerate(record["sets"]):
        assert entry["set"] == index and entry["complete"] and entry["size"] == 20
        assert set(entry["accuracies"]) == {"convnet", "alexnet"}
        for name, accs in entry["accuracies"].items():
            assert len(accs) == 1 and 0.0 <= accs[0] <= 100.0
            assert entry["accuracy_mean"][name] == pytest.approx(accs[0])
            assert set(entry["class_accuracy"][name]) == {str(k) for k in range(10)}
            assert entry["train_seconds"][name] >= 0
        assert entry["condense_seconds"] >= 0
        state = torch.load(tmp_path / entry["synthetic_file"], weights_only=True)
        assert state["images"].shape == (20, 1, 8, 8)
        assert torch.bincount(state["labels"], minlength=10).tolist() == [2] * 10
        # random selection: every synthetic image is a training image
        gaps = torch.cdist(state["images"].flatten(1).double(), train_x.flatten(1).double(),
                           compute_mode="donot_use_mm_for_euclid_dist")
        assert (gaps.min(1).values < 1e-6).all()
        assert (tmp_path / entry["picture_file"]).read_bytes()[:4] == b"\x89PNG"
        pictures.append(state["images"])
    assert not torch.equal(pictures[0], pictures[1])  # each set is condensed with its own seed

    summary = record["summary"]
    assert summary["sets_complete"] == 2
    for name in ("convnet", "alexnet"):
        values = [s["accuracies"][name][0] for s in record["sets"]]
        assert summary["accuracy"][name] == {"mean": pytest.approx(np.mean(values)),
                                             "std": pytest.approx(np.std(values)), "n": 2}

    rows = static_rows([record, {"kind": "continual", "config": {}}])
    assert [r["network"] for r in rows] == ["alexnet", "convnet"]
    assert all(r["n"] == 2 and r["sets"] == 2 and r["ipc"] == 2 and r["condenser"] == "random" for r in rows)
    assert rows[1]["mean"] == pytest.approx(summary["accuracy"]["convnet"]["mean"])

    code, out, err = cli("compare", str(tmp_path))
    assert code == 0, err

    # A set is reproduced on its own from its index (so sets may be split over machines).
    again = tmp_path / "again"
    code, _, err = cli("condense", "--condenser", "random", "--sets", "1", "--first-set", "1", *TINY,
                       "--out", str(again))
    assert code == 0, err
    (path2,) = again.glob("*.json")
    record2 = json.loads(path2.read_text())
    assert record2["config"]["sets"] == [1]
    assert torch.equal(torch.load(again / record2["sets"][0]["synthetic_file"], weights_only=True)["images"],
                       pictures[1])
    assert record2["sets"][0]["accuracies"] == record["sets"][1]["accuracies"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--eval-nets", "convnet,alexnett"], "unknown network 'alexnett'"),
        (["--ipc", "1000"], "use at most"),
        (["--ipc", "0"], "--ipc 0"),
        (["--sets", "0"], "--sets 0"),
        (["--evals", "0"], "--evals 0"),
        (["--first-set", "-1"], "--first-set -1"),
        (["--eval-nets", "vgg11"], "digits (8x8 px)"),
        (["--network", "nonet"], "--network: unknown network 'nonet'"),
        (["--condenser", "hearding"], "Did you mean herding"),
        (["--opt", "nope=1", "--condenser", "herding"], "unknown option 'nope'"),
        (["--train", "epochs=many"], "expected int"),
        (["--profile", "fast"], "--profile 'fast'"),
    ],
)
def test_condense_bad_input_is_one_line_exit_2(cli, tmp_path, args, message) -> None:
    code, out, err = cli("condense", "--dataset", "digits", "--device", "cpu", *args, "--out", str(tmp_path))
    assert code == 2, (out, err)
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.json"))


def test_static_rows_never_pool_records_whose_options_differ():
    def record(run_id, options, accuracies):
        return {"kind": "static", "run_id": run_id, "complete": True,
                "config": {"dataset": "d", "condenser": "ddm", "ipc": 1, "profile": "quick", "eval_nets": ["convnet"],
                           "network": "convnet", "width": 32, "train": {"epochs": 5},
                           "condenser_options": options},
                "sets": [{"set": i, "complete": True, "accuracies": {"convnet": [a]}, "condense_seconds": 1.0,
                          "train_seconds": {"convnet": 1.0}} for i, a in enumerate(accuracies)]}

    full = {"mm": True, "cm": True, "icd": True}
    rows = static_rows([record("a", full, [60.0, 62.0]), record("b", {**full, "cm": False}, [50.0]),
                        record("c", full, [64.0])])
    by_name = {r["condenser"]: r for r in rows}
    assert set(by_name) == {"ddm [opt.cm=True]", "ddm [opt.cm=False]"}
    assert by_name["ddm [opt.cm=True]"]["mean"] == pytest.approx(62.0) and by_name["ddm [opt.cm=True]"]["n"] == 3
    assert by_name["ddm [opt.cm=False]"]["mean"] == 50.0 and by_name["ddm [opt.cm=False]"]["records"] == 1
    # one variant only: the plain name
    assert [r["condenser"] for r in static_rows([record("a", full, [60.0])])] == ["ddm"]


def test_a_variant_keeps_one_name_across_ipc_columns():
    def record(run_id, ipc, options):
        return {"kind": "static", "run_id": run_id, "complete": True,
                "config": {"dataset": "d", "condenser": "ddm", "ipc": ipc, "profile": "quick",
                           "eval_nets": ["convnet"], "network": "convnet", "width": 32, "train": {},
                           "condenser_options": options},
                "sets": [{"set": 0, "complete": True, "accuracies": {"convnet": [50.0]}, "condense_seconds": 1.0,
                          "train_seconds": {"convnet": 1.0}}]}

    full = {"mm": True, "cm": True, "icd": True}
    rows = static_rows([record("a", 1, full), record("b", 1, {**full, "cm": False}),
                        record("c", 10, full), record("d", 10, {**full, "cm": False}),
                        record("e", 10, {**full, "mm": False})])
    names = {(r["ipc"], r["condenser"]) for r in rows}
    assert names == {(1, "ddm [opt.cm=True opt.mm=True]"), (1, "ddm [opt.cm=False opt.mm=True]"),
                     (10, "ddm [opt.cm=True opt.mm=True]"), (10, "ddm [opt.cm=False opt.mm=True]"),
                     (10, "ddm [opt.cm=True opt.mm=False]")}


def test_out_of_memory_while_condensing_is_one_line_saying_what_to_lower(cli, tmp_path) -> None:
    code, _, err = cli("condense", "--condenser", "tests.faulty_condensers:OutOfMemory", *TINY, "--sets", "2",
                       "--first-set", "3", "--out", str(tmp_path))
    last = err.strip().splitlines()[-1]  # the lines above it are the progress display
    assert code == 1 and "Traceback" not in err and "raised" not in err
    assert last.startswith("error: set 3: out of memory on cpu (CUDA out of memory")
    record = next(tmp_path.glob("*.json"))  # the completed sets and where they are: what `clbench resume` continues
    assert last.endswith(f"lower --ipc or --width, then resume (completed sets saved: 0, in {record})")


def test_disk_full_while_saving_a_set_is_one_line_saying_how_to_continue(cli, tmp_path, monkeypatch) -> None:
    import errno
    import os

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(static, "save_synthetic", full)
    code, _, err = cli("condense", "--condenser", "random", *TINY, "--sets", "2", "--out", str(tmp_path))
    last = err.strip().splitlines()[-1]  # the lines above it are the progress display
    assert code == 1 and "Traceback" not in err
    assert last.startswith("error: cannot write beside") and "No space left on device" in last
    assert last.endswith("Free space, then: clbench resume " + str(next(tmp_path.glob("*.json"))))
    [record] = [load_record(p) for p in tmp_path.glob("*.json")]
    assert not record["complete"] and record["sets"] == []


# -- the static protocol on the shared machinery: --config, stops, resume ----------------------------------------
STATIC_TINY = dict(condenser="herding", dataset="digits", ipc=2, sets=3, evals=1, profile="quick", device="cpu",
                   width=8, train={"epochs": 3})


def _accuracies(record) -> list:
    return [(s["set"], s["accuracies"], s["class_accuracy"]) for s in record["sets"]]


def test_a_stopped_static_run_resumes_to_the_uninterrupted_record(tmp_path) -> None:
    from clbench.core.errors import Interrupted
    from clbench.protocol.signals import StopRequested
    from clbench.protocol.static import StaticConfig, StaticReporter, resume, run_static

    class StopAfterFirstSet(StaticReporter):
        def set_finished(self, entry):
            raise StopRequested()

    _, whole = run_static(StaticConfig(out=str(tmp_path / "whole"), **STATIC_TINY))
    with pytest.raises(Interrupted) as info:
        run_static(StaticConfig(out=str(tmp_path / "stopped"), **STATIC_TINY), StopAfterFirstSet())
    assert "1 of 3 sets are saved" in str(info.value) and info.value.exit_code == 130
    stopped = load_record(info.value.record_path)
    assert not stopped["complete"] and [s["set"] for s in stopped["sets"]] == [0]
    path, resumed = resume(info.value.record_path)
    assert path == info.value.record_path and resumed["complete"] and resumed["resumes"][0]["sets_done"] == 1
    assert _accuracies(resumed) == _accuracies(whole)
    assert resumed["summary"]["accuracy"] == whole["summary"]["accuracy"]


def test_condense_reads_a_config_file_and_resume_refuses_another_configuration(cli, tmp_path) -> None:
    config = tmp_path / "static.toml"
    config.write_text('condenser = "random"\ndataset = "digits"\nipc = 2\nsets = 1\nevals = 1\nwidth = 8\n'
                      'profile = "quick"\ndevice = "cpu"\neval_nets = ["convnet"]\n[train]\nepochs = 2\n')
    code, out, err = cli("condense", "--config", str(config), "--ipc", "3", "--out", str(tmp_path / "r"))
    assert code == 0, err
    [path] = (tmp_path / "r").glob("*.json")
    record = load_record(path)
    assert (record["config"]["ipc"], record["config"]["train"]["epochs"], record["sets"][0]["size"]) == (3, 2, 30)
    assert record["run_config"]["ipc"] == 3  # what `clbench resume` continues with
    code, _, err = cli("resume", str(path))
    assert code == 0 and "already complete" in err
    killed = {**record, "complete": False, "sets": []}  # as a run killed during its first set leaves it
    path.write_text(json.dumps(killed))
    code, _, err = cli("condense", "--config", str(config), "--ipc", "2", "--resume", str(path))
    assert code == 2 and "ipc: 3 in the record, 2 now" in err
    code, _, err = cli("condense", "--config", str(config), "--ipc", "3", "--resume", str(path))
    assert code == 0 and load_record(path)["complete"] and _accuracies(load_record(path)) == _accuracies(record)
    bad = tmp_path / "bad.toml"
    bad.write_text('ipcs = 3\n')
    code, _, err = cli("condense", "--config", str(bad))
    assert code == 2 and "unknown keys ipcs" in err and "Traceback" not in err
