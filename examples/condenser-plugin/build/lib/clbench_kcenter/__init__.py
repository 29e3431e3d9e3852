"""k-center greedy selection (Sener & Savarese 2018, "core-set") as a clbench condenser plugin.

For each class, embed its real images with a fixed randomly initialised network, then pick images one at a
time, each the one farthest from those already picked: the picked set covers the class's embedding with the
smallest radius a greedy choice can give. The first pick is the image nearest the class mean, so the
selection needs no randomness at all: the same data always gives the same memory.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from clbench.condensers.base import Condenser, CondenseTask, SyntheticSet, stack_by_class
from clbench.core.options import option

__all__ = ["KCenter", "KCenterOptions", "kcenter_order"]


def kcenter_order(features: Tensor, count: int) -> Tensor:
    """Indices of `count` rows of `features` (n, d) by greedy k-center, in the order they were picked.

    Any prefix of the order is itself the greedy k-center choice for that many centres, which is what lets a
    total memory budget shrink a class by keeping a prefix.
    """
    n = features.shape[0]
    count = min(count, n)
    first = torch.linalg.vector_norm(features - features.mean(dim=0), dim=1).argmin()
    nearest = torch.linalg.vector_norm(features - features[first], dim=1)  # distance to the closest centre
    order = [int(first)]
    for _ in range(count - 1):
        j = int(nearest.argmax())
        order.append(j)
        nearest = torch.minimum(nearest, torch.linalg.vector_norm(features - features[j], dim=1))
    return torch.tensor(order, dtype=torch.long, device=features.device)


@dataclass
class KCenterOptions:
    embed_seed: int = option(0, "seed of the randomly initialised embedding network (the same for every class)")
    batch_size: int = option(1024, "images per forward pass when embedding (memory only, not results)")


class KCenter(Condenser):
    """Real images chosen by greedy k-center cover in a random network's embedding."""

    name = "kcenter"
    Options = KCenterOptions
    shrink_rule = "k-center prefix (keeps the first images picked)"

    def condense(self, task: CondenseTask) -> SyntheticSet:
        net = task.new_network(seed=self.options.embed_seed).eval()
        step = self.options.batch_size
        chosen = {}
        with torch.no_grad():
            for c, idx in task.class_indices().items():
                images = task.images[idx]
                features = torch.cat([net.embed(images[s: s + step]) for s in range(0, len(images), step)])
                chosen[c] = images[kcenter_order(features.float(), task.ipc)].clone()
        result = stack_by_class(chosen)
        result.facts = {"embed_seed": self.options.embed_seed}
        return result

    def shrink(self, images: Tensor, keep: int, generator: torch.Generator) -> Tensor:
        # Images are stored in the order they were picked, so the first `keep` are the greedy choice for `keep`.
        return torch.arange(keep)
