"""The interface every condenser shares: what it is given (`CondenseTask`) and what it returns (`SyntheticSet`).

A condenser is a class with a `name`, an `Options` dataclass (see `clbench.core.options.option`) and one method,
`condense(task) -> SyntheticSet`. It sees only the real data of the classes it is asked to condense.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from clbench.core.registry import Registry

ProgressFn = Callable[[int, int, dict], None]  # (iteration done, iterations total, current losses)


def draw_seed(generator: torch.Generator) -> int:
    """A seed drawn from `generator` (for things that need an int, such as network initialisation)."""
    return int(torch.randint(2**62, (1,), generator=generator, device=generator.device).item())


def network_factory(build: Callable[[int], nn.Module], generator: torch.Generator) -> Callable[..., nn.Module]:
    """`new_network(seed=None)` for a CondenseTask: `build(seed)`, drawing the seed from `generator` if none."""

    def new_network(seed: int | None = None) -> nn.Module:
        return build(draw_seed(generator) if seed is None else seed)

    return new_network


def _no_progress(done: int, total: int, info: dict) -> None:
    pass


@dataclass
class CondenseTask:
    """Everything a condenser may use. Images are normalised, on `device`, grouped by nothing in particular."""

    images: Tensor  # (N, C, H, W) float, normalised
    labels: Tensor  # (N,) long, original class ids
    classes: tuple[int, ...]  # the classes to condense, in stream order
    ipc: int  # images per class to produce
    generator: torch.Generator  # seeded, on `device`: the only source of randomness
    new_network: Callable[..., nn.Module]  # new_network(seed=None): a fresh network of the run's architecture
    # on `device`; without a seed it draws one from `generator`
    augment: Any  # the condensation DSA (clbench.nets.augment.DSA, the default strategy), independent of the
    # training recipe's `dsa` switch: condensers turn it off with their own options
    device: torch.device
    num_classes: int  # size of the dataset's label space (network heads span all of it)
    progress: ProgressFn = _no_progress
    extras: dict[str, Any] = field(default_factory=dict)  # harness facts: dataset, profile, class order (OrderRun)

    def class_images(self, c: int) -> Tensor:
        """The real images of class `c` (a masked copy; for many passes over every class, `class_indices`)."""
        return self.images[self.labels == c]

    def class_indices(self) -> dict[int, Tensor]:
        """Indices into `images` of each class, computed once (no per-iteration masking)."""
        return {c: torch.nonzero(self.labels == c).flatten() for c in self.classes}

    def randint(self, high: int, size: int) -> Tensor:
        return torch.randint(high, (size,), generator=self.generator, device=self.generator.device)

    def randperm(self, n: int) -> Tensor:
        return torch.randperm(n, generator=self.generator, device=self.generator.device)

    def seed(self) -> int:
        """A seed drawn from the task's generator, for things that need an int (network init)."""
        return draw_seed(self.generator)

    def augmentation(self, enabled: bool, strategy: str = "", align_corners: bool | None = None) -> Any:
        """A condenser's DSA: the task's (`augment`), one with another `strategy` or resampling grid
        (`align_corners`; None: the task's), or the identity when not `enabled`."""
        from clbench.nets.augment import make_augment

        if not enabled:
            return make_augment(None)
        current = getattr(self.augment, "align_corners", False)  # a plugin's own augment object: PyTorch's default
        if not strategy and align_corners in (None, current):
            return self.augment
        return make_augment(strategy or self.augment.strategy, current if align_corners is None else align_corners)


@dataclass
class SyntheticSet:
    """A condenser's result: `ipc` images per class, normalised, with labels and a few facts for the record."""

    images: Tensor  # (classes * ipc, C, H, W)
    labels: Tensor  # (classes * ipc,) long
    facts: dict[str, Any] = field(default_factory=dict)  # iterations, seconds, final losses, ...


@dataclass
class NoOptions:
    """A condenser without hyperparameters."""


class Condenser:
    """Base class. Subclasses set `name`, `Options` and implement `condense`.

    `shrink` decides which images of a class stay when a total memory budget takes some away; the default
    keeps a seeded random subset. A condenser whose images are ordered by importance (herding) keeps a prefix.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    shrink_rule: ClassVar[str] = "random subset (seeded)"
    # A condenser whose memory is real images (a selection) keeps them as the dataset's uint8: its memory's bytes
    # are counted at 1 per value; a synthetic memory's at its dtype (4 for float32).
    selects_real_images: ClassVar[bool] = False
    # Training images per image of the memory budget: 1, except for a condenser whose stored images decode into
    # several (IDM's partition: 4 upsampled quarters). `ipc` budget images per class arrive as ipc * expansion.
    expansion: int = 1

    def __init__(self, options: Any = None):
        self.options = options if options is not None else self.Options()

    @classmethod
    def description(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def condense(self, task: CondenseTask) -> SyntheticSet:
        raise NotImplementedError

    def check_data(self, image_shape: tuple[int, ...], num_classes: int) -> None:
        """Raise UsageError if the options cannot work on the run's dataset: images of `image_shape` (C, H, W),
        `num_classes` classes. The harness calls it once before any work; the default accepts everything."""

    def shrink(self, images: Tensor, keep: int, generator: torch.Generator) -> Tensor:
        """Indices (into `images`, one class's memory) of the `keep` images to retain (`keep` counts training
        images: budget images times `expansion`)."""
        return torch.randperm(images.shape[0], generator=generator, device=generator.device)[:keep].sort().values


CONDENSERS: Registry[type[Condenser]] = Registry("condenser", entry_point_group="clbench.condensers")


def register(cls: type[Condenser]) -> type[Condenser]:
    """Class decorator: register a built-in condenser under its `name`."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no `name`")
    CONDENSERS.add(cls.name, cls)
    return cls


def expansion(condenser: Any) -> int:
    """Training images per budget image of `condenser` (1 for a plugin that does not say)."""
    return int(getattr(condenser, "expansion", 1))


def stack_by_class(per_class: dict[int, Tensor]) -> SyntheticSet:
    """Images of each class -> one SyntheticSet in class order, labels repeated."""
    images = torch.cat(list(per_class.values()))
    labels = torch.cat(
        [torch.full((t.shape[0],), c, dtype=torch.long, device=t.device) for c, t in per_class.items()]
    )
    return SyntheticSet(images, labels)
