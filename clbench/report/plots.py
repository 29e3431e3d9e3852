"""Pictures from records: the accuracy curve (the paper's Figure 3b) and the grid of memory images.

Each function returns a matplotlib Figure built without pyplot (no window, no global figure state, Agg
canvas), so tests can inspect its axes and lines; `save_figure` writes it atomically. Every title names the
dataset, the protocol (steps, memory, profile) and the hardware the numbers came from.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Iterable

from clbench.core.errors import UsageError
from clbench.core.tensorfile import UnreadableTensorFile, load_tensor_file
from clbench.report.rows import Group, canonical_records, differing_settings, group_records, hardware_label

FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}
LEGEND_INSIDE = 6  # lines of a curve whose legend fits inside the axes; more are listed below them


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _common_or_mixed(values: Iterable[Any]) -> str:
    distinct = sorted({str(v) for v in values})
    return distinct[0] if len(distinct) == 1 else "mixed (" + ", ".join(distinct) + ")"


def protocol_title(records: list[dict[str, Any]]) -> str:
    """"fashion-mnist · 5 steps · memory 20ipc · profile paper · NVIDIA H100 (cuda)"; mixed fields say so."""
    configs = [r["config"] for r in records]
    return (f"{_common_or_mixed(c.get('dataset') for c in configs)} · "
            f"{_common_or_mixed(c.get('steps') for c in configs)} steps · "
            f"memory {_common_or_mixed(c.get('memory') for c in configs)} · "
            f"profile {_common_or_mixed(c.get('profile') for c in configs)} · "
            f"{_common_or_mixed(hardware_label(r) for r in records)}")


def _labels(groups: list[Group]) -> list[str]:
    """Condenser names, plus whatever else tells two lines apart (protocol fields, settings)."""
    labels = []
    for g in groups:
        label = str(g.condenser)
        others = [h for h in groups if h is not g]
        for i, name in enumerate(("dataset", "steps", "memory", "condenser", "profile", "learner")):
            if name != "condenser" and any(h.key[i] != g.key[i] for h in others):
                label += f" {name}={g.key[i]}"
        same_key = [h for h in groups if h.key == g.key]
        if len(same_key) > 1:
            label += f" [{differing_settings([h.variant for h in same_key], g.variant)}]"
        labels.append(label)
    return labels


def curve_figure(records: list[dict[str, Any]], title: str | None = None):
    """Accuracy (%) against the number of classes seen: one line per condenser (and protocol), ± std band; a
    condenser named two ways (entry point, module:Class) is one line."""
    if not records:
        raise UsageError("no records to plot")
    groups = group_records(canonical_records(records))
    crowded = len(groups) > LEGEND_INSIDE  # a legend that long would hide the lines: it goes below the axes
    fig = _new_figure(6.4, 4.4 + (0.2 * len(groups) if crowded else 0.0))
    ax = fig.add_subplot()
    ticks: set[int] = set()
    for group, label in zip(groups, _labels(groups)):
        points = group.curve()
        if not points:
            continue
        x = [p["classes"] for p in points]
        mean = [p["mean"] for p in points]
        low = [max(p["mean"] - p["std"], 0.0) for p in points]  # accuracy cannot leave [0, 100]
        high = [min(p["mean"] + p["std"], 100.0) for p in points]
        (line,) = ax.plot(x, mean, marker="o", markersize=3, label=label)
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        ticks.update(x)
    ax.set_xlabel("number of classes seen")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(sorted(ticks))
    ax.grid(True, alpha=0.3)
    if crowded:
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize="x-small", frameon=False)
    else:
        ax.legend(fontsize="small")
    ax.set_title(title or "Accuracy as classes arrive (mean ± std over orders x networks)", fontsize="medium")
    fig.suptitle(protocol_title(records), fontsize="small", wrap=True)
    return fig


def _load_memory(record: dict[str, Any], record_path: str | Path, order: int | None):

    entries = [e for e in record["orders"] if e.get("memory_file")]
    if not entries:
        raise UsageError(f"{record_path}: the record has no memory snapshot (no order finished)")
    if order is None:
        entry = entries[0]
    else:
        found = [e for e in entries if int(e["order"]) == order]
        if not found:
            raise UsageError(f"--order {order}: the record has memory snapshots for orders "
                             f"{', '.join(str(e['order']) for e in entries)}")
        entry = found[0]
    path = Path(record_path).parent / entry["memory_file"]
    try:
        state = load_tensor_file(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: the memory snapshot of order {entry['order']} is missing") from None
    except (OSError, UnreadableTensorFile) as exc:
        raise UsageError(f"{path}: cannot read the memory snapshot ({exc})") from None
    return int(entry["order"]), state["images"].float(), state["labels"].long()


def _pixels(images, dataset_name: str, dataset: Any = None):
    """Normalised images -> [0, 1] pixels with the dataset's mean/std; without the dataset, min-max per image."""
    if dataset is None:
        from clbench.core.errors import ClbenchError
        from clbench.data.datasets import load_dataset

        try:
            dataset = load_dataset(dataset_name, download=False)
        except ClbenchError:
            dataset = None
    if dataset is not None:
        return dataset.denormalise(images), list(dataset.class_names), ""
    flat = images.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1, 1)
    high = flat.max(dim=1).values.view(-1, 1, 1, 1)
    return (images - low) / (high - low).clamp_min(1e-12), None, " (dataset not found: min-max scaled)"


