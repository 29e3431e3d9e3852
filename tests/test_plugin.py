"""Plugins: the contract check on broken condensers of each kind, and the example package pip-installed,
listed by `clbench condensers` and run by `clbench run`."""
from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from clbench.condensers.base import Condenser, SyntheticSet, stack_by_class
from clbench.core.options import option
from clbench.testing import check_condenser, make_task

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "condenser-plugin"


@dataclass
class FirstOptions:
    offset: int = option(0, "skip this many images of each class", quick=0)


class First(Condenser):
    """The first `ipc` images of each class: deterministic, no network, so the checks below are instant."""

    name = "first"
    Options = FirstOptions

    def condense(self, task):
        per_class = {c: task.images[idx[self.options.offset: self.options.offset + task.ipc]].clone()
                     for c, idx in task.class_indices().items()}
        return stack_by_class(per_class)


class WrongShape(First):
    def condense(self, task):
        s = super().condense(task)
        return SyntheticSet(s.images[:, :, :4, :4], s.labels)


class WrongDtype(First):
    def condense(self, task):
        s = super().condense(task)
        return SyntheticSet(s.images.double(), s.labels)


class IntegerImages(First):
    def condense(self, task):
        s = super().condense(task)
        return SyntheticSet(s.images.long(), s.labels)


class StrayLabels(First):
    def condense(self, task):
        s = super().condense(task)
        s.labels[0] = 9
        return s


class WrongIpc(First):
    def condense(self, task):
        s = super().condense(task)
        return SyntheticSet(s.images[1:], s.labels[1:])


class NaNImages(First):
    def condense(self, task):
        s = super().condense(task)
        s.images[0, 0, 0, 0] = float("nan")
        return s


class GlobalRandom(First):
    def condense(self, task):
        s = super().condense(task)
        return SyntheticSet(s.images + 0.01 * torch.randn(s.images.shape), s.labels)


class MutatesInput(First):
    def condense(self, task):
        task.images.mul_(0.5)  # e.g. normalising "in place" to save memory
        return super().condense(task)


class Raises(First):
    def condense(self, task):
        raise RuntimeError("out of ideas")


class NotASet(First):
    def condense(self, task):
        return task.images[:6]


class BadShrink(First):
    def shrink(self, images, keep, generator):
        return torch.arange(keep + 1)


def test_a_sound_condenser_passes():
    check_condenser(First)
    check_condenser(First(FirstOptions(offset=3)), ipc=4, classes=(5, 1))
    check_condenser(First, options={"offset": 1})


@pytest.mark.parametrize(
    "broken, message",
    [
        (WrongShape, "returned images of shape (6, 1, 4, 4); expected (N, 1, 8, 8)"),
        (WrongDtype, "dtype torch.float64; expected torch.float32"),
        (IntegerImages, "expected a floating dtype"),
        (StrayLabels, "labels of classes it was not given: [9]"),
        (WrongIpc, "wrong number of images per class (expected 2): {0: 1}"),
        (NaNImages, "non-finite images"),
        (GlobalRandom, "two runs with the same seed gave different sets"),
        (MutatesInput, "changed the real images it was given in place"),
        (Raises, "condense raised RuntimeError: out of ideas"),
        (NotASet, "not a SyntheticSet"),
        (BadShrink, "shrink(images of 2, keep=1) returned [0, 1]"),
    ],
)
def test_contract_check_names_each_broken_promise(broken, message):
    with pytest.raises(AssertionError) as info:
        check_condenser(broken)
    assert message in str(info.value)
    assert str(info.value).startswith("check_condenser(first)")


def test_contract_check_asks_check_data_first_as_the_harness_does():
    from clbench.core.errors import UsageError

    class Picky(First):
        def check_data(self, image_shape, num_classes):
            if image_shape[-1] < 28:
                raise UsageError(f"needs images of at least 28 px, got {image_shape[-1]}")

    with pytest.raises(AssertionError, match=r"check_data refuses the digits test data \(needs images of at least 28 "
                                             r"px, got 8\)"):
        check_condenser(Picky)


