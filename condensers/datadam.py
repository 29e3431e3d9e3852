"""DataDAM (Sajedi et al., ICCV 2023): match the spatial attention of real and synthetic images in random networks.

Each iteration draws a fresh random ConvNet with frozen weights, one real batch per class (64 images) and one
Siamese DSA draw per class, as DM does. Two terms per class, summed over classes:

    attention  sum over the blocks but the last of || mean_i a(real_i) - mean_j a(syn_j) ||^2, where a(f) is the
               block's ReLU output summed over channels as |f|^p, flattened, scaled to unit length per image
    dm         || mean_i embed(real_i) - mean_j embed(syn_j) ||^2, DM's term on the final embedding

The public code weights them 100 and 100 * task_balance (0.01), so the embedding term keeps DM's weight 1.
The DM loop, the add-ons (`sm`, `icd`) and the memory rules are DM's (condensers/dm.py): DataDAM is a base
objective on DM's per-class statistics, gathered in the same forward pass as the add-ons' taps.

The matching network: the public code uses batch norm and sends all classes' real images through in one pass
(and all synthetic ones in another), so a class's statistics depend on the other classes of the step; its paper
reports instance norm. `norm=instance` is the default here (the paper's network, the same family as DM and DDM so
that "+SM" compares like with like, and exact in cache-sized chunks); `norm=batch` reproduces the code, passes
included.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from clbench.condensers.base import CondenseTask, register
from clbench.condensers.dm import DM, DMOptions
from clbench.core.errors import UsageError
from clbench.core.options import option
from clbench.matching.losses import attention_loss_from_means, dm_loss_from_means
from clbench.matching.statistics import Batch, Features, StyleTaps, frozen
from clbench.nets.networks import set_norm


@dataclass
class DataDAMOptions(DMOptions):
    batch_real: int = option(64, "real images per class per iteration (all of them where a class has fewer)", min=1)
    power: float = option(1.0, "p of the spatial attention sum_k |f_k|^p (the public code: 1; its README: 4)",
                          above=0)
    attention_weight: float = option(100.0, "weight of the attention term (the public code's 100, per block)", min=0)
    task_balance: float = option(0.01, "the embedding term's weight relative to attention_weight (the public "
                                       "code's 0.01: weight 1, as in DM)", min=0)
    attention_layers: tuple[int, ...] = option((), "blocks (0-based) whose ReLU outputs give attention maps; empty "
                                                   "= every block but the last (the public code)")
    norm: Literal["instance", "batch"] = option(
        "instance", "norm of the random matching ConvNet: 'instance' (the paper), or 'batch' (the public code: "
                    "batch statistics over all classes' real images in one pass, synthetic ones in another)")


@register
class DataDAM(DM):
    """DataDAM: spatial attention of the ReLU outputs matched block by block, plus DM's embedding term."""

    name = "datadam"
    Options = DataDAMOptions

    def __init__(self, options: DataDAMOptions | None = None):
        super().__init__(options)
        o = self.options
        if o.norm == "batch" and o.network and not o.network.startswith("convnet"):
            raise UsageError(f"datadam: norm=batch needs a ConvNet matching network, not {o.network!r}")

    def base_statistics(self) -> StyleTaps:
        o = self.options
        return StyleTaps(maps=False, grams=False, where="post_relu", attention=o.power,
                         attention_layers=tuple(o.attention_layers))

    def base_weights(self) -> dict[str, float]:
        o = self.options
        return {"attention": o.attention_weight, "dm": o.attention_weight * o.task_balance}

    def base_terms(self, features: Features, batch: Batch) -> dict[str, Tensor]:
        return {"attention": attention_loss_from_means(features.real.attention, features.syn.attention),
                "dm": dm_loss_from_means(features.real.emb, features.syn.emb)}

    def new_network(self, task: CondenseTask, seed: int | None = None) -> nn.Module:
        net = super().new_network(task, seed)
        if self.options.norm == "batch":
            net = frozen(set_norm(net, "batch"))
        return net

    def forward_plan(self, net: nn.Module, device: torch.device) -> tuple[bool, int]:
        """All classes together always; with batch norm in one pass each for real and synthetic images, whose
        batch statistics then span every class, as in the public code."""
        per_class, chunk = super().forward_plan(net, device)
        return False, 0 if per_class else chunk
