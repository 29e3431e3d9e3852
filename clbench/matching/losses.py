"""The loss terms of the distribution-matching condensers (DM, DDM's add-ons, DataDAM), as pure functions.

Each term exists in two forms: a plain one on one class's tensors (the definition, easy to check by hand) and
one on the per-class statistics of K classes at once (mean embeddings, batch-averaged feature maps and Gram
matrices), returning one loss per class. Every term depends on a class's batch only through such means, so
DM and DDM gather them chunk by chunk (condensers/dm.py, `class_statistics`). `segment_mean` computes such
means for samples in any order (a segment id per sample); the tests build their comparisons with it and check
that both forms agree.

Shapes: embeddings are (N, D); style taps are (N, C, H, W); `segment` is a LongTensor (N,) of values in
`[0, num_segments)`. Callers detach (or compute under `no_grad`) the real side.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

SIGMA_EPS = 1e-5  # added to the variance before the square root in moments matching (as in the paper's code)


# ----------------------------------------------------------------------------------------------- segments
def segment_sum(x: Tensor, segment: Tensor, num_segments: int) -> Tensor:
    """Sum of the rows of `x` in each segment: (N, ...) -> (num_segments, ...). Out of place (autograd flows)."""
    flat = x.reshape(x.shape[0], -1)
    sums = flat.new_zeros(num_segments, flat.shape[1]).index_add(0, segment, flat)
    return sums.reshape(num_segments, *x.shape[1:])


def segment_count(segment: Tensor, num_segments: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Rows per segment (num_segments,), as `dtype`."""
    # index_add rather than bincount: bincount's output size depends on the data (a host sync on a GPU)
    ones = torch.ones(segment.shape[0], dtype=dtype, device=segment.device)
    return torch.zeros(num_segments, dtype=dtype, device=segment.device).index_add_(0, segment, ones)


def segment_mean(x: Tensor, segment: Tensor, num_segments: int) -> Tensor:
    """Mean of the rows of `x` in each segment: (N, ...) -> (num_segments, ...). An empty segment gives 0."""
    counts = segment_count(segment, num_segments, x.dtype).clamp_min(1)
    return segment_sum(x, segment, num_segments) / counts.view(-1, *([1] * (x.dim() - 1)))


# ----------------------------------------------------------------------------------------------- DM term
def dm_loss(real_emb: Tensor, syn_emb: Tensor) -> Tensor:
    """Squared Euclidean distance between the mean embeddings: sum_d (mean real - mean syn)^2."""
    return ((real_emb.mean(0) - syn_emb.mean(0)) ** 2).sum()


def dm_loss_from_means(real_means: Tensor, syn_means: Tensor) -> Tensor:
    """`dm_loss` of K classes from their mean embeddings (K, D): (K,)."""
    return ((real_means - syn_means) ** 2).sum(1)


# ----------------------------------------------------------------------------------------------- DataDAM
def spatial_attention(tap: Tensor, power: float) -> Tensor:
    """DataDAM's spatial attention of feature maps (N, C, H, W): per position sum_k |f_k|^p over the channels,
    flattened to (N, H*W) and scaled to unit L2 norm per sample (F.normalize's eps guards an all-zero map)."""
    return F.normalize(tap.abs().pow(power).sum(1).flatten(1), p=2.0, dim=1)


def attention_loss(real_taps: Sequence[Tensor], syn_taps: Sequence[Tensor], power: float) -> Tensor:
    """DataDAM's attention term of one class: sum over layers of the squared distance between the mean
    attention vectors of the real and the synthetic images."""
    return sum(((spatial_attention(r, power).mean(0) - spatial_attention(s, power).mean(0)) ** 2).sum()
               for r, s in zip(real_taps, syn_taps))


def attention_loss_from_means(real_means: Sequence[Tensor], syn_means: Sequence[Tensor]) -> Tensor:
    """`attention_loss` of K classes from their mean attention vectors, one (K, H*W) per layer: (K,)."""
    return sum(((r - s) ** 2).sum(1) for r, s in zip(real_means, syn_means))


# ----------------------------------------------------------------------------------------------- MM
def moments_from_maps(real_map: Tensor, syn_map: Tensor) -> Tensor:
    """Moments matching between batch-averaged feature maps (K, C, H, W) of K pairs: (K,).

    Per channel, the spatial mean and sigma = sqrt(unbiased variance over H*W + 1e-5);
    L = 0.5 * (mean_c (mu_s - mu_r)^2 + mean_c (sigma_s - sigma_r)^2).
    """
    r = real_map.flatten(2)
    s = syn_map.flatten(2)
    mu_r, mu_s = r.mean(2), s.mean(2)
    sigma_r = torch.sqrt(r.var(2, unbiased=True) + SIGMA_EPS)
    sigma_s = torch.sqrt(s.var(2, unbiased=True) + SIGMA_EPS)
    return 0.5 * (((mu_s - mu_r) ** 2).mean(1) + ((sigma_s - sigma_r) ** 2).mean(1))


