"""Pictures: the curve's lines, bands, axes and title; the memory grid; atomic files; the `plot` commands."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from clbench.core.atomic import atomic_torch_save, atomic_write_json
from clbench.core.errors import UsageError
from clbench.records.record import SCHEMA, SCHEMA_VERSION
from clbench.report.plots import curve_figure, memory_figure, memory_grid, save_figure

PNG = b"\x89PNG\r\n\x1a\n"


def make_record(condenser: str, curves: dict[int, list[list[float]]], *, memory: str = "10ipc",
                device_name: str = "Test GPU", device: str = "cuda:0", memory_file: str | None = None) -> dict:
    """`curves[order][step]` = accuracies of each network after that step; 2 classes arrive per step."""
    orders = []
    for order, steps in curves.items():
        orders.append({
            "order": order, "class_order": list(range(2 * len(steps))), "complete": True,
            "memory_file": memory_file,
            "steps": [{"step": t, "classes": [2 * t, 2 * t + 1], "seen_classes": list(range(2 * t + 2)),
                       "accuracies": accs, "class_accuracy": {str(c): 50.0 for c in range(2 * t + 2)},
                       "condense_seconds": 1.0, "train_seconds": 1.0} for t, accs in enumerate(steps)],
        })
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "run_id": f"{condenser}-{memory}", "complete": True,
            "created": "2026-01-01", "config": {"condenser": condenser, "dataset": "digits", "memory": memory,
                                                "steps": len(next(iter(curves.values()))), "profile": "paper",
                                                "seed": 0, "network": "convnet", "networks_per_step": 2,
                                                "train": {"epochs": 3}, "orders": sorted(curves), "device": device},
            "environment": {"device": device, "device_name": device_name}, "orders": orders, "summary": {}}


DM = {0: [[90.0, 80.0], [70.0, 60.0], [50.0, 40.0]], 1: [[100.0, 90.0], [60.0, 70.0], [45.0, 35.0]]}
HERDING = {0: [[80.0, 80.0], [50.0, 50.0], [30.0, 30.0]]}


def test_curve_has_one_line_and_band_per_condenser():
    fig = curve_figure([make_record("dm", DM), make_record("herding", HERDING)])
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"dm", "herding"}
    assert list(lines["dm"].get_xdata()) == [2, 4, 6]
    step_accs = [[90, 80, 100, 90], [70, 60, 60, 70], [50, 40, 45, 35]]
    assert np.allclose(lines["dm"].get_ydata(), [np.mean(a) for a in step_accs])
    assert np.allclose(lines["herding"].get_ydata(), [80, 50, 30])
    # one ± std band per line, spanning mean - std .. mean + std (population std over orders x networks)
    assert len(ax.collections) == 2
    band = ax.collections[0].get_paths()[0].vertices
    ys = band[:, 1]
    assert ys.max() == pytest.approx(max(min(np.mean(a) + np.std(a), 100) for a in step_accs))
    assert ys.min() == pytest.approx(min(np.mean(a) - np.std(a) for a in step_accs))
    assert ax.get_xlabel() == "number of classes seen" and ax.get_ylabel() == "test accuracy (%)"
    assert [t for t in ax.get_xticks()] == [2, 4, 6]
    title = fig.get_suptitle()
    for words in ("digits", "3 steps", "memory 10ipc", "profile paper", "Test GPU (cuda)"):
        assert words in title


def test_curve_names_what_differs_between_lines():
    fig = curve_figure([make_record("dm", DM, memory="10ipc"), make_record("dm", DM, memory="20ipc",
                                                                          device_name="Other GPU")])
    labels = sorted(line.get_label() for line in fig.axes[0].get_lines())
    assert labels == ["dm memory=10ipc", "dm memory=20ipc"]
    assert "memory mixed (10ipc, 20ipc)" in fig.get_suptitle() and "Other GPU" in fig.get_suptitle()


def test_one_condenser_named_two_ways_is_one_line(cli, tmp_path):
    """A built-in given by name and by module:Class, and a plugin whose record names it by its entry point:
    one line each, pooling both records' orders, in `clbench plot curve` as in compare."""
    by_path = make_record("clbench.condensers.dm:DM", {2: DM[0]})
    plugin = {**make_record("mypkg.cond:Mine", HERDING), "condenser_source": {"name": "mine"}}
    fig = curve_figure([make_record("dm", DM), by_path, make_record("mine", HERDING), plugin])
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert set(lines) == {"dm", "mine"}
    pooled = [[90, 80, 100, 90, 90, 80], [70, 60, 60, 70, 70, 60], [50, 40, 45, 35, 50, 40]]
    assert np.allclose(lines["dm"].get_ydata(), [np.mean(a) for a in pooled])
    for name, record in (("a", make_record("dm", DM)), ("b", by_path)):
        atomic_write_json(tmp_path / f"{name}.json", record)
    code, _, err = cli("plot", "curve", str(tmp_path), "--out", str(tmp_path / "c.svg"))
    assert code == 0, err
    assert (tmp_path / "c.svg").read_text().count("clbench.condensers.dm") == 0  # the legend says dm only


