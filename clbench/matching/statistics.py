"""What distribution-matching condensers compare, gathered fast: per-class statistics of a batch in a network.

Every DM-family loss term depends on a class's images only through per-class means: mean embeddings, and for
style matching the batch-averaged feature maps and Gram matrices of the style taps. `embed_batch` gathers them
for one iteration's `Batch` (real images under `no_grad`, synthetic ones with autograd): all classes in one
pass where samples are independent (instance norm), in cache-sized chunks whose per-class sums are added up
(`class_statistics`), or class by class where batch norm mixes the samples of a batch, as in the reference.
`ClassSampler` draws the real batch of every class at once; `siamese_augment` gives each class one DSA draw,
applied to its real and synthetic images alike.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field, replace
from typing import Callable

import torch
from torch import Tensor, nn

from clbench.core.errors import UsageError
from clbench.matching.losses import gram, spatial_attention
from clbench.nets.augment import DSA, DSAParams
from clbench.nets.networks import samples_are_independent


@dataclass
class Batch:
    """One iteration's images, class by class: real (sampled) and synthetic, with the class position of each.

    `params`, once set by `siamese_augment`, is one DSA draw per class; it is applied to each chunk of images
    just before that chunk goes through the network (`augmented`), so no augmented copy of the whole real
    batch is ever held.
    """

    real: Tensor
    real_segment: Tensor  # (n_real,) class position 0..K-1
    real_counts: list[int]  # real images per class (host side, for the per-class path)
    syn: Tensor
    syn_segment: Tensor
    num_classes: int  # K, the classes of this step
    ipc: int
    augment: DSA | None = None
    params: DSAParams | None = None  # (K,) one draw per class, shared by its real and synthetic images

    def augmented(self, images: Tensor, segment: Tensor) -> Tensor:
        """`images` (of the classes `segment`) through their classes' DSA draw; unchanged without one."""
        if self.params is None:
            return images
        return self.augment.apply(images, self.params.select(segment.to(self.params.token.device)))


def siamese_augment(augment: DSA, batch: Batch, generator: torch.Generator) -> Batch:
    """The batch with one DSA draw per class, to be applied to that class's real and synthetic images alike."""
    groups = torch.arange(batch.num_classes, device=generator.device)
    return replace(batch, augment=augment, params=augment.sample(groups, generator, share_params=True))


@dataclass(frozen=True)
class StyleTaps:
    """Which statistics of the network's block taps to gather, and where a block's tap is read: batch-averaged
    maps and Gram matrices of the blocks `layers` (empty: all) for style matching, and DataDAM's mean spatial
    attention (power `attention`; 0: none) of the blocks `attention_layers` (empty: every block but the last)."""

    layers: tuple[int, ...] = ()
    maps: bool = True  # batch-averaged feature maps (moments matching)
    grams: bool = True  # batch-averaged Gram matrices (correlation matching)
    where: str = "post_relu"  # each block after its ReLU (the reference's reading) or before it ("pre_relu")
    attention: float = 0.0  # DataDAM's attention power p; 0 = not gathered
    attention_layers: tuple[int, ...] = ()

    @property
    def style(self) -> bool:
        return self.maps or self.grams

    @staticmethod
    def union(requests: list[StyleTaps]) -> StyleTaps | None:
        """One request that gathers what each of `requests` needs (None when there is none). One forward pass
        serves them all, so they must read the taps at the same place and agree on the blocks they share."""
        if not requests:
            return None
        first = requests[0]
        for other in requests[1:]:
            if other.where != first.where:
                raise UsageError(f"taps read {other.where} and {first.where} cannot be gathered in one pass; "
                                 f"give them the same style_tap")
        styles = [r for r in requests if r.style]
        if any(r.layers != styles[0].layers for r in styles):
            raise UsageError(f"style layers {sorted({r.layers or 'all' for r in styles}, key=str)} cannot be "
                             f"gathered in one pass; give them the same style_layers")
        attentions = {(r.attention, r.attention_layers) for r in requests if r.attention}
        if len(attentions) > 1:
            raise UsageError(f"attention requests {sorted(attentions)} differ; give them the same power and blocks")
        attention, attention_layers = next(iter(attentions), (0.0, ()))
        return StyleTaps(styles[0].layers if styles else (), maps=any(r.maps for r in requests),
                         grams=any(r.grams for r in requests), where=first.where, attention=attention,
                         attention_layers=attention_layers)


@dataclass
class ClassStatistics:
    """Per-class means over a batch, K classes: everything the DM and DDM terms compare."""

    emb: Tensor  # (K, D) mean embedding
    maps: list[Tensor] = field(default_factory=list)  # per style layer: (K, C, H, W) mean feature map
    grams: list[Tensor] = field(default_factory=list)  # per style layer: (K, C, C) mean Gram matrix
    attention: list[Tensor] = field(default_factory=list)  # per attention layer: (K, H*W) mean attention (DataDAM)

    @staticmethod
    def cat(parts: list[ClassStatistics]) -> ClassStatistics:
        """The statistics of several groups of classes, one after the other."""
        return ClassStatistics(torch.cat([p.emb for p in parts]),
                               [torch.cat(layer) for layer in zip(*(p.maps for p in parts))],
                               [torch.cat(layer) for layer in zip(*(p.grams for p in parts))],
                               [torch.cat(layer) for layer in zip(*(p.attention for p in parts))])


