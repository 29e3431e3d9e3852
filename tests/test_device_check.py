"""benchmarks/device_check.py, the one-command GPU measurement, runs on a CPU at tiny sizes: it cannot be broken
when a GPU finally runs it. Its fp32 loss check compares the CPU with itself here, so the difference is 0."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.py"


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("device_check")
    module.main(["--device", "cpu", "--quick", "--out", str(out)])
    return module, json.loads((out / "device_check.json").read_text()), (out / "device_check.md").read_text()


def test_writes_every_section_with_a_figure_or_a_reason(check):
    module, result, table = check
    assert set(result) >= {"facts", "sizes", "condense", "retrain", "loss_check", "projection", "elapsed_s"}
    assert {"device", "name", "torch", "cuda_runtime"} <= set(result["facts"])
    assert set(result["condense"]) == {"dm", "ddm", "dsa"}
    for cells in result["condense"].values():
        assert set(cells) == set(module.VARIANTS)
        assert isinstance(cells["fp32"], float) and cells["fp32"] > 0
        assert cells["tf32"].startswith("n/a")  # a CUDA switch, on a CPU
    for configs in result["retrain"].values():
        assert set(configs) == set(module.CONFIGS)
        for config, cells in configs.items():
            assert cells["fp32"]["epoch_s"] > 0 and cells["fp32"]["test_s"] > 0, config
            assert cells["cuda_graphs"].startswith("n/a")
            assert not any(str(c).startswith("error") for c in cells.values()), (config, cells)
    assert "## Condensation" in table and "| dm |" in table and "goal" in table


def test_the_fp32_loss_check_of_the_cpu_against_itself_is_exact(check):
    _, result, _ = check
    for method in ("dm", "ddm"):
        c = result["loss_check"][method]
        assert c["device"] == pytest.approx(c["cpu"], rel=1e-6) and c["rel_diff"] < 1e-6 and c["cpu"] > 0


def test_the_projection_adds_up_the_paper_protocol(check):
    module, result, _ = check
    ref = result["projection"]["dm, fp32 (reference path)"]
    cells = {int(m): result["retrain"][m]["3 sequential"]["fp32"] for m in result["retrain"]}
    per_image = max(c["test_s"] / c["test_images"] for c in cells.values())
    expected = 0.0
    for step in range(1, 6):  # CIFAR-100 in 5 steps: 20 new classes, memory 400 * step, test 2000 * step
        epoch = module.epoch_at(400 * step, {m: c["epoch_s"] for m, c in cells.items()})
        expected += 20000 * result["condense"]["dm"]["fp32"] + 1000 * epoch + 2000 * step * per_image
    assert ref["hours_5_orders"] == pytest.approx(5 * expected / 3600, rel=1e-9)
    assert ref["meets_goal"] == (ref["hours_5_orders"] <= 2.0)


def test_epochs_are_interpolated_by_minibatches():
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    measured = {400: 2.0, 2000: 8.0}  # 2 and 8 minibatches of 256
    assert module.epoch_at(400, measured) == 2.0 and module.epoch_at(2000, measured) == 8.0
    assert module.epoch_at(1200, measured) == pytest.approx(5.0)  # 5 minibatches
    assert module.epoch_at(999, {4: 1.0, 20: 3.0}) == 1.0  # one minibatch at both sizes: no slope to use
