"""A continual run, resolved before its first step: `prepare` turns a RunConfig into a `Prepared`.

It runs the one resolve step (clbench.protocol.resolve) with the protocol's own training defaults under the
user's, asks the protocol what it refuses, and checks the memory budget against the dataset; `resolved_config`
is the record's `config`, every value the run uses. Errors in the input surface here, not hours later.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from clbench.core.errors import UsageError
from clbench.memory.store import MemoryBudget
from clbench.protocol import config as cfg
from clbench.protocol.base import ContinualProtocol, get_protocol
from clbench.protocol.resolve import PreparedRun, Resolved, resolve


@dataclass
class Prepared(PreparedRun):
    """A continual run, resolved and checked."""

    config: cfg.RunConfig
    resolved: Resolved
    budget: MemoryBudget
    networks_per_step: int
    protocol: ContinualProtocol


def prepare(config: cfg.RunConfig) -> Prepared:
    from clbench.data.streams import split_classes
    from clbench.nets.networks import check_width

    config.validate()
    protocol = get_protocol(config.learner)
    check_width(config.network, config.width)
    resolved = resolve(condenser=config.condenser, opt=config.opt, train=config.train, dataset=config.dataset,
                       data_dir=config.data_dir, device=config.device, profile=config.profile,
                       network=config.network, width=config.width, train_defaults=protocol.train_defaults)
    dataset = resolved.dataset
    protocol.check(config, resolved.recipe)
    budget = MemoryBudget.parse(config.memory)
    split_classes(list(range(dataset.num_classes)), config.steps)
    smallest = dataset.smallest_class()
    if protocol.uses_condenser:
        budget.check(dataset.num_classes, smallest)
        first_share = budget.per_class(dataset.num_classes // config.steps)
        if budget.total is not None and first_share > smallest:
            raise UsageError(f"--memory {budget}: the first step's share ({first_share} per class) exceeds the "
                             f"smallest class ({smallest} images); give a smaller total")
    return Prepared(config, resolved, budget, protocol.networks_per_step(config, resolved.profile), protocol)


def resolved_config(p: Prepared) -> dict[str, Any]:
    """The record's `config`: every value the run uses, defaults included. A protocol that keeps no condensed
    memory records its condenser as "none" and its memory as "all" (the real images of every class seen)."""
    from clbench.nets.networks import takes_width

    c = p.config
    condensed = p.protocol.uses_condenser
    return {
        "learner": c.learner,
        "condenser": c.condenser if condensed else "none",
        "condenser_options": p.resolved.condenser_options_dict() if condensed else {},
        "shrink_rule": getattr(p.resolved.new_condenser(), "shrink_rule", "") if condensed else "",
        "dataset": c.dataset,
        "memory": str(p.budget) if condensed else "all",
        "steps": c.steps,
        "orders": list(range(c.first_order, c.first_order + c.orders)),
        "profile": p.profile,
        "profile_requested": c.profile,
        "device": str(p.device),
        "seed": c.seed,
        "network": c.network,
        "width": p.width if takes_width(c.network) else None,  # the width the run's network was built with
        "networks_per_step": p.networks_per_step,
        "train": dataclasses.asdict(p.recipe),
    }


def bytes_needed(p: Prepared) -> int:
    """A generous estimate of a run's files: per order a snapshot and a checkpoint of the largest memory."""
    ds = p.dataset
    if p.protocol.uses_condenser:
        images = p.budget.total or (p.budget.per_class(ds.num_classes) * ds.num_classes)
    else:
        images = 0
    per_image = ds.channels * int(ds.image_size) ** 2 * 4
    return p.config.orders * images * per_image * 3 + (1 << 20)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """CPU results depend on the intra-op thread count: an order always runs with the run's per-order count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
