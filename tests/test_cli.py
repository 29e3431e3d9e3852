"""The command line end to end on digits (tiny budgets), and each bad input's one-line error."""
from __future__ import annotations

import json

import pytest

TINY = ["--dataset", "digits", "--steps", "5", "--orders", "2", "--memory", "5ipc", "--nets", "1",
        "--train", "epochs=3", "--device", "cpu", "--profile", "quick"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--condenser", "hearding"], "unknown condenser 'hearding'. Did you mean herding"),
        (["run", "--dataset", "imagenet-9000"], "unknown dataset"),
        (["run", "--memory", "20images"], "--memory '20images' is not valid"),
        (["run", "--memory", "0"], "--memory '0' is not valid"),
        (["run", "--dataset", "digits", "--memory", "1000ipc"], "at most"),
        (["run", "--dataset", "digits", "--steps", "3"], "does not divide"),
        (["run", "--orders", "0"], "--orders 0"),
        (["run", "--data-dir", "/no/such/folder"], "--data-dir /no/such/folder"),
        (["run", "--dataset", "digits", "--condenser", "herding", "--opt", "nope=1"], "unknown option 'nope'"),
        (["run", "--dataset", "digits", "--condenser", "herding", "--opt", "embed_seed=x"], "expected int"),
        (["run", "--dataset", "digits", "--train", "epochs=many"], "expected int"),
        (["run", "--condenser", "no.such.module:Thing"], "cannot import module"),
    ],
)
def test_bad_input_is_one_line_exit_2(cli, args, message, tmp_path):
    code, out, err = cli(*args, "--out", str(tmp_path))
    assert code == 2, (out, err)
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_compare_without_records(cli, tmp_path):
    code, _, err = cli("compare", str(tmp_path))
    assert code == 2 and "no run records found" in err


@pytest.mark.slow
def test_run_writes_record_that_compare_reads(cli, tmp_path):
    code, out, err = cli("run", "--condenser", "herding", *TINY, "--out", str(tmp_path))
    assert code == 0, err
    records = list(tmp_path.glob("*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["complete"] and record["schema_version"] == 1
    assert record["config"]["condenser"] == "herding" and record["config"]["orders"] == [0, 1]
    for order in record["orders"]:
        assert [len(s["seen_classes"]) for s in order["steps"]] == [2, 4, 6, 8, 10]
        assert [s["memory_size"] for s in order["steps"]] == [10, 20, 30, 40, 50]
        memory = tmp_path / order["memory_file"]
        assert memory.is_file() and memory.with_suffix(".png").is_file()
    finals = [o["steps"][-1]["accuracies"][0] for o in record["orders"]]
    assert record["summary"]["final_accuracy_mean"] == pytest.approx(sum(finals) / 2)

    (tmp_path / "broken.json").write_text("{not json")
    code, out, err = cli("compare", str(tmp_path), "--format", "csv")
    assert code == 0, err
    assert "skipped" in err and "broken.json" in err
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1 and rows[0]["condenser"] == "herding"
    assert float(rows[0]["final_accuracy_mean"]) == pytest.approx(record["summary"]["final_accuracy_mean"])


@pytest.mark.slow
def test_memory_snapshot_loads_with_weights_only(cli, tmp_path):
    import torch

    code, _, err = cli("run", "--condenser", "random", *TINY, "--orders", "1", "--out", str(tmp_path))
    assert code == 0, err
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    state = torch.load(tmp_path / record["orders"][0]["memory_file"], weights_only=True)
    assert state["images"].shape == (50, 1, 8, 8) and sorted(state["labels"].unique().tolist()) == list(range(10))


def test_ctrl_c_before_the_run_starts_exits_130(cli, monkeypatch, tmp_path):
    import clbench.protocol.continual

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(clbench.protocol.continual, "prepare", interrupted)
    code, _, err = cli("run", "--dataset", "digits", "--out", str(tmp_path))
    assert code == 130 and "interrupted" in err and "Traceback" not in err


def test_training_without_dsa_leaves_the_condensers_augmentation_on(cli, tmp_path):
    # `--train dsa=false` is the evaluation recipe's switch; condensers keep their Siamese DSA (their own option)
    code, _, err = cli("run", "--condenser", "tests.faulty_condensers:SeesAugment", *TINY, "--orders", "1",
                       "--steps", "2", "--train", "dsa=false", "--out", str(tmp_path))
    assert code == 0, err
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    facts = record["orders"][0]["steps"][0]["condenser_facts"]
    assert facts == {"augment": "DSA", "strategy": "color_crop_cutout_flip_scale_rotate"}
    assert record["config"]["train"]["dsa"] is False


def _commands(group, path=()):
    """Every (command path, click command) below the group, the group's own subgroups included."""
    import click

    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_help_shows_every_bracket_of_every_help_text(cli, monkeypatch):
    """The help renderer reads [..] as markup and silently drops it ('[default: random]', '[opt]' vanished from
    `run --help`); every help text's literal brackets must reach the screen."""
    import re

    import typer

    from clbench.cli import app

    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping inside the option table
    checked = 0
    for path, command in _commands(typer.main.get_command(app)):
        code, out, _ = cli(*path, "--help")
        assert code == 0, path
        for param in command.params:
            text = (getattr(param, "help", None) or "").replace("\\[", "[")
            for bracketed in re.findall(r"\[[^\]]*\]", text):
                assert bracketed in out, (path, param.name, bracketed)
                checked += 1
    assert checked >= 3  # run's --config and --log, at least, have brackets


def test_resume_of_a_static_record_is_the_static_protocols(cli, tmp_path):
    """`clbench resume` on a `clbench condense` record: complete, so nothing to do; unfinished and made before
    records kept their options, one line saying how to continue it."""
    import json
    import shutil
    from pathlib import Path

    static = sorted(Path(__file__).resolve().parents[1].glob("results/reference-static/*.json"))[0]
    record = tmp_path / static.name
    shutil.copy(static, record)
    code, out, err = cli("resume", str(record))
    assert code == 0 and "already complete" in err
    record.write_text(json.dumps({**json.loads(record.read_text()), "complete": False}))
    code, out, err = cli("resume", str(record))
    assert code == 2 and "does not hold the options" in err and "clbench condense <the same options> --resume" in err
    assert len(err.strip().splitlines()) == 1
