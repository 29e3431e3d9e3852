"""Decomposed distribution matching (DDM, WACV 2025): DM plus style matching and intra-class diversity.

Per class: `L = L_DM + lambda * (alpha * L_MM + L_CM) + beta * L_ICD` (see clbench.condense.losses for each term).
MM matches per-channel mean and std of the batch-averaged style taps, CM their Gram matrices, both averaged
over the chosen blocks; ICD pushes each synthetic image's embedding away from its k nearest synthetic
neighbours of the same class. The switches `mm`, `cm` and `icd` turn terms off, so the paper's ablation
(DM, DM+MM, DM+CM, DM+MM+CM, DM+MM+CM+ICD) is a matter of options.

Three choices make it the reference's DDM and keep it so away from the paper's setting:
- Style taps are read after each block's ReLU (`style_tap=post_relu`): the reference ConvNet stores the norm
  output and then applies an in-place ReLU to that very tensor, so what it matches is relu(norm(x)).
- The loss balance follows the network (`balance=embedding`): the DM term is a sum over the embedding's D
  features and grows with D, the style terms are means and do not, so lambda and beta are multiplied by
  D / 2048 (2048 = the paper's ConvNet, width 128 on 32x32 images, where they are the paper's values).
  benchmarks/ddm_balance.py measures the gradients this rule is based on.
- Each class's style loss counts once (`style_accumulation=per_class`); `reference` reproduces the
  reference scripts, whose style accumulator is reset once per iteration, not per class
  (clbench.condense.losses.reference_style_weights).

The loop, sampling, augmentation and network handling are DM's (condensers/dm.py); this file only adds terms.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from clbench.condense.losses import (
    correlation_loss_from_grams,
    diversity_loss_grouped,
    moments_loss_from_maps,
    reference_style_weights,
)
from clbench.condense.statistics import Batch, Features, StyleTaps
from clbench.condensers.base import register
from clbench.condensers.dm import DM, PAPER_EMBED_DIM, DMOptions
from clbench.core.errors import UsageError
from clbench.core.options import option
from clbench.nets.networks import STYLE_TAPS


@dataclass
class DDMOptions(DMOptions):
    lambda_: float = option(1e4, "the paper's lambda: weight of the style loss alpha * L_MM + L_CM")
    alpha: float = option(1.0, "the paper's alpha: weight of moments matching inside the style loss")
    beta: float = option(10.0, "the paper's beta: weight of the intra-class diversity loss")
    k: int = option(2, "neighbours per synthetic image in the diversity loss (the term is 0 where ipc <= k)")
    style_layers: tuple[int, ...] = option((), "blocks (0-based) whose activations give style taps; empty = all")
    style_tap: Literal["post_relu", "pre_relu"] = option(
        "post_relu", "where a block's style tap is read: after its ReLU (what the reference code matches) or "
                     "before it (with instance norm, every pre-ReLU channel then has spatial mean = its bias)")
    balance: Literal["embedding", "none"] = option(
        "embedding", "how lambda and beta follow the network: 'embedding' multiplies them by D / 2048 (D the "
                     "embedding size; 2048 at the paper's width 128 and 32x32 images, where they are the "
                     "paper's values), 'none' applies them as given")
    style_accumulation: Literal["per_class", "reference"] = option(
        "per_class", "'per_class': each class's style loss counts once; 'reference': as the reference scripts "
                     "(one accumulator per iteration: class j's style loss counted again, / layers each time, "
                     "for every later class; 1.17x to 1.43x lambda on average)")
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
        if o.style_tap not in STYLE_TAPS:
            raise UsageError(f"ddm: style_tap must be one of {', '.join(STYLE_TAPS)}, got {o.style_tap!r}")

    def style(self) -> StyleTaps | None:
        o = self.options
        if not (o.mm or o.cm):
            return None
        return StyleTaps(tuple(o.style_layers), maps=o.mm, grams=o.cm, where=o.style_tap)

    def balance_scale(self, embed_dim: int) -> float:
        """The factor lambda and beta are multiplied by in a network with `embed_dim` embedding features."""
        return embed_dim / PAPER_EMBED_DIM if self.options.balance == "embedding" else 1.0

    def weights(self, embed_dim: int = PAPER_EMBED_DIM) -> dict[str, float]:
        o = self.options
        scale = self.balance_scale(embed_dim)
        w = {"dm": 1.0}
        if o.mm:
            w["mm"] = o.lambda_ * o.alpha * scale
        if o.cm:
            w["cm"] = o.lambda_ * scale
        if o.icd:
            w["icd"] = o.beta * scale
        return w

    def terms(self, features: Features, batch: Batch) -> dict[str, Tensor]:
        o = self.options
        out = super().terms(features, batch)
        if o.mm:
            out["mm"] = moments_loss_from_maps(features.real.maps, features.syn.maps)
        if o.cm:
            out["cm"] = correlation_loss_from_grams(features.real.grams, features.syn.grams)
        if o.style_accumulation == "reference" and (o.mm or o.cm):
            layers = len(features.syn.maps or features.syn.grams)
            w = reference_style_weights(batch.num_classes, layers).to(features.syn.emb.device)
            out.update({name: out[name] * w for name in ("mm", "cm") if name in out})
        if o.icd:
            # synthetic images are stored class by class, ipc each: (K, ipc, D)
            grouped = features.syn_emb.reshape(batch.num_classes, batch.ipc, -1)
            out["icd"] = diversity_loss_grouped(grouped, o.k)
        return out
