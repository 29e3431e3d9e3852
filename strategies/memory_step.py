"""Every condensation of the harness goes through here, and one step of a condensed memory is built here.

`new_task` is the one place a CondenseTask is made (the continual learners, the static protocol and the contract
check of clbench.testing all call it): the real images, a seeded generator on the run's device, fresh networks
drawn from it, the condensers' own Siamese augmentation. `condense` makes that task with the generator derived
from (seed, unit, step, "condense") (a unit is a class order, or a static set with step 0) and runs the
condenser the harness's way (clbench.memory.checks.run_condenser: in fp32 on CUDA too, its result checked).
`shrink_older_classes` takes the older classes' share down with a generator derived from (seed, order, step,
"shrink"). The retrain strategy and the replay storage policy both call these, so the same seed, order and step
give the same memory in either.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from clbench.condensers.base import Condenser, CondenseTask, SyntheticSet, expansion, network_factory
from clbench.core.seeding import derive_seed, generator
from clbench.memory.checks import checked_shrink, condenser_name, run_condenser
from clbench.memory.store import Memory, stored_bytes
from clbench.nets.augment import DSA


def new_task(images: Tensor, labels: Tensor, classes: list[int] | tuple[int, ...], ipc: int, *,
             generator: torch.Generator, make_network: Callable[[int], nn.Module], device: Any, num_classes: int,
             progress: Callable[[int, int, dict], None] | None = None,
             extras: dict[str, Any] | None = None) -> CondenseTask:
    """The CondenseTask for `ipc` images of each of `classes` from their real `images`; fresh networks are
    `make_network(seed)` with seeds drawn from `generator` (the task's own)."""
    return CondenseTask(
        images=images, labels=labels, classes=tuple(classes), ipc=ipc, generator=generator,
        new_network=network_factory(make_network, generator),
        augment=DSA(),  # the condensers' own (Siamese) augmentation, whatever the training recipe says
        device=device, num_classes=num_classes,
        progress=progress or (lambda done, total, info: None), extras=dict(extras or {}),
    )


def condense(condenser: Condenser, images: Tensor, labels: Tensor, classes: list[int] | tuple[int, ...], ipc: int,
             *, seed: int, unit: int, step: int, make_network: Callable[[int], nn.Module], device: Any,
             num_classes: int, progress: Callable[[int, int, dict], None] | None = None,
             extras: dict[str, Any] | None = None) -> SyntheticSet:
    """`ipc` condensed images of each of `classes`, made and checked the harness's way (see the module doc)."""
    task = new_task(images, labels, classes, ipc, generator=generator(derive_seed(seed, unit, step, "condense"),
                                                                       device),
                    make_network=make_network, device=device, num_classes=num_classes, progress=progress,
                    extras=extras)
    return run_condenser(condenser, task)


def condense_new_classes(condenser: Condenser, images: Tensor, labels: Tensor, classes: list[int], ipc: int, *,
                         seed: int, order: int, step: int, **kwargs: Any) -> SyntheticSet:
    """A continual step's new classes: `condense` with the class order as the unit."""
    return condense(condenser, images, labels, classes, ipc, seed=seed, unit=order, step=step, **kwargs)


def memory_bytes(memory: Memory, condenser: Condenser) -> int:
    """The memory's bytes as stored: a condenser that keeps real images (`selects_real_images`) stores them as
    the dataset's uint8, any other its images' dtype; clbench.memory.store.stored_bytes."""
    if not memory.images:
        return 0
    first = next(iter(memory.images.values()))
    itemsize = 1 if getattr(condenser, "selects_real_images", False) else first.element_size()
    return stored_bytes(sum(memory.sizes().values()), tuple(first.shape[1:]), itemsize, expansion(condenser))


def shrink_older_classes(memory: Memory, keep: int, condenser: Condenser, *, seed: int, order: int,
                         step: int) -> None:
    """Each class already in `memory` down to `keep` budget images (keep * expansion training images), by the
    condenser's `shrink` rule, whose result is checked like a condensation's."""
    name = condenser_name(condenser)

    def rule(images: Tensor, keep: int, gen: torch.Generator) -> Tensor:
        return checked_shrink(condenser.shrink(images, keep, gen), len(images), keep, name)

    memory.shrink(keep * expansion(condenser), rule, generator(derive_seed(seed, order, step, "shrink")))
