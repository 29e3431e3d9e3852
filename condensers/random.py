"""Random selection: the rehearsal baseline that every condenser must beat."""
from __future__ import annotations

import time

from clbench.condensers.base import Condenser, CondenseTask, SyntheticSet, register, stack_by_class


@register
class Random(Condenser):
    """Real images chosen uniformly at random without replacement, ipc per class."""

    name = "random"

    def condense(self, task: CondenseTask) -> SyntheticSet:
        start = time.perf_counter()
        chosen = {}
        for c, idx in task.class_indices().items():
            pick = task.randperm(idx.numel())[: task.ipc].to(idx.device)
            chosen[c] = task.images[idx[pick]].clone()
        result = stack_by_class(chosen)
        result.facts = {"seconds": time.perf_counter() - start}
        return result