def moments_loss(real_tap: Tensor, syn_tap: Tensor) -> Tensor:
    """L_MM of one class on one layer: the batch is averaged into one C x H x W map per side first."""
    return moments_from_maps(real_tap.mean(0, keepdim=True), syn_tap.mean(0, keepdim=True))[0]


def moments_loss_from_maps(real_maps: Sequence[Tensor], syn_maps: Sequence[Tensor]) -> Tensor:
    """L_MM of K classes from their batch-averaged maps, one (K, C, H, W) per layer, averaged over layers: (K,)."""
    return torch.stack([moments_from_maps(r, s) for r, s in zip(real_maps, syn_maps, strict=True)]).mean(0)


# ----------------------------------------------------------------------------------------------- CM
def gram(tap: Tensor) -> Tensor:
    """Per-sample Gram matrix G = F F^T / (C*H*W), F the C x HW matrix of the sample: (N, C, C)."""
    n, c, h, w = tap.shape
    f = tap.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def correlation_loss(real_tap: Tensor, syn_tap: Tensor) -> Tensor:
    """L_CM of one class on one layer: sum of squared differences of the batch-averaged Gram matrices."""
    return ((gram(real_tap).mean(0) - gram(syn_tap).mean(0)) ** 2).sum()


def correlation_loss_from_grams(real_grams: Sequence[Tensor], syn_grams: Sequence[Tensor]) -> Tensor:
    """L_CM of K classes from their batch-averaged Gram matrices, one (K, C, C) per layer, averaged over layers."""
    return torch.stack([((r - s) ** 2).sum((1, 2)) for r, s in zip(real_grams, syn_grams, strict=True)]).mean(0)


def layer_mean(term: Callable[[Tensor, Tensor], Tensor], real_taps: Sequence[Tensor],
               syn_taps: Sequence[Tensor]) -> Tensor:
    """Average a one-layer term (`moments_loss`, `correlation_loss`) over layers, as DDM does."""
    return torch.stack([term(r, s) for r, s in zip(real_taps, syn_taps, strict=True)]).mean()


def reference_style_weights(num_classes: int, num_layers: int) -> Tensor:
    """The weight each class's style loss gets in the reference DDM scripts: (num_classes,).

    Those scripts keep one style accumulator per iteration, not per class: for each class in turn they add
    the class's style loss summed over layers, divide the accumulator by the number of layers L, and add the
    accumulator to the loss. Class j's layer-averaged style loss is thereby counted once for itself and
    again, divided by L each time, in every later class's loss: w_j = sum_{m=0}^{K-1-j} L^-m.
    """
    if num_classes < 1 or num_layers < 1:
        raise ValueError(f"need at least one class and one layer, got {num_classes} and {num_layers}")
    remaining = torch.arange(num_classes, 0, -1, dtype=torch.float64)  # K - j terms in class j's sum
    ratio = 1.0 / num_layers
    weights = remaining if num_layers == 1 else (1 - ratio ** remaining) / (1 - ratio)
    return weights.float()


# ----------------------------------------------------------------------------------------------- ICD
def diversity_loss_grouped(syn_emb: Tensor, k: int) -> Tensor:
    """L_ICD of K groups of synthetic embeddings (K, ipc, D) at once: (K,).

    For each sample i, m_i is the mean of its k nearest OTHER samples of the group (Euclidean; the choice of
    neighbours carries no gradient, their features do); KL_i = sum_d p log(p/q) with p = softmax(f_i),
    q = softmax(m_i); L = -mean_i KL_i, so that minimising L pushes samples away from their neighbours.
    Where ipc <= k the term is undefined and is 0 (a tensor attached to the graph).
    """
    if syn_emb.dim() != 3:
        raise ValueError(f"expected (groups, ipc, D) embeddings, got shape {tuple(syn_emb.shape)}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    groups, ipc, _ = syn_emb.shape
    if ipc <= k:
        return syn_emb.sum((1, 2)) * 0.0
    with torch.no_grad():
        dist = torch.cdist(syn_emb, syn_emb)  # (K, ipc, ipc)
        dist.diagonal(dim1=1, dim2=2).fill_(float("inf"))  # never one's own neighbour
        neighbours = dist.topk(k, dim=2, largest=False).indices  # (K, ipc, k)
    group = torch.arange(groups, device=syn_emb.device)[:, None, None]
    m = syn_emb[group, neighbours].mean(2)  # (K, ipc, k, D) -> (K, ipc, D)
    log_p = F.log_softmax(syn_emb, dim=2)
    log_q = F.log_softmax(m, dim=2)
    kl = (log_p.exp() * (log_p - log_q)).sum(2)  # (K, ipc)
    return -kl.mean(1)


def diversity_loss(syn_emb: Tensor, k: int) -> Tensor:
    """L_ICD of one class's synthetic embeddings (ipc, D): a scalar (0 where ipc <= k)."""
    return diversity_loss_grouped(syn_emb[None], k)[0]
