"""Distribution matching (DM, Zhao & Bilen 2023): synthetic images whose mean embedding matches the real one.

Every iteration draws a fresh randomly initialised network with frozen weights, a batch of real images per
class, and one Siamese DSA draw per class; the loss is the squared distance between the real and synthetic
mean embeddings, summed over classes; one SGD step moves the synthetic images.

Where the reference loops over classes, this runs every class of the step through the network together:
with instance norm each sample is independent, so that is the same loss. Every term depends on a class's
images only through per-class means (embeddings; for DDM, feature maps and Gram matrices), so the images go
through in cache-sized chunks whose per-class sums are added up (`class_statistics`); the real images under
`no_grad`, the synthetic ones with autograd, so the backward pass covers only the few synthetic images. A
network with BatchNorm mixes the samples of a batch, so there each class's real batch and synthetic batch go
through whole and on their own, as in the reference. `amp` runs the network passes in bf16 (a speed switch;
fp32 is the reference); the class statistics and the losses stay fp32.

The optimisation loop lives here once; DDM (condensers/ddm.py) adds loss terms through `style`, `terms` and
`weights`.
"""
from __future__ import annotations

import copy
import itertools
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from clbench.nets.augment import DSA, DSAParams
from clbench.core.errors import NonFiniteError, UsageError
from clbench.condense.losses import dm_loss_from_means, gram
from clbench.nets.networks import build_network, samples_are_independent
from clbench.core.options import option
from clbench.core.speed import forward_chunk, use_bf16
from clbench.condensers.base import Condenser, CondenseTask, SyntheticSet, register

SHRINK_RULES = {
    "mean": "keeps the images whose removal least moves the class's mean embedding "
            "(greedy, in a ConvNet with fixed seed {seed})",
    "random": "random subset (seeded)",
}
SHRINK_SEED = 0
PAPER_EMBED_DIM = 2048  # ConvNet width 128, 3 blocks, 32x32 images: the setting the papers' weights are for


@dataclass
class DMOptions:
    iterations: int = option(20000, "optimisation steps on the synthetic images", quick=100)
    lr: float = option(1.0, "SGD learning rate on the synthetic images")
    momentum: float = option(0.5, "SGD momentum")
    batch_real: int = option(256, "real images per class per iteration (all of them where a class has fewer)")
    init: Literal["real", "noise"] = option("real", "start from random real images of the class, or N(0, 1) noise")
    dsa: bool = option(True, "Siamese augmentation: one draw per class, shared by its real and synthetic images")
    dsa_strategy: str = option("", "DSA strategy (e.g. color_crop_cutout_flip_scale_rotate); empty = the default "
                                       "(all ops); independent of the training recipe's dsa")
    network: str = option("", "embedding network (a clbench.nets.networks name); empty = the run's architecture")
    shrink: Literal["mean", "random"] = option(
        "mean", "under a total memory budget, which images of a class stay: 'mean' keeps those that best "
                "preserve the class's mean embedding, 'random' a seeded random subset")
    chunk: int = option(0, "images per forward pass, real and synthetic (speed only: per-class sums give the "
                           "same loss to float rounding); 0 = 32 on a CPU (cache-sized), all at once on a GPU")
    amp: bool | Literal["auto"] = option(
        False, "network passes in bf16 (a bf16 copy of each random network): true, false, or auto (where the "
               "device runs bf16 natively); statistics and losses stay fp32. Speed switch; fp32 is the reference",
        quick="auto")
    report_every: int = option(25, "iterations between reading the losses back (progress, NaN check); "
                                   "fewer reads keep a GPU busy")


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
    """Which style statistics of the network's taps to gather (DDM): the blocks (empty: all) and what of them."""

    layers: tuple[int, ...] = ()
    maps: bool = True  # batch-averaged feature maps (moments matching)
    grams: bool = True  # batch-averaged Gram matrices (correlation matching)
    where: str = "post_relu"  # each block after its ReLU (the reference's reading) or before it ("pre_relu")


@dataclass
class ClassStatistics:
    """Per-class means over a batch, K classes: everything the DM and DDM terms compare."""

    emb: Tensor  # (K, D) mean embedding
    maps: list[Tensor] = field(default_factory=list)  # per style layer: (K, C, H, W) mean feature map
    grams: list[Tensor] = field(default_factory=list)  # per style layer: (K, C, C) mean Gram matrix

    @staticmethod
    def cat(parts: list[ClassStatistics]) -> ClassStatistics:
        """The statistics of several groups of classes, one after the other."""
        return ClassStatistics(torch.cat([p.emb for p in parts]),
                               [torch.cat(layer) for layer in zip(*(p.maps for p in parts))],
                               [torch.cat(layer) for layer in zip(*(p.grams for p in parts))])


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
        raise UsageError(f"{type(net).__name__} has no style taps (embed_and_taps); use a ConvNet, or mm=false cm=false")
    emb, tap_list = net.embed_and_taps(x, style.where)
    return emb, list(tap_list)


