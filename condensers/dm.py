"""Distribution matching (DM, Zhao & Bilen 2023): synthetic images whose mean embedding matches the real one.

Every iteration draws a fresh randomly initialised network with frozen weights, a batch of real images per
class, and one Siamese DSA draw per class; the loss is the squared distance between the real and synthetic
mean embeddings, summed over classes; one SGD step moves the synthetic images.

Where the reference loops over classes, this runs every class of the step through the network together:
with instance norm each sample is independent, so that is the same loss. Every term depends on a class's
images only through per-class means (embeddings; for DDM, feature maps and Gram matrices), so the images go
through in cache-sized chunks whose per-class sums are added up (`clbench.matching.statistics`); the real images
under `no_grad`, the synthetic ones with autograd, so the backward pass covers only the few synthetic images. A
network with BatchNorm mixes the samples of a batch, so there each class's real batch and synthetic batch go
through whole and on their own, as in the reference. `amp` runs the network passes in bf16 (a speed switch;
fp32 is the reference); the class statistics and the losses stay fp32.

The optimisation loop lives here once, for every DM-family condenser: a subclass changes the base objective
(`base_terms`, `base_weights`, `base_statistics`), and the add-ons switched on in the options (style matching
`sm`, intra-class diversity `icd`: clbench.matching.addons) add their terms to any base. DDM
(condensers/ddm.py) is DM with both add-ons on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from clbench.condensers.base import Condenser, CondenseTask, SyntheticSet, register
from clbench.core.errors import NonFiniteError
from clbench.core.options import check_options, option
from clbench.core.speed import forward_chunk, tf32, use_bf16
from clbench.matching import addons
from clbench.matching.addons import PAPER_EMBED_DIM, AddOnOptions
from clbench.matching.losses import dm_loss_from_means
from clbench.matching.statistics import Batch, ClassSampler, Features, StyleTaps, embed_batch, frozen, siamese_augment
from clbench.nets.augment import ALIGN_CORNERS_HELP
from clbench.nets.networks import build_network, samples_are_independent

SHRINK_RULES = {
    "mean": "keeps the images whose removal least moves the class's mean embedding "
            "(greedy, in a ConvNet with fixed seed {seed})",
    "random": "random subset (seeded)",
}
SHRINK_SEED = 0


@dataclass
class DMOptions(AddOnOptions):
    iterations: int = option(20000, "optimisation steps on the synthetic images", quick=100, min=0)
    lr: float = option(1.0, "SGD learning rate on the synthetic images", above=0)
    momentum: float = option(0.5, "SGD momentum", min=0, max=1)
    batch_real: int = option(256, "real images per class per iteration (all of them where a class has fewer)",
                            min=1)
    init: Literal["real", "noise"] = option("real", "start from random real images of the class, or N(0, 1) noise")
    dsa: bool = option(True, "Siamese augmentation: one draw per class, shared by its real and synthetic images")
    dsa_strategy: str = option("", "DSA strategy (e.g. color_crop_cutout_flip_scale_rotate); empty = the default "
                                       "(all ops); independent of the training recipe's dsa")
    dsa_align_corners: bool = option(False, ALIGN_CORNERS_HELP, quick=True)
    network: str = option("", "embedding network (a clbench.nets.networks name); empty = the run's architecture")
    shrink: Literal["mean", "random"] = option(
        "mean", "under a total memory budget, which images of a class stay: 'mean' keeps those that best "
                "preserve the class's mean embedding, 'random' a seeded random subset")
    chunk: int = option(0, "images per forward pass, real and synthetic (speed only: per-class sums give the "
                           "same loss to float rounding); 0 = 32 on a CPU (cache-sized), all at once on a GPU",
                     min=0)
    amp: bool | Literal["auto"] = option(
        False, "network passes in bf16 (a bf16 copy of each random network): true, false, or auto (where the "
               "device runs bf16 natively); statistics and losses stay fp32. Speed switch; fp32 is the reference",
        quick="auto")
    tf32: bool = option(False, "TF32 matrix products and convolutions on CUDA (Ampere or later); false keeps full "
                               "fp32 there. No effect on a CPU. Speed switch; fp32 is the reference")
    report_every: int = option(25, "iterations between reading the losses back (progress, NaN check); "
                                   "fewer reads keep a GPU busy", min=1)


@register
class DM(Condenser):
    """Distribution matching: mean embeddings of synthetic and real images matched in random networks."""

    name = "dm"
    Options = DMOptions
    shrink_rule = SHRINK_RULES["mean"].format(seed=SHRINK_SEED)  # the default; an instance says its own

    def __init__(self, options: DMOptions | None = None):
        super().__init__(options)
        self.shrink_rule = SHRINK_RULES[self.options.shrink].format(seed=SHRINK_SEED)
        addons.check_options(self.name, self.options)
        self.addons = addons.enabled(self.options)
        self.style()  # the base's and the add-ons' taps must fit one forward pass: refuse now, before any work

    # ------------------------------------------------------------------------------------------- the objective
    # A DM-family base changes the three `base_` methods; the add-ons and the loop below are shared.
    def base_statistics(self) -> StyleTaps | None:
        """What the base terms need of the style taps (None: embeddings only)."""
        return None

    def base_weights(self) -> dict[str, float]:
        """Weight of each base term in the objective."""
        return {"dm": 1.0}

    def base_terms(self, features: Features, batch: Batch) -> dict[str, Tensor]:
        """Each base term per class, shape (K,)."""
        return {"dm": dm_loss_from_means(features.real.emb, features.syn.emb)}

    def style(self) -> StyleTaps | None:
        """The statistics of the style taps that the base and the add-ons need, gathered in one forward pass."""
        requests = [self.base_statistics()] + [a.taps() for a in self.addons if hasattr(a, "taps")]
        return StyleTaps.union([r for r in requests if r is not None])

    def weights(self, embed_dim: int = PAPER_EMBED_DIM) -> dict[str, float]:
        """Weight of each term in the objective (the terms `terms` returns), in a network whose embedding has
        `embed_dim` features (the add-ons' weights follow it: `balance`)."""
        w = dict(self.base_weights())
        scale = addons.balance_scale(self.options, embed_dim)
        for addon in self.addons:
            w.update(addon.weights(scale))
        return w

    def terms(self, features: Features, batch: Batch) -> dict[str, Tensor]:
        """Each term per class, shape (K,): the base's, then each add-on's."""
        out = self.base_terms(features, batch)
        for addon in self.addons:
            out.update(addon.terms(features, batch))
        return out

    def features(self, net: nn.Module, batch: Batch) -> Features:
        """The class statistics of a batch (with its DSA draw, if any) that the terms read, in the network `net`."""
        device = batch.real.device
        per_class, chunk = self.forward_plan(net, device)
        return embed_batch(net, batch, self.style(), per_class, chunk, use_bf16(self.options.amp, device))

    def class_losses(self, net: nn.Module, batch: Batch) -> dict[str, Tensor]:
        """The loss terms per class of a batch (with its DSA draw, if any) in the network `net`."""
        return self.terms(self.features(net, batch), batch)

    def forward_plan(self, net: nn.Module, device: torch.device) -> tuple[bool, int]:
        """(class by class?, images per forward pass): all classes together in cache-sized chunks where samples
        are independent; with batch norm, each class's real and synthetic batches whole and on their own, as DM's
        reference (a base whose reference mixes classes under batch norm says so here)."""
        if not samples_are_independent(net):
            return True, 0
        return False, self.chunk_size(device)

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
        check_options(o, f"condenser {self.name!r}")  # options made in Python skip build_options' checks
        with tf32(o.tf32, task.device):
            return self._condense(task)

    def _condense(self, task: CondenseTask) -> SyntheticSet:
        o = self.options
        start = time.perf_counter()
        by_class = task.class_indices()
        class_indices = [by_class[c] for c in task.classes]
        k, ipc = len(task.classes), task.ipc
        augment = task.augmentation(o.dsa, o.dsa_strategy, o.dsa_align_corners)
        sampler = ClassSampler(class_indices, o.batch_real, task.device)
        syn = self.initial_images(task, class_indices).requires_grad_(True)
        syn_segment = torch.arange(k, device=task.device).repeat_interleave(ipc)
        optimiser = torch.optim.SGD([syn], lr=o.lr, momentum=o.momentum)

        last: dict[str, float] = {}
        embed_dim = self.new_network(task, seed=0).embed_dim  # weights may follow it (DDM); draws nothing
        pending: dict[str, Tensor] = {}
        for it in range(o.iterations):
            net = self.new_network(task)
            real = task.images[sampler.sample(task.generator).to(task.device)]
            batch = Batch(real, sampler.segment, sampler.counts, syn, syn_segment, k, ipc)
            terms = self.class_losses(net, siamese_augment(augment, batch, task.generator))
            loss = self.objective(terms, embed_dim)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            pending = {name: value.detach().sum() for name, value in terms.items()}
            pending["total"] = loss.detach()
            if (it + 1) % o.report_every == 0 or it + 1 == o.iterations:
                last = self._read(pending, it + 1)
            task.progress(it + 1, o.iterations, {"loss": last.get("total", float("nan")), **last})

        per_class, chunk = self.forward_plan(self.new_network(task, seed=0), task.device)
        facts = {
            "iterations": o.iterations,
            "seconds": time.perf_counter() - start,
            "final_losses": last,  # each term summed over classes, at the last iteration (before its step)
            "init": o.init,
            "terms": list(self.weights()),
            "weights": self.weights(embed_dim),  # as applied, in the condensation network
            "embed_dim": embed_dim,
            "forward": "per class (batch norm)" if per_class else "all classes at once",
            "chunk": chunk,
            "amp": use_bf16(o.amp, task.device),
            "tf32": o.tf32 and torch.device(task.device).type == "cuda",
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