def memory_grid(images, labels, pad: int = 1):
    """The memory as one array (rows*(H+pad), cols*(W+pad), C): one row per class in stored order."""
    import torch

    classes = list(dict.fromkeys(labels.tolist()))
    per_class = [images[labels == c] for c in classes]
    cols = max(t.shape[0] for t in per_class)
    _, ch, h, w = images.shape
    grid = torch.ones(ch, len(classes) * (h + pad) - pad, cols * (w + pad) - pad)
    for r, block in enumerate(per_class):  # one slice per class (a few hundred at most), not per image
        row = torch.ones(ch, h, cols * (w + pad) - pad)
        tiles = torch.nn.functional.pad(block, (0, pad, 0, 0), value=1.0)  # n, C, H, W+pad
        strip = tiles.permute(1, 2, 0, 3).reshape(ch, h, -1)[:, :, : block.shape[0] * (w + pad) - pad]
        row[:, :, : strip.shape[2]] = strip
        grid[:, r * (h + pad): r * (h + pad) + h] = row
    return grid.permute(1, 2, 0).numpy(), classes


def memory_figure(record: dict[str, Any], record_path: str | Path, order: int | None = None, dataset: Any = None):
    """The memory images of one order of a record: one row per class (in arrival order), de-normalised."""
    order, images, labels = _load_memory(record, record_path, order)
    if labels.numel() == 0:
        raise UsageError(f"{record_path}: the memory of order {order} is empty")
    pixels, names, scaled = _pixels(images, record["config"]["dataset"], dataset)
    grid, classes = memory_grid(pixels, labels)
    rows, cols = len(classes), max(int((labels == c).sum()) for c in classes)
    h = images.shape[2]
    scale = 0.35 if h <= 32 else 0.6
    fig = _new_figure(min(2.5 + cols * scale, 24.0), min(1.6 + rows * scale, 40.0))
    ax = fig.add_subplot()
    if grid.shape[2] == 1:
        ax.imshow(grid[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(grid, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_yticks([r * (h + 1) + (h - 1) / 2 for r in range(rows)])
    ax.set_yticklabels([names[c] if names and c < len(names) else str(c) for c in classes], fontsize="small")
    ax.set_xticks([])
    ax.set_xlabel(f"{cols} image(s) per class")
    ax.set_title(f"memory of {record['config'].get('condenser')}, order {order}{scaled}", fontsize="medium")
    fig.suptitle(protocol_title([record]), fontsize="small")
    return fig


def picture_format(path: str | Path) -> str:
    """The format a picture file's suffix asks for (.png, .pdf, .svg); a UsageError for any other, so that a
    command can refuse a bad name before it does any work."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise UsageError(f"{path}: give a file ending in {', '.join(FORMATS)}")
    return fmt


def save_figure(fig, path: str | Path) -> Path:
    """Write the figure atomically; the format follows the suffix (.png, .pdf, .svg)."""
    from clbench.core.atomic import atomic_write_bytes

    path = Path(path)
    fmt = picture_format(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=150)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:
        raise UsageError(f"{path}: cannot write the picture ({exc.strerror})") from None
    return path