@dataclass
class Features:
    """What the loss terms read: class statistics of the real (no autograd) and synthetic images, and the
    synthetic images' own embeddings (K * ipc, D), class by class, for terms on single images (DDM's ICD)."""

    real: ClassStatistics
    syn: ClassStatistics
    syn_emb: Tensor


class ClassSampler:
    """Draws `take` images of every class without replacement, all classes in one call (no loop over classes).

    Each image gets a uniform key; a class keeps its `take` smallest keys (a uniform random subset).
    A class with fewer images gives all of them.
    """

    def __init__(self, class_indices: list[Tensor], take: int, device: torch.device):
        sizes = [int(i.numel()) for i in class_indices]
        if min(sizes) == 0:
            raise UsageError("a class to condense has no real images")
        self.counts = [min(take, n) for n in sizes]
        self.take = max(self.counts)
        width = max(sizes)
        self.table = torch.zeros(len(sizes), width, dtype=torch.long, device=device)
        for row, idx in enumerate(class_indices):
            self.table[row, : idx.numel()] = idx.to(device)
        sizes_t = torch.tensor(sizes, device=device)
        self.pad = torch.arange(width, device=device)[None] >= sizes_t[:, None] if min(sizes) < width else None
        self.everything = all(n <= take for n in sizes)  # every image of every class is used: nothing to draw
        counts_t = torch.tensor(self.counts, device=device)
        valid = (torch.arange(self.take, device=device)[None] < counts_t[:, None]).flatten()
        self.valid = None if min(self.counts) == self.take else torch.nonzero(valid).flatten()
        self.segment = torch.repeat_interleave(torch.arange(len(sizes), device=device), counts_t)

    def sample(self, generator: torch.Generator) -> Tensor:
        """Indices (into the task's images), class by class, `counts[c]` of class position c."""
        if self.everything:
            picked = self.table[:, : self.take]
        else:
            keys = torch.rand(self.table.shape, generator=generator, device=generator.device).to(self.table.device)
            if self.pad is not None:
                keys = keys.masked_fill(self.pad, 2.0)
            picked = self.table.gather(1, keys.topk(self.take, dim=1, largest=False).indices)
        picked = picked.flatten()
        return picked if self.valid is None else picked[self.valid]


def frozen(net: nn.Module) -> nn.Module:
    """Train mode (BatchNorm uses batch statistics, as in the reference) with parameters out of autograd."""
    net.train()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _run(net: nn.Module, x: Tensor, style: StyleTaps | None) -> tuple[Tensor, list[Tensor]]:
    if style is None:
        return net.embed(x), []
    if not hasattr(net, "embed_and_taps"):
        raise UsageError(f"{type(net).__name__} has no style taps (embed_and_taps); use a ConvNet, "
                         f"or mm=false cm=false")
    emb, tap_list = net.embed_and_taps(x, style.where)
    return emb, list(tap_list)


def _select(taps: list[Tensor], layers: tuple[int, ...], what: str = "style_layers") -> list[Tensor]:
    if not layers:
        return taps
    bad = [i for i in layers if i >= len(taps)]
    if bad:
        raise UsageError(f"{what} {list(bad)} out of range: the network has {len(taps)} blocks (0-based)")
    return [taps[i] for i in layers]


def _attention_taps(taps: list[Tensor], style: StyleTaps) -> list[Tensor]:
    """The taps DataDAM's attention reads: the blocks asked for, or every block but the last."""
    return _select(taps, style.attention_layers, "attention_layers") if style.attention_layers else taps[:-1]


