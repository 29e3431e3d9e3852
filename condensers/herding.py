"""Herding selection (Welling 2009, as used by iCaRL and the DM paper's continual-learning baseline)."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from clbench.condensers.base import Condenser, CondenseTask, SyntheticSet, register, stack_by_class
from clbench.core.options import option
from clbench.core.speed import forward_chunk


def herding_order(features: Tensor, count: int) -> Tensor:
    """Greedy herding: indices whose running mean tracks the class mean feature, most important first.

    Step i picks argmin_x ||(i+1) mu - sum(selected) - phi(x)|| among the samples not yet picked.
    """
    n = features.shape[0]
    count = min(count, n)
    mu = features.mean(dim=0)
    running = torch.zeros_like(mu)
    taken = torch.zeros(n, dtype=torch.bool, device=features.device)
    order = []
    for i in range(count):
        distances = torch.linalg.vector_norm((i + 1) * mu - running - features, dim=1)
        distances = distances.masked_fill(taken, float("inf"))
        j = int(torch.argmin(distances))
        order.append(j)
        taken[j] = True
        running += features[j]
    return torch.tensor(order, dtype=torch.long, device=features.device)


@dataclass
class HerdingOptions:
    embed_seed: int = option(0, "seed of the randomly initialised embedding network (fixed: same for every class)")
    network: str = option("", "embedding architecture (a clbench network name); empty = the run's network")
    batch_size: int = option(0, "images per embedding pass (speed and memory only); 0 = 32 on a CPU (cache-sized), "
                                "all of a class at once on a GPU", min=0)


@register
class Herding(Condenser):
    """Real images chosen by herding in the embedding of a fixed randomly initialised network."""

    name = "herding"
    selects_real_images = True
    Options = HerdingOptions
    shrink_rule = "herding prefix (keeps the first images of the herding order)"

    def condense(self, task: CondenseTask) -> SyntheticSet:
        start = time.perf_counter()
        net = self._network(task)
        chosen = {}
        with torch.no_grad():
            net.eval()
            for c, idx in task.class_indices().items():
                images = task.images[idx]
                step = self.options.batch_size or forward_chunk(task.device) or len(images)
                features = torch.cat([net.embed(images[s : s + step]) for s in range(0, len(images), step)])
                chosen[c] = images[herding_order(features.float(), task.ipc)].clone()
        result = stack_by_class(chosen)
        result.facts = {"seconds": time.perf_counter() - start, "embed_seed": self.options.embed_seed}
        return result

    def _network(self, task: CondenseTask):
        if not self.options.network:
            return task.new_network(seed=self.options.embed_seed)
        from clbench.nets.networks import build_network

        channels, size = task.images.shape[1], task.images.shape[-1]
        return build_network(self.options.network, channels, task.num_classes, size,
                             seed=self.options.embed_seed, device=task.device)

    def shrink(self, images: Tensor, keep: int, generator: torch.Generator) -> Tensor:
        # Images are stored in herding order, so the first `keep` are the best `keep`.
        return torch.arange(keep)
