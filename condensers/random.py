"""Random selection: the rehearsal baseline that every condenser must beat."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from clbench.condensers.base import Condenser, CondenseTask, SyntheticSet, register, stack_by_class
from clbench.core.errors import UsageError
from clbench.core.options import option


@dataclass
class RandomOptions:
    draw: Literal["reference", "generator"] = option(
        "reference", "how the images are drawn: 'reference' = as the reference code's CL_DM.py draws them for a "
                     "class order (numpy seeded with the order number, then each class's images permuted in the "
                     "order's sequence), so that a class order gives the reference's own random memory; "
                     "'generator' = from the task's seeded torch generator (clbench until December 2026, and the "
                     "quick profile). Where there is no class order (the static protocol) both draw from the "
                     "generator", quick="generator")


def reference_permutations(order: int, class_order: list[int], class_sizes: list[int],
                           classes: list[int]) -> dict[int, np.ndarray]:
    """The permutation CL_DM.py draws for each of `classes` in class order `order`.

    The reference seeds numpy's global generator with the order number, draws the class order with
    `np.random.permutation(num_classes)`, then, class by class in that order, `np.random.permutation` of the
    class's training-set indices (of which it keeps the first ipc). The draws of the classes before `classes`
    are replayed, so that each step's classes get the numbers the reference gives them.
    """
    state = np.random.RandomState(order)
    state.permutation(len(class_sizes))  # the class order itself
    wanted, found = set(classes), {}
    for c in class_order:
        permutation = state.permutation(class_sizes[c])  # = permutation(indices)[k] as positions in the class
        if c in wanted:
            found[c] = permutation
            if len(found) == len(wanted):
                break
    return found


@register
class Random(Condenser):
    """Real images chosen uniformly at random without replacement, ipc per class."""

    name = "random"
    Options = RandomOptions
    selects_real_images = True

    def condense(self, task: CondenseTask) -> SyntheticSet:
        start = time.perf_counter()
        indices = task.class_indices()  # each class's images in the training split's order
        reference = self.options.draw == "reference" and "class_order" in task.extras
        picks = _reference_picks(task, indices) if reference else {
            c: task.randperm(idx.numel())[: task.ipc].to(idx.device) for c, idx in indices.items()}
        result = stack_by_class({c: task.images[indices[c][picks[c]]].clone() for c in indices})
        result.facts = {"seconds": time.perf_counter() - start, "draw": "reference" if reference else "generator"}
        return result


def _reference_picks(task: CondenseTask, indices: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    sizes: list[Any] = task.extras["class_sizes"]
    for c, idx in indices.items():
        if idx.numel() != sizes[c]:
            raise UsageError(f"random --opt draw=reference: class {c} has {idx.numel()} images in this step but "
                             f"{sizes[c]} in the training split; the reference draw needs all of them (or use "
                             f"--opt draw=generator)")
    found = reference_permutations(int(task.extras["order"]), list(task.extras["class_order"]), list(sizes),
                                   list(indices))
    return {c: torch.from_numpy(found[c][: task.ipc]).to(idx.device) for c, idx in indices.items()}