def class_statistics(net: nn.Module, images: Tensor, segment: Tensor, counts: list[int],
                     style: StyleTaps | None = None, chunk: int = 0,
                     transform: Callable[[Tensor, Tensor], Tensor] | None = None,
                     keep_embeddings: bool = False) -> tuple[ClassStatistics, Tensor | None]:
    """Per-class means of the embeddings (and style statistics) of `images`, stored class by class (`counts[c]`
    images of class position c), and the embeddings themselves if `keep_embeddings`. `segment` is each image's
    class position in the batch, which is what `transform` (the batch's per-class DSA draw) reads.

    The images go through the network `chunk` at a time (0: all at once), each chunk through `transform(x,
    its segment)` first (the DSA draw); only each class's sum over the chunk is kept. On a CPU a chunk's
    activations stay in cache, where a whole class-incremental step's real batch (thousands of images) does
    not. In fp32 the result equals one pass to float rounding. The images are cast to the network's dtype (a
    bf16 network for `amp`): a class's sum over a chunk is then taken in bf16 (fp32 accumulation, one
    rounding) and the sums over chunks in fp32. Autograd flows wherever the caller has it on.
    """
    if any(n < 1 for n in counts) or sum(counts) != images.shape[0]:
        raise ValueError(f"counts {counts} do not describe {images.shape[0]} images, at least one per class")
    dtype = next(net.parameters()).dtype
    n = images.shape[0]
    step = n if chunk <= 0 else chunk
    ends = list(itertools.accumulate(counts))
    emb_sum, kept = _ClassSums(len(counts)), []
    map_sums: list[_ClassSums] = []
    gram_sums: list[_ClassSums] = []
    attention_sums: list[_ClassSums] = []
    for start in range(0, n, step):
        end = min(start + step, n)
        x = images[start:end]
        if transform is not None:
            x = transform(x, segment[start:end])
        emb, taps = _run(net, x.to(dtype), style)
        if keep_embeddings:
            kept.append(emb.float())
        runs = _runs_of_classes(ends, start, end)
        emb_sum.add(emb, runs)
        if style is None:
            continue
        if style.attention:
            attention_taps = _attention_taps(taps, style)
            if not attention_sums:
                attention_sums = [_ClassSums(len(counts)) for _ in attention_taps]
            for tap, sums in zip(attention_taps, attention_sums):
                sums.add(spatial_attention(tap, style.attention), runs)
        taps = _select(taps, style.layers)
        if not map_sums:
            map_sums = [_ClassSums(len(counts)) for _ in taps]
            gram_sums = [_ClassSums(len(counts)) for _ in taps]
        for tap, maps, grams in zip(taps, map_sums, gram_sums):
            if style.maps:
                maps.add(tap, runs)
            if style.grams:
                grams.add(gram(tap), runs)
    stats = ClassStatistics(emb_sum.mean(counts), [m.mean(counts) for m in map_sums if not m.empty],
                            [g.mean(counts) for g in gram_sums if not g.empty],
                            [a.mean(counts) for a in attention_sums])
    return stats, (torch.cat(kept) if keep_embeddings else None)


def _runs_of_classes(ends: list[int], start: int, end: int) -> list[tuple[int, int, int]]:
    """(class position, first, last + 1) of each class's images inside the chunk [start, end), relative to it;
    `ends[c]` is one past the last image of class c (images are stored class by class)."""
    runs, first = [], 0
    for c, class_end in enumerate(ends):
        lo, hi = max(first, start), min(class_end, end)
        if lo < hi:
            runs.append((c, lo - start, hi - start))
        first = class_end
    return runs


class _ClassSums:
    """Each class's sum of some per-image quantity, gathered chunk by chunk: one sum per (chunk, class) in the
    quantity's own dtype, added to the class's fp32 total (out of place, so autograd can flow through)."""

    def __init__(self, num_classes: int):
        self.totals: list[Tensor | None] = [None] * num_classes

    def add(self, values: Tensor, runs: list[tuple[int, int, int]]) -> None:
        for c, lo, hi in runs:
            part = values[lo:hi].sum(0).float()
            self.totals[c] = part if self.totals[c] is None else self.totals[c] + part

    @property
    def empty(self) -> bool:
        return self.totals[0] is None

    def mean(self, counts: list[int]) -> Tensor:
        return torch.stack([total / n for total, n in zip(self.totals, counts)])


def in_bf16(net: nn.Module) -> nn.Module:
    """A bf16 copy of a frozen network (for `amp`): every layer computes in bf16, with no casts between them."""
    return copy.deepcopy(net).to(torch.bfloat16)


def embed_batch(net: nn.Module, batch: Batch, style: StyleTaps | None = None, per_class: bool | None = None,
                chunk: int = 0, amp: bool = False) -> Features:
    """Class statistics of the batch's real images (no autograd) and synthetic ones (with autograd).

    `per_class=None` chooses: all classes in one pass where samples are independent (exact), else class by
    class, each class's real batch and synthetic batch whole (batch norm's statistics need the whole batch).
    """
    if per_class is None:
        per_class = not samples_are_independent(net)
    k = batch.num_classes
    if amp:
        net = in_bf16(net)
    if not per_class:
        with torch.no_grad():
            real, _ = class_statistics(net, batch.real, batch.real_segment, batch.real_counts, style, chunk,
                                       batch.augmented)
        syn, syn_emb = class_statistics(net, batch.syn, batch.syn_segment, [batch.ipc] * k, style, chunk,
                                        batch.augmented, keep_embeddings=True)
        return Features(real, syn, syn_emb)
    reals, syns, embs = [], [], []
    for real, real_seg, syn, syn_seg in zip(batch.real.split(batch.real_counts),
                                            batch.real_segment.split(batch.real_counts),
                                            batch.syn.split(batch.ipc), batch.syn_segment.split(batch.ipc)):
        with torch.no_grad():
            r, _ = class_statistics(net, real, real_seg, [real.shape[0]], style, 0, batch.augmented)
        s, e = class_statistics(net, syn, syn_seg, [syn.shape[0]], style, 0, batch.augmented, keep_embeddings=True)
        reals.append(r)
        syns.append(s)
        embs.append(e)
    return Features(ClassStatistics.cat(reals), ClassStatistics.cat(syns), torch.cat(embs))
