"""Condensers that misbehave on purpose, named on the command line as `tests.faulty_condensers:Name`.

Each one breaks exactly one promise of the condenser interface, so that a test can check the harness names
the condenser and says what was wrong. `Slow` keeps every promise and only takes time (for interrupt tests).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from clbench.condensers.base import Condenser, CondenseTask, SyntheticSet, stack_by_class
from clbench.core.errors import NonFiniteError
from clbench.core.options import option


def _first_images(task: CondenseTask, ipc: int) -> SyntheticSet:
    """The first `ipc` images of each class: a valid result that faulty variants then spoil."""
    return stack_by_class({c: task.images[idx[:ipc]].clone() for c, idx in task.class_indices().items()})


@dataclass
class FaultOptions:
    at_call: int = option(0, "calls (steps) that behave before the fault shows")


class Faulty(Condenser):
    """Valid results for the first `at_call` calls of an order, then `fault(task)`."""

    Options = FaultOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.calls = 0

    def condense(self, task: CondenseTask) -> SyntheticSet:
        self.calls += 1
        if self.calls <= self.options.at_call:
            return _first_images(task, task.ipc)
        return self.fault(task)

    def fault(self, task: CondenseTask) -> SyntheticSet:
        raise NotImplementedError


class Raises(Faulty):
    """Fails inside condense (a plugin bug)."""

    name = "raises"

    def fault(self, task: CondenseTask) -> SyntheticSet:
        raise RuntimeError("plugin bug on purpose")


class OutOfMemory(Faulty):
    """Runs out of device memory while condensing (a large condensation on a small GPU): not a plugin bug."""

    name = "out-of-memory"

    def fault(self, task: CondenseTask) -> SyntheticSet:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


class WrongShape(Faulty):
    """Returns images one pixel too tall."""

    name = "wrong-shape"

    def fault(self, task: CondenseTask) -> SyntheticSet:
        result = _first_images(task, task.ipc)
        result.images = torch.nn.functional.pad(result.images, (0, 0, 0, 1))
        return result


class WrongCount(Faulty):
    """Returns one image per class fewer than asked."""

    name = "wrong-count"

    def fault(self, task: CondenseTask) -> SyntheticSet:
        return _first_images(task, task.ipc - 1)


class StrayLabels(Faulty):
    """Labels its first image with a class it was not given."""

    name = "stray-labels"

    def fault(self, task: CondenseTask) -> SyntheticSet:
        result = _first_images(task, task.ipc)
        stray = next(c for c in range(task.num_classes) if c not in task.classes)
        result.labels[0] = stray
        return result


class NanImages(Faulty):
    """Returns a NaN pixel."""

    name = "nan-images"

    def fault(self, task: CondenseTask) -> SyntheticSet:
        result = _first_images(task, task.ipc)
        result.images[0, 0, 0, 0] = float("nan")
        return result


class NanLoss(Faulty):
    """Reports a non-finite loss the way DM does: NonFiniteError naming the iteration."""

    name = "nan-loss"

    def fault(self, task: CondenseTask) -> SyntheticSet:
        for it in range(1, 8):
            task.progress(it, 10, {"loss": 1.0})
        raise NonFiniteError(f"{self.name}: loss is not finite at iteration 7")


class Diverges(Faulty):
    """Finite but enormous images: the retrained network's loss overflows."""

    name = "diverges"

    def fault(self, task: CondenseTask) -> SyntheticSet:
        result = _first_images(task, task.ipc)
        result.images = result.images.sign().add(0.5) * 1e38
        return result


class Float64Images(Faulty):
    """Returns float64 images (the real ones are float32)."""

    name = "float64-images"

    def fault(self, task: CondenseTask) -> SyntheticSet:
        result = _first_images(task, task.ipc)
        result.images = result.images.double()
        return result


class ModifiesRealImages(Faulty):
    """Returns a valid set, but writes into `task.images` (the real data every later step uses)."""

    name = "modifies-real-images"

    def fault(self, task: CondenseTask) -> SyntheticSet:
        result = _first_images(task, task.ipc)
        task.images[0].mul_(0.5)
        return result


class NotASet(Faulty):
    """Returns a plain tuple, not a SyntheticSet."""

    name = "not-a-set"

    def fault(self, task: CondenseTask):
        result = _first_images(task, task.ipc)
        return result.images, result.labels


class Exits(Faulty):
    """Calls sys.exit(0) while condensing (a plugin that thinks it is a script)."""

    name = "exits"

    def fault(self, task: CondenseTask):
        import sys

        sys.exit(0)


class BrokenInit(Condenser):
    """Its constructor raises (a plugin that needs something this machine lacks)."""

    name = "broken-init"

    def __init__(self, options=None):
        raise RuntimeError("needs a license server")

    def condense(self, task: CondenseTask) -> SyntheticSet:
        return _first_images(task, task.ipc)


class NoName(Condenser):
    """A condenser that keeps the contract but has no `name` (run by module path)."""

    def condense(self, task: CondenseTask) -> SyntheticSet:
        return _first_images(task, task.ipc)


NOT_A_CONDENSER = 42  # `--condenser tests.faulty_condensers:NOT_A_CONDENSER`


@dataclass
class SlowOptions:
    delay: float = option(0.2, "seconds each condensation takes (slept in small slices, reporting progress)")


class Slow(Condenser):
    """Random selection that takes `delay` seconds, so a test can interrupt a run in the middle."""

    name = "slow"
    Options = SlowOptions

    def condense(self, task: CondenseTask) -> SyntheticSet:
        slices = 10
        for i in range(slices):
            time.sleep(self.options.delay / slices)
            task.progress(i + 1, slices, {})
        return stack_by_class({c: task.images[idx[task.randperm(idx.numel())[: task.ipc].to(idx.device)]].clone()
                               for c, idx in task.class_indices().items()})


class SeesAugment(Condenser):
    """Records the strategy of the augmentation the harness hands to condensers (a fact in the record)."""

    name = "sees_augment"

    def condense(self, task: CondenseTask) -> SyntheticSet:
        result = _first_images(task, task.ipc)
        result.facts = {"augment": type(task.augment).__name__, "strategy": getattr(task.augment, "strategy", "")}
        return result


@dataclass
class NoDefaultOptions:
    strength: float  # no default: the harness cannot build these options from the command line


class NoDefault(Condenser):
    """An options dataclass with a field that has no default."""

    name = "no-default"
    Options = NoDefaultOptions

    def condense(self, task: CondenseTask) -> SyntheticSet:
        return _first_images(task, task.ipc)


class DuckTyped:
    """Has `condense` but is not a Condenser: no `shrink`, `name` or `expansion` (a run needs all of them)."""

    def condense(self, task: CondenseTask) -> SyntheticSet:
        return _first_images(task, task.ipc)


class BadShrink(Faulty):
    """Valid condensations; its `shrink` keeps indices past the end of a class (a total budget shrinks)."""

    name = "bad-shrink"

    def condense(self, task: CondenseTask) -> SyntheticSet:
        return _first_images(task, task.ipc)

    def shrink(self, images, keep, generator):
        return torch.arange(keep) + len(images)


class NanFacts(Faulty):
    """Valid images; its facts hold NaN and infinity (not JSON numbers)."""

    name = "nan-facts"

    def condense(self, task: CondenseTask) -> SyntheticSet:
        result = _first_images(task, task.ipc)
        result.facts = {"loss": float("nan"), "losses": torch.tensor([1.0, float("inf")]), "ok": 2.5}
        return result