def _select(taps: list[Tensor], layers: tuple[int, ...]) -> list[Tensor]:
    if not layers:
        return taps
    bad = [i for i in layers if i >= len(taps)]
    if bad:
        raise UsageError(f"ddm: style_layers {list(bad)} out of range: the network has {len(taps)} blocks (0-based)")
    return [taps[i] for i in layers]


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
                            [g.mean(counts) for g in gram_sums if not g.empty])
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


@register
class DM(Condenser):
    """Distribution matching: mean embeddings of synthetic and real images matched in random networks."""

    name = "dm"
    Options = DMOptions
    shrink_rule = SHRINK_RULES["mean"].format(seed=SHRINK_SEED)  # the default; an instance says its own

    def __init__(self, options: DMOptions | None = None):
        super().__init__(options)
        self.shrink_rule = SHRINK_RULES[self.options.shrink].format(seed=SHRINK_SEED)

    # ------------------------------------------------------------------------------------------- the objective
    # DDM extends these three; the loop below is shared.
    def style(self) -> StyleTaps | None:
        """The style statistics the terms need (None: embeddings only)."""
        return None

    def weights(self, embed_dim: int = PAPER_EMBED_DIM) -> dict[str, float]:
        """Weight of each loss term in the objective (the terms `terms` returns), in a network whose embedding
        has `embed_dim` features (weights that follow the network read it)."""
        return {"dm": 1.0}

    def terms(self, features: Features, batch: Batch) -> dict[str, Tensor]:
        """Each loss term per class, shape (K,)."""
        return {"dm": dm_loss_from_means(features.real.emb, features.syn.emb)}

    def class_losses(self, net: nn.Module, batch: Batch, per_class: bool | None = None) -> dict[str, Tensor]:
        """The loss terms per class of a batch (with its DSA draw, if any) in the network `net`."""
        device = batch.real.device
        features = embed_batch(net, batch, self.style(), per_class, self.chunk_size(device),
                               use_bf16(self.options.amp, device))
        return self.terms(features, batch)

    def chunk_size(self, device: torch.device) -> int:
        """Images per forward pass: the `chunk` option, or where it is 0, what was fastest on this kind of device."""
        return self.options.chunk or forward_chunk(device)

    def objective(self, terms: dict[str, Tensor], embed_dim: int = PAPER_EMBED_DIM) -> Tensor:
        """The scalar that is minimised: the weighted terms summed over classes."""
        w = self.weights(embed_dim)
        return sum(w[name] * value.sum() for name, value in terms.items())

    # ------------------------------------------------------------------------------------------- the loop
    def new_network(self, task: CondenseTask, seed: int | None = None) -> nn.Module:
        """A fresh frozen embedding network; its seed is drawn from the task's generator unless given."""
        if not self.options.network:
            return frozen(task.new_network(seed))
        channels, size = task.images.shape[1], task.images.shape[-1]
        return frozen(build_network(self.options.network, channels, task.num_classes, size,
                                    seed=task.seed() if seed is None else seed, device=task.device))

    def initial_images(self, task: CondenseTask, class_indices: list[Tensor]) -> Tensor:
        """ipc images per class, class by class: random real images (without replacement) or noise."""
        o, ipc = self.options, task.ipc
        shape = (len(class_indices) * ipc, *task.images.shape[1:])
        if o.init == "noise":
            return torch.randn(shape, generator=task.generator, device=task.generator.device).to(task.device)
        sampler = ClassSampler(class_indices, ipc, task.device)
        chosen = sampler.sample(task.generator)
        if min(sampler.counts) < ipc:  # a class with fewer than ipc images: repeat some, drawn at random
            parts, start = [], 0
            for idx, n in zip(class_indices, sampler.counts):
                own = chosen[start:start + n]
                start += n
                extra = idx.to(task.device)[task.randint(idx.numel(), ipc - n).to(task.device)]
                parts.append(torch.cat([own, extra]))
            chosen = torch.cat(parts)
        return task.images[chosen].clone()

    def condense(self, task: CondenseTask) -> SyntheticSet:
        o = self.options
        if o.iterations < 0 or o.chunk < 0 or o.batch_real < 1 or o.report_every < 1:
            raise UsageError(f"{self.name}: iterations and chunk must be >= 0, batch_real and report_every >= 1")
        start = time.perf_counter()
        by_class = task.class_indices()
        class_indices = [by_class[c] for c in task.classes]
        k, ipc = len(task.classes), task.ipc
        augment = task.augmentation(o.dsa, o.dsa_strategy)
        sampler = ClassSampler(class_indices, o.batch_real, task.device)
        syn = self.initial_images(task, class_indices).requires_grad_(True)
        syn_segment = torch.arange(k, device=task.device).repeat_interleave(ipc)
        optimiser = torch.optim.SGD([syn], lr=o.lr, momentum=o.momentum)

        last: dict[str, float] = {}
        embed_dim = self.new_network(task, seed=0).embed_dim  # weights may follow it (DDM); draws nothing
        pending: dict[str, Tensor] = {}
        per_class: bool | None = None
        for it in range(o.iterations):
            net = self.new_network(task)
            if per_class is None:
                per_class = not samples_are_independent(net)
            real = task.images[sampler.sample(task.generator).to(task.device)]
            batch = Batch(real, sampler.segment, sampler.counts, syn, syn_segment, k, ipc)
            terms = self.class_losses(net, siamese_augment(augment, batch, task.generator), per_class=per_class)
            loss = self.objective(terms, embed_dim)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            pending = {name: value.detach().sum() for name, value in terms.items()}
            pending["total"] = loss.detach()
            if (it + 1) % o.report_every == 0 or it + 1 == o.iterations:
                last = self._read(pending, it + 1)
            task.progress(it + 1, o.iterations, {"loss": last.get("total", float("nan")), **last})

        facts = {
            "iterations": o.iterations,
            "seconds": time.perf_counter() - start,
            "final_losses": last,  # each term summed over classes, at the last iteration (before its step)
            "init": o.init,
            "terms": list(self.weights()),
            "weights": self.weights(embed_dim),  # as applied, in the condensation network
            "embed_dim": embed_dim,
            "forward": "per class (batch norm)" if per_class else "all classes at once",
            "chunk": self.chunk_size(task.device) if not per_class else 0,
            "amp": use_bf16(o.amp, task.device),
            "shrink_rule": self.shrink_rule,
        }
        images = syn.detach()
        labels = torch.tensor(task.classes, dtype=torch.long, device=images.device).repeat_interleave(ipc)
        return SyntheticSet(images, labels, facts)

    def _read(self, pending: dict[str, Tensor], done: int) -> dict[str, float]:
        values = {name: float(v) for name, v in zip(pending, torch.stack(list(pending.values())).tolist())}
        bad = [name for name, v in values.items() if v != v or v in (float("inf"), float("-inf"))]
        if bad:
            raise NonFiniteError(f"{self.name}: loss {', '.join(bad)} is not finite at iteration {done}; "
                                 f"try a smaller lr (now {self.options.lr})")
        return values

    # ------------------------------------------------------------------------------------------- memory budget
    def shrink(self, images: Tensor, keep: int, generator: torch.Generator) -> Tensor:
        if self.options.shrink == "random":
            return super().shrink(images, keep, generator)
        with torch.no_grad():
            net = build_network("convnet", images.shape[1], 10, images.shape[-1], seed=SHRINK_SEED,
                                device=images.device).eval()
            features = net.embed(images).double()
        return mean_preserving_subset(features, keep)


def mean_preserving_subset(features: Tensor, keep: int) -> Tensor:
    """Indices (sorted) of `keep` rows of `features` found by greedy backward elimination: each step removes the
    row whose removal leaves the mean of the rest closest to the mean of all rows."""
    n = features.shape[0]
    if keep >= n:
        return torch.arange(n, device=features.device)
    if keep <= 0:
        return torch.zeros(0, dtype=torch.long, device=features.device)
    target = features.mean(0)
    alive = torch.ones(n, dtype=torch.bool, device=features.device)
    total = features.sum(0)
    for m in range(n, keep, -1):
        gap = torch.linalg.vector_norm((total[None] - features) / (m - 1) - target[None], dim=1)
        j = int(torch.argmin(gap.masked_fill(~alive, float("inf"))))
        alive[j] = False
        total = total - features[j]
    return torch.nonzero(alive).flatten()
