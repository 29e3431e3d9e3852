"""Class subsets for quick work: `--dataset NAME#IDS` keeps the classes IDS of any dataset (`cifar100#0-9`,
`imagenet64#0-99`, `folder:/data/pets@64#0,2,5-7`), renumbered 0..k-1 in the order given, with their names, and
the whole dataset's normalisation (so that images mean the same in the subset and in the whole).

The whole dataset is still read once (and kept by the loader's cache); only the subset's images are copied.
"""
from __future__ import annotations

import re

import torch

from clbench.core.errors import UsageError
from clbench.data.types import ImageDataset

SUBSET_MARK = "#"
_IDS = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def split_subset(name: str) -> tuple[str, str | None]:
    """("cifar100", "0-9") for "cifar100#0-9"; (name, None) without a subset."""
    base, mark, ids = name.rpartition(SUBSET_MARK)
    if not mark or not base:
        return name, None
    return base, ids


def parse_ids(text: str, num_classes: int, where: str, name: str) -> list[int]:
    """"0-2,7" -> [0, 1, 2, 7]; each id once, all below num_classes, or one UsageError saying what is wrong."""
    compact = text.replace(" ", "")
    if not _IDS.match(compact):
        raise UsageError(f"{where} {name}: {SUBSET_MARK}{text} is not a class list; give ids and ranges such as "
                         f"{SUBSET_MARK}0-9 or {SUBSET_MARK}0,3,5-7")
    ids: list[int] = []
    for part in compact.split(","):
        low, _, high = part.partition("-")
        lo, hi = int(low), int(high or low)
        if hi < lo:
            raise UsageError(f"{where} {name}: the range {part} runs backwards; write {hi}-{lo}")
        ids += range(lo, hi + 1)
    repeated = sorted({c for c in ids if ids.count(c) > 1})
    if repeated:
        raise UsageError(f"{where} {name}: class {repeated[0]} is listed twice")
    outside = [c for c in ids if c >= num_classes]
    if outside:
        raise UsageError(f"{where} {name}: class {outside[0]} does not exist; the dataset has classes "
                         f"0..{num_classes - 1}")
    if len(ids) < 2:
        raise UsageError(f"{where} {name}: keep at least 2 classes (a stream needs more than one)")
    return ids


def subset(ds: ImageDataset, ids: list[int], name: str, text: str) -> ImageDataset:
    """The classes `ids` of `ds`, renumbered 0..k-1 in that order."""
    lookup = torch.full((ds.num_classes,), -1, dtype=torch.long)
    lookup[torch.tensor(ids)] = torch.arange(len(ids))
    parts = []
    for images, labels in ((ds.train_images, ds.train_labels), (ds.test_images, ds.test_labels)):
        keep = lookup[labels] >= 0
        parts += [images[keep].clone(), lookup[labels[keep]]]
    return ImageDataset(name, [ds.class_names[c] for c in ids], *parts, ds.mean, ds.std,
                        f"{ds.source}, classes {text}")