def test_make_task_interleaves_the_classes_and_is_seeded():
    a, b = make_task(classes=(3, 4), seed=5), make_task(classes=(3, 4), seed=5)
    assert sorted(a.labels.unique().tolist()) == [3, 4] and a.labels[:10].unique().numel() == 2
    assert a.images.shape == (80, 1, 8, 8) and a.images.dtype == torch.float32
    assert a.seed() == b.seed()
    net_a, net_b = a.new_network(seed=1), b.new_network(seed=1)
    assert all(torch.equal(p, q) for p, q in zip(net_a.parameters(), net_b.parameters()))


def test_options_must_be_a_dataclass():
    class Loose(First):
        class Options:
            offset = 0

    with pytest.raises(AssertionError, match="Options must be a dataclass"):
        check_condenser(Loose)


# -- the example package, pip-installed ----------------------------------------------------------------
@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    """pip-install examples/condenser-plugin (a copy: no build files in the tree) into a folder put on sys.path.

    A real installation, entry point metadata included, that leaves the shared virtual environment as it was
    (other test runs in the same environment do not suddenly see a new condenser).
    """
    if importlib.util.find_spec("pip") is None:
        pytest.skip("pip is not available in this environment")
    root = tmp_path_factory.mktemp("plugin")
    source, target = root / "src", root / "site"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--no-warn-conflicts", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(target.glob("clbench_kcenter-*.dist-info/entry_points.txt")), "pip installed no entry point"

    from clbench.condensers import CONDENSERS, load_builtins

    load_builtins()
    saved_entries, saved_scanned = dict(CONDENSERS._entries), CONDENSERS._scanned
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    # the registry scans entry points once per process: scan again, now that the package is there
    CONDENSERS._entries = {k: e for k, e in saved_entries.items() if not e.origin.startswith("package")}
    CONDENSERS._scanned = False
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        sys.modules.pop("clbench_kcenter", None)
        importlib.invalidate_caches()
        CONDENSERS._entries, CONDENSERS._scanned = saved_entries, saved_scanned


def test_plugin_is_listed_with_its_origin(installed_plugin, cli):
    code, out, err = cli("condensers")
    assert code == 0, err
    assert "kcenter  (package clbench-kcenter)" in out
    assert "greedy k-center cover" in out and "embed_seed (int)" in out
    assert "herding  (built-in)" in out


def test_plugin_keeps_the_contract(installed_plugin):
    check_condenser("kcenter", ipc=3)


@pytest.mark.slow
def test_plugin_runs_in_clbench_run(installed_plugin, cli, tmp_path):
    code, out, err = cli("run", "--condenser", "kcenter", "--dataset", "digits", "--steps", "2", "--orders", "1",
                         "--nets", "1",
                         "--train", "epochs=2", "--memory", "3ipc", "--device", "cpu", "--profile", "quick",
                         "--out", str(tmp_path))
    assert code == 0, err
    (path,) = tmp_path.glob("*.json")
    record = json.loads(path.read_text())
    assert record["complete"] and record["config"]["condenser"] == "kcenter"
    assert record["config"]["condenser_options"] == {"embed_seed": 0, "batch_size": 1024}
    assert record["config"]["shrink_rule"].startswith("k-center prefix")
    assert [s["memory_size"] for s in record["orders"][0]["steps"]] == [15, 30]


def _builtin_names() -> list[str]:
    from clbench.condensers import CONDENSERS, load_builtins

    load_builtins()
    return [e.name for e in CONDENSERS.entries() if e.origin == "built-in"]


@pytest.mark.slow
@pytest.mark.parametrize("name", _builtin_names())
def test_every_built_in_keeps_the_contract(name, tmp_path):
    """The registry drives the test: a new built-in gets the contract check without a new test."""
    import torch

    from clbench.condensers import get_condenser
    from clbench.core.options import describe
    from clbench.data.datasets import load_dataset

    # precomputed reads its set: two real digits of every class, normalised, as a clbench file
    x, y = load_dataset("digits").normalised("train")
    picks = torch.cat([torch.nonzero(y == c).flatten()[:2] for c in range(10)])
    torch.save({"images": x[picks], "labels": y[picks]}, tmp_path / "set.pt")
    small = {"iterations": 2, "loops": "1,1", "batch_real": 16, "path": str(tmp_path / "set.pt")}  # seconds each
    fields = {r["name"] for r in describe(get_condenser(name).Options)}
    check_condenser(name, options={k: v for k, v in small.items() if k in fields})