def test_curve_without_records_is_a_usage_error():
    with pytest.raises(UsageError):
        curve_figure([])


def _record_with_memory(tmp_path, per_class: int = 3):
    from clbench.data.datasets import load_dataset

    ds = load_dataset("digits")
    images, labels = ds.normalised("train")
    picked = torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in (7, 2, 5)])
    state = {"images": images[picked], "labels": labels[picked]}
    folder = tmp_path / "run"
    atomic_torch_save(folder / "memory-order0.pt", state)
    record = make_record("herding", HERDING, memory_file="run/memory-order0.pt")
    atomic_write_json(tmp_path / "run.json", record)
    return record, state, ds


def test_memory_grid_one_row_per_class_in_arrival_order(tmp_path):
    record, state, ds = _record_with_memory(tmp_path)
    fig = memory_figure(record, tmp_path / "run.json")
    (ax,) = fig.axes
    (image,) = ax.get_images()
    grid = np.asarray(image.get_array())
    assert grid.shape == (3 * 9 - 1, 3 * 9 - 1)  # 3 classes x 3 images of 8x8, 1 px gaps
    assert [t.get_text() for t in ax.get_yticklabels()] == [ds.class_names[c] for c in (7, 2, 5)]
    # de-normalised to pixels: the first tile is the first image of class 7, back in [0, 1]
    first = ds.denormalise(state["images"][0].float())[0].numpy()
    assert np.allclose(grid[:8, :8], first, atol=1e-6) and 0.0 <= grid.min() and grid.max() <= 1.0
    assert "memory of herding, order 0" in ax.get_title() and "Test GPU" in fig.get_suptitle()


def test_memory_grid_pads_short_rows():
    images = torch.zeros(3, 1, 2, 2)
    grid, classes = memory_grid(images, torch.tensor([4, 4, 9]))
    assert classes == [4, 9] and grid.shape == (5, 5, 1)
    assert grid[3:, 3:, 0].min() == 1.0  # the missing second image of class 9 is blank


def test_memory_order_that_is_not_there(tmp_path):
    record, _, _ = _record_with_memory(tmp_path)
    with pytest.raises(UsageError, match="orders 0"):
        memory_figure(record, tmp_path / "run.json", order=3)


def test_save_figure_writes_png_atomically(tmp_path):
    fig = curve_figure([make_record("dm", DM)])
    path = save_figure(fig, tmp_path / "out" / "curve.png")
    assert path.read_bytes()[:8] == PNG
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["curve.png"]  # no temporary file left behind
    with pytest.raises(UsageError, match="ending in"):
        save_figure(fig, tmp_path / "curve.gif")


def test_plot_commands(cli, tmp_path):
    _record_with_memory(tmp_path)
    code, out, err = cli("plot", "curve", str(tmp_path / "run.json"), "--out", str(tmp_path / "c.svg"))
    assert code == 0, err
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")
    code, out, err = cli("plot", "memory", str(tmp_path / "run.json"), "--out", str(tmp_path / "m.png"))
    assert code == 0, err
    assert (tmp_path / "m.png").read_bytes()[:8] == PNG
    code, _, err = cli("plot", "memory", str(tmp_path / "run.json"), "--order", "5", "--out", str(tmp_path / "x.png"))
    assert code == 2 and "--order 5" in err
    code, _, err = cli("plot", "curve", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "x.png"))
    assert code == 2 and "no such file" in err


def test_a_crowded_curve_lists_its_lines_below_the_axes_not_over_them():
    """Up to LEGEND_INSIDE lines the legend sits in the axes; beyond, a figure legend below them names every line
    and the axes keep none (it would hide the curves)."""
    from clbench.report import plots

    def record(condenser, k):
        steps = [{"step": t, "classes": [2 * t, 2 * t + 1], "seen_classes": list(range(2 * t + 2)),
                  "accuracies": [50.0 + k - t], "accuracy_mean": 50.0 + k - t} for t in range(2)]
        return {"run_id": f"r{k}", "created": "2026-01-01", "complete": True,
                "config": {"condenser": condenser, "dataset": "digits", "steps": 2, "memory": "3ipc",
                           "profile": "quick", "orders": [0], "condenser_options": {"k": k}},
                "environment": {"device_name": "cpu"}, "orders": [{"order": 0, "complete": True, "steps": steps}]}

    few = plots.curve_figure([record("random", k) for k in range(3)])
    assert few.axes[0].get_legend() is not None and not few.legends
    many = plots.curve_figure([record("random", k) for k in range(plots.LEGEND_INSIDE + 2)])
    assert many.axes[0].get_legend() is None and len(many.legends) == 1
    assert len(many.legends[0].get_texts()) == plots.LEGEND_INSIDE + 2
