"""benchmarks/device_check.py, the one-command GPU measurement, runs on a CPU at tiny sizes: it cannot be broken
when a GPU finally runs it. Its fp32 loss check compares the CPU with itself here, so the difference is 0."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    module = _module()
    out = tmp_path_factory.mktemp("device_check")
    saved = []  # every state of the JSON as it was written, to check it is rewritten whole after each cell
    write = module.atomic_write_json
    module.atomic_write_json = lambda path, obj: (saved.append(json.loads(json.dumps(obj))), write(path, obj))
    try:
        module.main(["--device", "cpu", "--quick", "--out", str(out)])
    finally:
        module.atomic_write_json = write
    module.saved = saved
    return module, json.loads((out / "device_check.json").read_text()), (out / "device_check.md").read_text()


def test_writes_every_section_with_a_figure_or_a_reason(check):
    module, result, table = check
    assert set(result) >= {"facts", "sizes", "condense", "retrain", "loss_check", "projection", "elapsed_s",
                           "agreement", "determinism"}
    assert {"device", "name", "torch", "cuda_runtime"} <= set(result["facts"])
    assert set(result["condense"]) == {"dm", "ddm", "dsa", "idm", "datadam"}
    for cells in result["condense"].values():
        assert set(cells) == set(module.VARIANTS)
        assert cells["fp32"]["s_per_it"] > 0 and cells["fp32"]["loss"] > 0, cells["fp32"]
        assert "images" not in cells["fp32"]
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
        expected += 20000 * result["condense"]["dm"]["fp32"]["s_per_it"] + 1000 * epoch + 2000 * step * per_image
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


def test_the_json_is_rewritten_whole_after_every_cell_with_its_projection(check):
    module, result, _ = check
    cells = sum(len(c) for c in result["condense"].values()) + sum(
        len(cells) for configs in result["retrain"].values() for cells in configs.values())
    assert len(module.saved) >= cells + len(result["loss_check"])  # one write per cell at least
    assert all("projection" in s and "elapsed_s" in s for s in module.saved)
    counts = [sum(len(c) for c in s["condense"].values()) for s in module.saved]
    assert counts == sorted(counts) and counts[0] <= 1  # each write holds the cells measured so far


def test_a_cell_run_twice_on_the_cpu_is_bit_for_bit_the_same(check):
    _, result, table = check
    again = result["determinism"]["dm fp32, run twice"]
    assert again["identical"] is True and again["images_max_abs_diff"] == 0 and again["loss_rel_diff"] == 0
    assert "Determinism, dm fp32, run twice: identical" in table


def test_timing_uses_a_device_generator_and_leaves_the_first_iteration_out(monkeypatch):
    """The harness's generator lives on the device (strategies/memory_step.py); the loss check alone uses a CPU
    one, for the same draws everywhere. The seconds are those between the ends of iterations 1 and N."""
    import torch

    module = _module()
    size, device = module.SIZES["quick"], torch.device("cpu")
    data = module.step_data(size)
    asked = []  # the device each condensation generator was asked for
    real = module.draws
    monkeypatch.setattr(module, "draws", lambda where: asked.append(where) or real(where))
    clock = iter(range(100))  # each perf_counter() call one second later
    monkeypatch.setattr(module.time, "perf_counter", lambda: float(next(clock)))
    cell = module.seconds_per_iteration("dm", "fp32", size, device, data)
    assert cell["s_per_it"] == pytest.approx(1 / (size["iterations"] - 1))  # stamps at iterations 1 and N only
    module.condense("dm", *data, size, torch.device("cpu"), 1, {}, same_draws=True)
    meta = torch.device("meta")  # a device that is not the CPU: the timing asks for its generator there
    with pytest.raises((RuntimeError, NotImplementedError)):  # no generator on the meta device
        module.condense("dm", *data, size, meta, 1, {})
    assert asked[0] == device and asked[1] == torch.device("cpu") and asked[2] == meta
