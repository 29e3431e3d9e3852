"""One step of a condensed memory, the same for every strategy that keeps one: condense the new classes with a
generator derived from (seed, order, step, "condense"), and shrink the older classes' share with one derived
from (seed, order, step, "shrink"). The retrain strategy and the replay storage policy both call these, so the
same seed, order and step give the same memory in either.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import Tensor, nn

from clbench.condense.checks import run_condenser
from clbench.condensers.base import Condenser, CondenseTask, SyntheticSet, expansion, network_factory
from clbench.core.seeding import derive_seed, generator
from clbench.memory.store import Memory
from clbench.nets.augment import DSA


def condense_new_classes(condenser: Condenser, images: Tensor, labels: Tensor, classes: list[int], ipc: int, *,
                         seed: int, order: int, step: int, make_network: Callable[[int], nn.Module], device: Any,
                         num_classes: int, progress: Callable[[int, int, dict], None] | None = None,
                         extras: dict[str, Any] | None = None) -> SyntheticSet:
    """`ipc` condensed images of each of `classes` from their real `images`, checked by the harness."""
    cond_gen = generator(derive_seed(seed, order, step, "condense"), device)
    task = CondenseTask(
        images=images, labels=labels, classes=tuple(classes), ipc=ipc, generator=cond_gen,
        new_network=network_factory(make_network, cond_gen),
        augment=DSA(),  # the condensers' own (Siamese) augmentation, whatever the training recipe says
        device=device, num_classes=num_classes,
        progress=progress or (lambda done, total, info: None), extras=dict(extras or {}),
    )
    return run_condenser(condenser, task)  # in fp32 on CUDA too (run_condenser says why)


def shrink_older_classes(memory: Memory, keep: int, condenser: Condenser, *, seed: int, order: int,
                         step: int) -> None:
    """Each class already in `memory` down to `keep` budget images (keep * expansion training images), by the
    condenser's `shrink` rule."""
    memory.shrink(keep * expansion(condenser), condenser.shrink, generator(derive_seed(seed, order, step, "shrink")))
