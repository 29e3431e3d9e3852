"""Decomposed distribution matching (DDM, WACV 2025): DM plus style matching and intra-class diversity.

Per class: `L = L_DM + lambda * (alpha * L_MM + L_CM) + beta * L_ICD` (see clbench.losses for each term).
MM matches per-channel mean and std of the batch-averaged style taps, CM their Gram matrices, both averaged
over the chosen blocks; ICD pushes each synthetic image's embedding away from its k nearest synthetic
neighbours of the same class. The switches `mm`, `cm` and `icd` turn terms off, so the paper's ablation
(DM, DM+MM, DM+CM, DM+MM+CM, DM+MM+CM+ICD) is a matter of options. Each class's style loss is its own (the
reference scripts never reset their style accumulator between classes; that is not reproduced).

The loop, sampling, augmentation and network handling are DM's (condensers/dm.py); this file only adds terms.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from clbench.errors import UsageError
from clbench.losses import correlation_loss_from_grams, diversity_loss_grouped, moments_loss_from_maps
from clbench.options import option
from condensers.base import register
from condensers.dm import DM, Batch, DMOptions, Features, StyleTaps


@dataclass
class DDMOptions(DMOptions):
    lambda_: float = option(1e4, "the paper's lambda: weight of the style loss alpha * L_MM + L_CM")
    alpha: float = option(1.0, "the paper's alpha: weight of moments matching inside the style loss")
    beta: float = option(10.0, "the paper's beta: weight of the intra-class diversity loss")
    k: int = option(2, "neighbours per synthetic image in the diversity loss (the term is 0 where ipc <= k)")
    style_layers: tuple[int, ...] = option((), "blocks (0-based) whose norm outputs give style taps; empty = all")
    mm: bool = option(True, "moments matching (per-channel mean and std of the style taps)")
    cm: bool = option(True, "correlation matching (Gram matrices of the style taps)")
    icd: bool = option(True, "intra-class diversity (KL to the k nearest synthetic neighbours)")


@register
class DDM(DM):
    """Decomposed distribution matching: DM plus style (moments, Gram) matching and intra-class diversity."""

    name = "ddm"
    Options = DDMOptions

    def __init__(self, options: DDMOptions | None = None):
        super().__init__(options)
        o = self.options
        if o.k < 1:
            raise UsageError(f"ddm: k must be at least 1, got {o.k}")
        if any(i < 0 for i in o.style_layers):
            raise UsageError(f"ddm: style_layers must be block indices >= 0, got {o.style_layers}")

    def style(self) -> StyleTaps | None:
        o = self.options
        return StyleTaps(tuple(o.style_layers), maps=o.mm, grams=o.cm) if (o.mm or o.cm) else None

    def weights(self) -> dict[str, float]:
        o = self.options
        w = {"dm": 1.0}
        if o.mm:
            w["mm"] = o.lambda_ * o.alpha
        if o.cm:
            w["cm"] = o.lambda_
        if o.icd:
            w["icd"] = o.beta
        return w

    def terms(self, features: Features, batch: Batch) -> dict[str, Tensor]:
        o = self.options
        out = super().terms(features, batch)
        if o.mm:
            out["mm"] = moments_loss_from_maps(features.real.maps, features.syn.maps)
        if o.cm:
            out["cm"] = correlation_loss_from_grams(features.real.grams, features.syn.grams)
        if o.icd:
            # synthetic images are stored class by class, ipc each: (K, ipc, D)
            grouped = features.syn_emb.reshape(batch.num_classes, batch.ipc, -1)
            out["icd"] = diversity_loss_grouped(grouped, o.k)
        return out
