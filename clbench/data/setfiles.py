"""Condensed-set files in the layouts people have on disk, read into one pool of (images, labels) and written
from clbench's sets, so that a set made by anyone is evaluated under clbench's protocols and clbench's memories
are read by the reference evaluators unchanged.

- `clbench`: `{"images": (N, C, H, W) float, "labels": (N,) long}`, clbench's memory and synthetic-set files;
- `reference-static`: `{"data": [[images, labels], ...]}`, one pair per experiment (DatasetCondensation's
  main.py and main_DM.py);
- `reference-cl`: `{"data": [(images, labels), ...]}`, one pair per step with the original class ids (the sets
  CL_DM.py reads).

In every format the images are normalised with the dataset's mean and std, as clbench's are. The two reference
layouts are told apart by their labels: the steps of a continual file hold disjoint classes, the experiments of
a static file the same classes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from clbench.core.atomic import atomic_torch_save
from clbench.core.errors import UsageError
from clbench.core.tensorfile import UnreadableTensorFile, load_tensor_file

FORMATS = ("clbench", "reference-static", "reference-cl")


def read_set_file(path: str | Path, experiment: int = 0) -> tuple[tuple[Tensor, Tensor], str]:
    """The images and labels a file holds (a static file's `experiment`-th set; every step of a continual
    file), and its format; anything else is one UsageError saying what the file is."""
    path = Path(path)
    try:
        data = load_tensor_file(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnreadableTensorFile) as exc:
        raise UsageError(f"{path}: cannot read it ({exc})") from None
    if isinstance(data, dict) and "images" in data and "labels" in data:
        return _pair(path, data["images"], data["labels"], "its images/labels"), "clbench"
    if not (isinstance(data, dict) and isinstance(data.get("data"), (list, tuple)) and data["data"]):
        raise UsageError(f"{path}: not a condensed-set file (expected a dict with 'images' and 'labels', or the "
                         f"reference code's {{'data': [[images, labels], ...]}})")
    pairs = []
    for k, entry in enumerate(data["data"]):
        if not (isinstance(entry, (list, tuple)) and len(entry) >= 2):
            raise UsageError(f"{path}: data[{k}] is not an [images, labels] pair")
        pairs.append(_pair(path, entry[0], entry[1], f"data[{k}]"))
    classes = [set(labels.tolist()) for _, labels in pairs]
    disjoint = sum(len(c) for c in classes) == len(set().union(*classes))
    if disjoint and len(pairs) > 1:  # one step per entry: the memory is all of them
        return (torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])), "reference-cl"
    if not 0 <= experiment < len(pairs):
        raise UsageError(f"{path}: experiment {experiment} asked for, but the file holds {len(pairs)} "
                         f"(0..{len(pairs) - 1}); choose one with --opt experiment=K")
    return pairs[experiment], "reference-static"


def _pair(path: Path, images: Any, labels: Any, where: str) -> tuple[Tensor, Tensor]:
    if not (isinstance(images, Tensor) and images.dim() == 4 and images.is_floating_point()):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise UsageError(f"{path}: {where}: the images must be a float tensor (N, C, H, W), got {shape}")
    if not (isinstance(labels, Tensor) and labels.dim() == 1 and labels.shape[0] == images.shape[0]
            and not labels.is_floating_point()):
        raise UsageError(f"{path}: {where}: the labels must be an integer tensor of {images.shape[0]} class ids")
    return images.float(), labels.long()


def write_set_file(path: str | Path, fmt: str, sets: list[tuple[Tensor, Tensor]]) -> None:
    """`sets` in `fmt` (one set for `clbench`; the experiments of `reference-static`; the steps, in order, of
    `reference-cl`), written atomically."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    sets = [(images.detach().cpu().float(), labels.detach().cpu().long()) for images, labels in sets]
    if fmt == "clbench":
        if len(sets) != 1:
            raise UsageError(f"--format clbench holds one set, not {len(sets)}")
        data: Any = {"images": sets[0][0], "labels": sets[0][1]}
    elif fmt == "reference-static":
        data = {"data": [[images, labels] for images, labels in sets]}
    else:
        data = {"data": [(images, labels) for images, labels in sets]}
    atomic_torch_save(Path(path), data)
