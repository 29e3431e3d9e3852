"""Loss terms that add to any distribution-matching objective: style matching (SM) and intra-class diversity (ICD).

The seed paper's Table 5 shows style matching is orthogonal to the matching objective, so in clbench it is an
add-on, not a condenser: a DM-family condenser (clbench.condensers.dm.DM and what derives from it: `ddm`,
`datadam`, `idm`, a user's plugin) computes its own base terms from per-class statistics, and each add-on switched
on in its options asks the same forward pass for what it needs (SM: the style taps' batch-averaged maps and
Gram matrices; ICD: the synthetic images' embeddings, always kept) and returns its terms per class with their
weights. `ddm` is `dm` with both add-ons on by default.

    SM   lambda * (alpha * L_MM + L_CM)      moments and Gram matrices of the style taps (clbench.matching.losses)
    ICD  beta * L_ICD                        KL of each synthetic embedding to its k nearest neighbours' mean

`balance=embedding` multiplies lambda and beta by D / 2048 (D the condensation network's embedding size; 2048
at the paper's ConvNet width 128 on 32x32 images, where they are the paper's values): the DM term sums D
squared differences and grows with D, these terms do not (docs/methods.md has the measurements).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from clbench.core.errors import UsageError
from clbench.core.options import option
from clbench.matching.losses import (
    correlation_loss_from_grams,
    diversity_loss_grouped,
    moments_loss_from_maps,
    reference_style_weights,
)
from clbench.matching.statistics import Batch, Features, StyleTaps
from clbench.nets.networks import STYLE_TAPS

PAPER_EMBED_DIM = 2048  # ConvNet width 128, 3 blocks, 32x32 images: the setting the papers' weights are for
ADDON_SWITCHES = ("sm", "icd")


@dataclass
class AddOnOptions:
    """The add-ons' switches and options, mixed into every DM-family condenser's options."""

    sm: bool = option(False, "style matching add-on: lambda * (alpha * L_MM + L_CM) on the style taps")
    lambda_: float = option(1e4, "the paper's lambda: weight of the style loss alpha * L_MM + L_CM", min=0)
    alpha: float = option(1.0, "the paper's alpha: weight of moments matching inside the style loss", min=0)
    mm: bool = option(True, "with sm: moments matching (per-channel mean and std of the style taps)")
    cm: bool = option(True, "with sm: correlation matching (Gram matrices of the style taps)")
    style_layers: tuple[int, ...] = option((), "blocks (0-based) whose activations give style taps; empty = all")
    style_tap: Literal["post_relu", "pre_relu"] = option(
        "post_relu", "where a block's style tap is read: after its ReLU (what the reference code matches) or "
                     "before it (with instance norm, every pre-ReLU channel then has spatial mean = its bias)")
    style_accumulation: Literal["per_class", "reference"] = option(
        "per_class", "'per_class': each class's style loss counts once; 'reference': as the reference scripts "
                     "(one accumulator per iteration: class j's style loss counted again, / layers each time, "
                     "for every later class; 1.17x to 1.43x lambda on average)")
    icd: bool = option(False, "intra-class diversity add-on: beta * L_ICD (KL to the k nearest synthetic "
                              "neighbours)")
    beta: float = option(10.0, "the paper's beta: weight of the intra-class diversity loss", min=0)
    k: int = option(2, "neighbours per synthetic image in the diversity loss (the term is 0 where ipc <= k)")
    balance: Literal["embedding", "none"] = option(
        "embedding", "how lambda and beta follow the network: 'embedding' multiplies them by D / 2048 (D the "
                     "embedding size; 2048 at the paper's width 128 and 32x32 images, where they are the "
                     "paper's values), 'none' applies them as given")


def check_options(name: str, o: AddOnOptions) -> None:
    """The add-on options' ranges, checked when the condenser is made (before any work)."""
    if o.k < 1:
        raise UsageError(f"{name}: k must be at least 1, got {o.k}")
    if any(i < 0 for i in o.style_layers):
        raise UsageError(f"{name}: style_layers must be block indices >= 0, got {o.style_layers}")
    if o.style_tap not in STYLE_TAPS:
        raise UsageError(f"{name}: style_tap must be one of {', '.join(STYLE_TAPS)}, got {o.style_tap!r}")


def balance_scale(o: AddOnOptions, embed_dim: int) -> float:
    """The factor lambda and beta are multiplied by in a network with `embed_dim` embedding features."""
    return embed_dim / PAPER_EMBED_DIM if o.balance == "embedding" else 1.0


class StyleMatching:
    """SM: moments matching (MM) and correlation matching (CM) of the style taps, weighted by lambda."""

    def __init__(self, o: AddOnOptions):
        self.o = o

    @property
    def active(self) -> bool:
        return self.o.sm and (self.o.mm or self.o.cm)

    def taps(self) -> StyleTaps:
        o = self.o
        return StyleTaps(tuple(o.style_layers), maps=o.mm, grams=o.cm, where=o.style_tap)

    def weights(self, scale: float) -> dict[str, float]:
        o, w = self.o, {}
        if o.mm:
            w["mm"] = o.lambda_ * o.alpha * scale
        if o.cm:
            w["cm"] = o.lambda_ * scale
        return w

    def terms(self, features: Features, batch: Batch) -> dict[str, Tensor]:
        o, out = self.o, {}
        if o.mm:
            out["mm"] = moments_loss_from_maps(features.real.maps, features.syn.maps)
        if o.cm:
            out["cm"] = correlation_loss_from_grams(features.real.grams, features.syn.grams)
        if o.style_accumulation == "reference":
            layers = len(features.syn.maps or features.syn.grams)
            w = reference_style_weights(batch.num_classes, layers).to(features.syn.emb.device)
            out = {name: value * w for name, value in out.items()}
        return out


class Diversity:
    """ICD: minus the KL of each synthetic embedding to its k nearest synthetic neighbours' mean, weighted by beta."""

    def __init__(self, o: AddOnOptions):
        self.o = o

    @property
    def active(self) -> bool:
        return self.o.icd

    def weights(self, scale: float) -> dict[str, float]:
        return {"icd": self.o.beta * scale}

    def terms(self, features: Features, batch: Batch) -> dict[str, Tensor]:
        # synthetic images are stored class by class, ipc each: (K, ipc, D)
        grouped = features.syn_emb.reshape(batch.num_classes, batch.ipc, -1)
        return {"icd": diversity_loss_grouped(grouped, self.o.k)}


def enabled(o: AddOnOptions) -> list[StyleMatching | Diversity]:
    """The add-ons the options switch on, in the order their terms are added (SM, then ICD)."""
    return [addon for addon in (StyleMatching(o), Diversity(o)) if addon.active]
