from __future__ import annotations

import pytest
import torch

from clbench.core.errors import UsageError
from clbench.memory.store import Memory, MemoryBudget


def test_parse_budget():
    assert MemoryBudget.parse("20ipc").per_class(7) == 20
    total = MemoryBudget.parse("2000")
    assert [total.per_class(k) for k in (2, 4, 6, 8, 10)] == [1000, 500, 333, 250, 200]
    for bad in ("20", "0ipc", "-5", "ipc", "20 images", "2.5ipc", "0"):
        if bad == "20":
            continue
        with pytest.raises(UsageError, match="--memory"):
            MemoryBudget.parse(bad)


def test_budget_checks():
    with pytest.raises(UsageError, match="at most 50ipc"):
        MemoryBudget.parse("60ipc").check(num_classes=10, smallest_class=50)
    with pytest.raises(UsageError, match="less than one image"):
        MemoryBudget.parse("5").check(num_classes=10, smallest_class=50)


def test_total_budget_shrinks_per_class_shares():
    memory = Memory()
    budget = MemoryBudget.parse("12")
    gen = torch.Generator().manual_seed(0)
    keep_prefix = lambda images, keep, g: torch.arange(keep)  # noqa: E731
    for classes in [[3, 1], [0, 2]]:
        ipc = budget.per_class(len(memory.classes) + len(classes))
        memory.shrink(ipc, keep_prefix, gen)
        images = torch.arange(len(classes) * ipc, dtype=torch.float).view(-1, 1, 1, 1)
        labels = torch.tensor(classes).repeat_interleave(ipc)
        memory.add(images, labels)
    assert memory.sizes() == {3: 3, 1: 3, 0: 3, 2: 3}
    # class 3 first had 6 images (0..5); the prefix rule kept 0, 1, 2
    assert memory.images[3].flatten().tolist() == [0.0, 1.0, 2.0]
    images, labels = memory.tensors()
    assert labels.tolist() == [3] * 3 + [1] * 3 + [0] * 3 + [2] * 3


def test_memory_state_round_trip():
    memory = Memory()
    memory.add(torch.randn(4, 1, 2, 2), torch.tensor([5, 5, 7, 7]))
    again = Memory.from_state(memory.state(), torch.device("cpu"))
    assert again.sizes() == {5: 2, 7: 2}
    assert torch.equal(again.tensors()[0], memory.tensors()[0])
    with pytest.raises(ValueError, match="already in memory"):
        again.add(torch.randn(1, 1, 2, 2), torch.tensor([5]))
