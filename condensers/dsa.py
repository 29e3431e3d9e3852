"""DSA: dataset condensation by gradient matching with differentiable Siamese augmentation (Zhao & Bilen).

The bi-level baseline of the paper's continual-learning figure. Synthetic images are moved so that the
gradient of the cross-entropy w.r.t. a network's parameters on them matches the gradient on real images of the
same class, while the network itself is trained on the synthetic set between image steps. The exact algorithm
is docs/methods.md "DSA gradient matching"; the distances follow the reference definitions.

Pure tensor maths (`layer_distance`, `match_distance`) and small loop pieces (`matching_loss`,
`train_on_synthetic`, `freeze_batchnorm`) are separate functions so that each can be tested on tiny inputs.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clbench.condensers.base import Condenser, CondenseTask, SyntheticSet, register
from clbench.core.errors import NonFiniteError, UsageError
from clbench.core.options import check_options, option
from clbench.core.speed import tf32
from clbench.nets.augment import ALIGN_CORNERS_HELP
from clbench.nets.networks import samples_are_independent

# (outer, inner) loop counts by images per class, from the reference code (docs/methods.md).
LOOPS_BY_IPC: dict[int, tuple[int, int]] = {
    1: (1, 1),
    10: (10, 50),
    20: (20, 25),
    30: (30, 20),
    40: (40, 15),
    50: (50, 10),
}

_EPS = 1e-6  # added to the norm product in the cosine, as in the reference

Distance = Literal["ours", "mse", "cos"]


# ----------------------------------------------------------------------------------------------- distances
def layer_distance(g_real: Tensor, g_syn: Tensor) -> Tensor:
    """Sum over output rows of (1 - cosine) between two gradients of one parameter tensor.

    Rows are output units: conv weights are (out, in*kh*kw), linear weights (out, in). 1-D parameters (biases,
    norm scales) carry no row structure and contribute 0, as in the reference.
    """
    if g_real.shape != g_syn.shape:
        raise ValueError(f"gradient shapes differ: {tuple(g_real.shape)} vs {tuple(g_syn.shape)}")
    if g_real.dim() < 2:
        return g_syn.new_zeros(())
    r = g_real.reshape(g_real.shape[0], -1)
    s = g_syn.reshape(g_syn.shape[0], -1)
    cos = (r * s).sum(dim=-1) / (r.norm(dim=-1) * s.norm(dim=-1) + _EPS)
    return (1.0 - cos).sum()


def match_distance(grads_real: Sequence[Tensor], grads_syn: Sequence[Tensor], metric: str = "ours") -> Tensor:
    """Distance between two lists of parameter gradients.

    "ours": `layer_distance` summed over parameter tensors; "mse": sum of squared differences over all
    parameters; "cos": 1 - cosine of the concatenated flattened gradients (biases included in both).
    """
    if len(grads_real) != len(grads_syn):
        raise ValueError(f"{len(grads_real)} real gradients vs {len(grads_syn)} synthetic ones")
    if not grads_real:
        raise ValueError("no gradients to compare")
    if metric == "ours":
        return torch.stack([layer_distance(r, s) for r, s in zip(grads_real, grads_syn)]).sum()
    r = torch.cat([g.reshape(-1) for g in grads_real])
    s = torch.cat([g.reshape(-1) for g in grads_syn])
    if metric == "mse":
        return ((s - r) ** 2).sum()
    if metric == "cos":
        return 1.0 - (r * s).sum() / (r.norm() * s.norm() + _EPS)
    raise UsageError(f"distance={metric!r}: expected one of ours, mse, cos")


# ------------------------------------------------------------------------------------------------- loops
def default_loops(ipc: int) -> tuple[int, int]:
    """(outer, inner) for `ipc` from the reference table; other ipc take the nearest listed one.

    *choice*: a tie (e.g. 15, between 10 and 20) goes to the smaller listed ipc.
    """
    if ipc < 1:
        raise UsageError(f"ipc={ipc}: expected at least 1 image per class")
    nearest = min(LOOPS_BY_IPC, key=lambda k: (abs(k - ipc), k))
    return LOOPS_BY_IPC[nearest]


def resolve_loops(text: str, ipc: int) -> tuple[int, int]:
    """The `loops` option: "" means the table by ipc, otherwise "outer,inner" (positive integers)."""
    text = text.strip()
    if not text:
        return default_loops(ipc)
    parts = [p.strip() for p in text.replace(";", ",").replace("x", ",").split(",") if p.strip()]
    try:
        outer, inner = (int(p) for p in parts)
    except ValueError:
        raise UsageError(f"loops={text!r}: expected \"outer,inner\" (two integers), e.g. 10,50") from None
    if outer < 1 or inner < 0:
        raise UsageError(f"loops={text!r}: outer must be >= 1 and inner >= 0")
    return outer, inner


# ------------------------------------------------------------------------------------------ network pieces
def freeze_batchnorm(net: nn.Module, real: Tensor) -> None:
    """Update BN running statistics with one train-mode forward of real images, then freeze them (eval mode).

    A class's few synthetic images are too small a batch for stable statistics; the reference therefore
    matches gradients with statistics taken from real data (one forward, the layers' own momentum).
    """
    net.train()
    with torch.no_grad():
        net(real)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def siamese_pair(augment: Any, real: Tensor, syn: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The real and synthetic batch of one class under ONE augmentation draw (same op, same parameters)."""
    x = torch.cat([real, syn])
    groups = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    x = augment.siamese(x, groups, generator)
    return x[: real.shape[0]], x[real.shape[0]:]


def class_gradient_distance(net: nn.Module, params: list[Tensor], real: Tensor, syn: Tensor, label: int,
                            metric: str) -> Tensor:
    """Distance between the CE gradients on real (detached) and synthetic images (differentiable in `syn`)."""
    lab_real = torch.full((real.shape[0],), label, dtype=torch.long, device=real.device)
    lab_syn = torch.full((syn.shape[0],), label, dtype=torch.long, device=syn.device)
    g_real = torch.autograd.grad(F.cross_entropy(net(real), lab_real), params)
    g_real = [g.detach() for g in g_real]
    g_syn = torch.autograd.grad(F.cross_entropy(net(syn), lab_syn), params, create_graph=True)
    return match_distance(g_real, g_syn, metric)


def matching_loss(net: nn.Module, real: Sequence[Tensor], syn: Sequence[Tensor], classes: Sequence[int],
                  augment: Any, generator: torch.Generator, metric: str = "ours") -> Tensor:
    """Gradient-matching loss summed over classes; class k pairs `real[k]` and `syn[k]` under one DSA draw."""
    params = [p for p in net.parameters() if p.requires_grad]
    total = None
    for r, s, c in zip(real, syn, classes, strict=True):
        r_aug, s_aug = siamese_pair(augment, r.detach(), s, generator)
        d = class_gradient_distance(net, params, r_aug, s_aug, int(c), metric)
        total = d if total is None else total + d
    if total is None:
        raise ValueError("no classes to match")
    return total


def train_on_synthetic(net: nn.Module, optimizer: torch.optim.Optimizer, images: Tensor, labels: Tensor,
                       epochs: int, batch: int, augment: Any, generator: torch.Generator) -> None:
    """`epochs` shuffled epochs of cross-entropy training on the (detached) synthetic set, DSA per sample."""
    net.train()
    n = images.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator, device=generator.device).to(images.device)
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            x = augment.train_batch(images[idx], generator)
            loss = F.cross_entropy(net(x), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def _sample(indices: Tensor, k: int, generator: torch.Generator, cycle: bool = False) -> Tensor:
    """`k` of `indices` without replacement; where there are fewer, all of them (or, with `cycle`, repeated
    up to `k`: the synthetic set needs exactly ipc images per class)."""
    n = indices.shape[0]
    perm = torch.randperm(n, generator=generator, device=generator.device).to(indices.device)
    if cycle and k > n:
        perm = perm.repeat(math.ceil(k / n))
    return indices[perm[:k]]


# ------------------------------------------------------------------------------------------------ condenser
@dataclass
class DSAOptions:
    iterations: int = option(1000, "iterations, each with a fresh network (paper 1000)", quick=5, min=0)
    lr_img: float = option(0.1, "SGD learning rate of the synthetic images", above=0)
    momentum: float = option(0.5, "SGD momentum of the synthetic images", min=0, max=1)
    lr_net: float = option(0.01, "SGD learning rate of the network trained on the synthetic set (inner loop)",
                           above=0)
    batch_real: int = option(256, "real images per class for each gradient", min=1)
    batch_train: int = option(256, "batch size of the inner-loop training on the synthetic set", min=1)
    loops: str = option("", "\"outer,inner\" loop counts; empty: by ipc, 1->1,1 10->10,50 20->20,25 "
                            "30->30,20 40->40,15 50->50,10, other ipc the nearest", quick="5,10")
    distance: Distance = option("ours", "gradient distance: ours (per-row cosine), mse or cos")
    init: Literal["real", "noise"] = option("real", "synthetic initialisation: random real images or noise")
    dsa: bool = option(True, "differentiable Siamese augmentation while matching and in the inner loop")
    dsa_strategy: str = option("", "DSA strategy (e.g. color_crop_cutout_flip_scale_rotate); empty = the default "
                                       "(all ops); independent of the training recipe's dsa")
    dsa_align_corners: bool = option(False, ALIGN_CORNERS_HELP, quick=True)
    bn_real_per_class: int = option(16, "real images per class that set BatchNorm statistics (BN nets only)",
                                    min=1)
    report_every: int = option(10, "iterations between reading the loss back (progress, NaN check); "
                                   "fewer reads keep a GPU busy", min=1)
    tf32: bool = option(False, "TF32 matrix products and convolutions on CUDA (Ampere or later); false keeps full "
                               "fp32, the reference")


@register
class DSACondenser(Condenser):
    """Gradient matching with differentiable Siamese augmentation (DSA, Zhao & Bilen 2021)."""

    name = "dsa"
    Options = DSAOptions

    def _check(self, task: CondenseTask) -> None:
        check_options(self.options, f"condenser {self.name!r}")  # options made in Python skip build_options' checks
        if task.ipc < 1:
            raise UsageError(f"ipc={task.ipc}: expected at least 1 image per class")

    def condense(self, task: CondenseTask) -> SyntheticSet:
        self._check(task)
        with tf32(self.options.tf32, task.device):
            return self._condense(task)

    def _condense(self, task: CondenseTask) -> SyntheticSet:
        o = self.options
        start = time.perf_counter()
        outer, inner = resolve_loops(o.loops, task.ipc)
        augment = task.augmentation(o.dsa, o.dsa_strategy, o.dsa_align_corners)
        gen = task.generator
        classes = list(task.classes)
        by_class = task.class_indices()
        for c in classes:
            if by_class[c].numel() == 0:
                raise UsageError(f"class {c} has no real images to condense")
        ipc = task.ipc

        if o.init == "real":
            init = torch.cat([task.images[_sample(by_class[c], ipc, gen, cycle=True)] for c in classes])
        else:
            shape = (len(classes) * ipc, *task.images.shape[1:])
            init = torch.randn(shape, generator=gen, device=gen.device).to(task.device, task.images.dtype)
        syn = init.detach().clone().requires_grad_(True)
        syn_labels = torch.tensor(classes, dtype=torch.long, device=task.device).repeat_interleave(ipc)
        opt_img = torch.optim.SGD([syn], lr=o.lr_img, momentum=o.momentum)

        last_loss: float | None = None
        bn_used = False
        for it in range(o.iterations):
            net = task.new_network()
            net.train()
            opt_net = torch.optim.SGD(net.parameters(), lr=o.lr_net)
            bn = bn_used = not samples_are_independent(net)
            it_loss = torch.zeros((), device=task.device)
            for ol in range(outer):
                if bn:
                    freeze_batchnorm(net, torch.cat([task.images[_sample(by_class[c], o.bn_real_per_class, gen)]
                                                     for c in classes]))
                real = [task.images[_sample(by_class[c], o.batch_real, gen)] for c in classes]
                loss = matching_loss(net, real, syn.split(ipc), classes, augment, gen, o.distance)
                opt_img.zero_grad(set_to_none=True)
                loss.backward(inputs=[syn])
                opt_img.step()
                it_loss = it_loss + loss.detach()
                if ol == outer - 1:
                    break
                train_on_synthetic(net, opt_net, syn.detach().clone(), syn_labels, inner, o.batch_train,
                                   augment, gen)
            mean_loss = it_loss / (len(classes) * outer)
            if it == 0 or (it + 1) % o.report_every == 0 or it + 1 == o.iterations:
                last_loss = float(mean_loss)
                if not math.isfinite(last_loss) or not bool(torch.isfinite(syn).all()):
                    raise NonFiniteError(f"dsa: matching loss or images became non-finite at iteration {it + 1}")
            task.progress(it + 1, o.iterations, {"loss": last_loss})

        images = syn.detach().clone()
        facts = {
            "iterations": o.iterations,
            "seconds": time.perf_counter() - start,
            "outer_loop": outer,
            "inner_loop": inner,
            "final_loss": last_loss,  # matching distance per class and outer step, mean over the last iteration
            "distance": o.distance,
            "init": o.init,
            "dsa": o.dsa,
            "network_batchnorm": bn_used,
            "tf32": o.tf32 and torch.device(task.device).type == "cuda",
        }
        return SyntheticSet(images, syn_labels, facts)
