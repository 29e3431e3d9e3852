"""Decomposed distribution matching (DDM, WACV 2025): DM with its two add-ons on, style matching and diversity.

Per class: `L = L_DM + lambda * (alpha * L_MM + L_CM) + beta * L_ICD`. MM matches per-channel mean and std of
the batch-averaged style taps, CM their Gram matrices, both averaged over the chosen blocks; ICD pushes each
synthetic image's embedding away from its k nearest synthetic neighbours of the same class. The terms are the
add-ons of clbench.matching.addons (`sm`, `icd`), which any DM-family condenser can switch on; DDM is DM with
both on by default. The switches `sm` (or `mm`, `cm`) and `icd` turn terms off, so the paper's ablation (DM,
DM+MM, DM+CM, DM+MM+CM, DM+MM+CM+ICD) is a matter of options.

Three fidelity options (docs/methods.md): the first makes it the reference code's DDM, the other two are
clbench's choices for settings the reference never met (another width, the class accumulation):
- Style taps are read after each block's ReLU (`style_tap=post_relu`): the reference ConvNet stores the norm
  output and then applies an in-place ReLU to that very tensor, so what it matches is relu(norm(x)).
- The loss balance follows the network (`balance=embedding`): the DM term is a sum over the embedding's D
  features and grows with D, the style terms are means and do not, so lambda and beta are multiplied by
  D / 2048 (2048 = the paper's ConvNet, width 128 on 32x32 images, where they are the paper's values).
  benchmarks/ddm_balance.py measures the gradients this rule is based on.
- Each class's style loss counts once (`style_accumulation=per_class`); `reference` reproduces the
  reference scripts, whose style accumulator is reset once per iteration, not per class
  (clbench.matching.losses.reference_style_weights).
"""
from __future__ import annotations

from dataclasses import dataclass

from clbench.condensers.base import register
from clbench.condensers.dm import DM, DMOptions
from clbench.core.options import option


@dataclass
class DDMOptions(DMOptions):
    sm: bool = option(True, "style matching add-on: lambda * (alpha * L_MM + L_CM) on the style taps")
    icd: bool = option(True, "intra-class diversity add-on: beta * L_ICD (KL to the k nearest synthetic "
                             "neighbours)")


@register
class DDM(DM):
    """Decomposed distribution matching: DM plus style (moments, Gram) matching and intra-class diversity."""

    name = "ddm"
    Options = DDMOptions
