"""The rehearsal memory: a budget (`20ipc` or a total) and a class-balanced store of condensed images."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from clbench.core.errors import UsageError
from clbench.core.speed import tf32


@dataclass(frozen=True)
class MemoryBudget:
    """`20ipc`: 20 images per class, always. `2000`: 2000 images in all, shared equally by the classes seen."""

    per_class_fixed: int | None = None
    total: int | None = None

    @classmethod
    def parse(cls, text: str | int) -> MemoryBudget:
        value = str(text).strip().lower()
        match = re.fullmatch(r"(\d+)\s*ipc", value)
        if match and int(match.group(1)) > 0:
            return cls(per_class_fixed=int(match.group(1)))
        if value.isdigit() and int(value) > 0:
            return cls(total=int(value))
        raise UsageError(
            f"--memory {text!r} is not valid: give images per class as <N>ipc (e.g. 20ipc) "
            f"or a total number of images as a positive integer (e.g. 2000)"
        )

    def per_class(self, classes_seen: int) -> int:
        """Images per class once `classes_seen` classes are in memory (the remainder of a total is unused)."""
        if self.per_class_fixed is not None:
            return self.per_class_fixed
        assert self.total is not None
        return self.total // max(classes_seen, 1)

    def __str__(self) -> str:
        return f"{self.per_class_fixed}ipc" if self.per_class_fixed is not None else str(self.total)

    def check(self, num_classes: int, smallest_class: int) -> None:
        """Refuse budgets that cannot be met: more images per class than a class has, or < 1 per class."""
        if self.per_class(num_classes) < 1:
            raise UsageError(
                f"--memory {self}: {num_classes} classes would get less than one image each; "
                f"give a total of at least {num_classes}"
            )
        if self.per_class_fixed is not None and self.per_class_fixed > smallest_class:
            raise UsageError(
                f"--memory {self}: the smallest class has only {smallest_class} training images; "
                f"use at most {smallest_class}ipc"
            )


LABEL_BYTES = 8  # a label as the reference files and clbench's keep it: int64


def stored_bytes(training_images: int, image_shape: tuple[int, ...], itemsize: int, expansion: int = 1) -> int:
    """Bytes a memory takes as stored: its budget images (`training_images / expansion`: an IDM image holds
    `expansion` training images) at `itemsize` bytes per value (1 for real images kept as the dataset's uint8,
    4 for float32 synthetic ones), plus one int64 label each."""
    stored = training_images // max(expansion, 1)
    values = 1
    for n in image_shape:
        values *= int(n)
    return stored * (values * itemsize + LABEL_BYTES)


ShrinkFn = Callable[[Tensor, int, torch.Generator], Tensor]


class Memory:
    """Condensed images per class, kept as they were made; shrunk only when a total budget requires it."""

    def __init__(self) -> None:
        self.images: dict[int, Tensor] = {}

    @property
    def classes(self) -> list[int]:
        return list(self.images)

    def add(self, images: Tensor, labels: Tensor) -> None:
        for c in labels.unique(sorted=False).tolist():
            if c in self.images:
                raise ValueError(f"class {c} is already in memory")
        for c in _ordered_unique(labels):
            self.images[c] = images[labels == c].detach().clone()

    def shrink(self, keep: int, rule: ShrinkFn, generator: torch.Generator) -> None:
        """Keep `keep` images of every class that has more, chosen by the condenser's rule."""
        for c, imgs in self.images.items():
            if imgs.shape[0] > keep:
                with tf32(False, imgs.device):  # a rule may embed images (DM's mean-preserving subset): fp32
                    idx = rule(imgs, keep, generator).to(imgs.device)
                self.images[c] = imgs[idx]

    def tensors(self) -> tuple[Tensor, Tensor]:
        """All memory images and their labels, class by class in arrival order."""
        images = torch.cat(list(self.images.values()))
        labels = torch.cat(
            [torch.full((t.shape[0],), c, dtype=torch.long, device=t.device) for c, t in self.images.items()]
        )
        return images, labels

    def sizes(self) -> dict[int, int]:
        return {c: int(t.shape[0]) for c, t in self.images.items()}

    def state(self) -> dict[str, Tensor]:
        """A flat dict of CPU tensors, loadable with torch.load(weights_only=True)."""
        images, labels = self.tensors() if self.images else (torch.empty(0), torch.empty(0, dtype=torch.long))
        return {"images": images.cpu(), "labels": labels.cpu()}

    @classmethod
    def from_state(cls, state: dict[str, Tensor], device: torch.device) -> Memory:
        memory = cls()
        if state["labels"].numel():
            memory.add(state["images"].to(device), state["labels"].to(device))
        return memory


def _ordered_unique(labels: Tensor) -> list[int]:
    seen: dict[int, None] = {}
    for c in labels.tolist():
        seen.setdefault(c, None)
    return list(seen)
