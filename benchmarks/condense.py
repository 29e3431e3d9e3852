"""Condensation speed: clbench's DM and DDM against a plain per-class fp32 loop written the reference's way.

One process, one device, the same data, network family and sizes. The baseline is the reference structure:
every iteration a fresh frozen network (pooling with avg_pool2d, as the reference's layers do: see
benchmarks/reference_layers.py); then per class: draw the class's real batch, one Siamese DSA draw
applied to its real and its synthetic images, forward of the real batch (detached) and of the synthetic
images, that class's loss; one backward over the sum; one SGD step; the loss read back every iteration.
The candidate is the condenser itself (`condense()` with `iterations=N`, whatever batching and speed
switches it uses), timed per iteration.

It also checks that the two compute the same thing: on one iteration's network, real batch, synthetic images
and DSA draws, it prints the relative difference between the baseline's fp32 loss and the condenser's.

    .venv/bin/python benchmarks/condense.py --device cpu --repeats 3
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_layers import reference_layers  # noqa: E402

from clbench.condense import losses  # noqa: E402
from clbench.core.options import build_options  # noqa: E402
from clbench.core.speed import device_name, synchronize  # noqa: E402
from clbench.nets.augment import DSA  # noqa: E402
from clbench.nets.networks import build_network  # noqa: E402

# name: (channels, size, classes per step, classes in the dataset); the paper's CL protocol
CASES = {"fmnist": (1, 28, 2, 10), "cifar": (3, 32, 20, 100)}


# ----------------------------------------------------------------------------------------------- the reference
def reference_class_loss(method: str, weights: dict[str, float], k: int, net: nn.Module, real: Tensor,
                         syn: Tensor) -> Tensor:
    """One class's loss, the reference way: the real batch through the net detached, the synthetic with autograd."""
    if method == "dm" or not any(t in weights for t in ("mm", "cm")):
        real_emb, syn_emb = net.embed(real).detach(), net.embed(syn)
        real_taps: list[Tensor] = []
        syn_taps: list[Tensor] = []
    else:
        real_emb, real_taps = net.embed_and_taps(real)
        real_emb, real_taps = real_emb.detach(), [t.detach() for t in real_taps]
        syn_emb, syn_taps = net.embed_and_taps(syn)
    loss = weights["dm"] * losses.dm_loss(real_emb, syn_emb)
    if "mm" in weights:
        loss = loss + weights["mm"] * losses.layer_mean(losses.moments_loss, real_taps, syn_taps)
    if "cm" in weights:
        loss = loss + weights["cm"] * losses.layer_mean(losses.correlation_loss, real_taps, syn_taps)
    if "icd" in weights:
        loss = loss + weights["icd"] * losses.diversity_loss(syn_emb, k)
    return loss


def reference_loss(method: str, weights: dict[str, float], k: int, net: nn.Module, augment: DSA,
                   reals: list[Tensor], syns: list[Tensor], generator: torch.Generator) -> Tensor:
    """Sum over classes of each class's loss; one Siamese DSA draw per class (drawn for all classes first, as
    the condenser does, so that both see the same parameters from the same generator state)."""
    params = augment.sample(torch.arange(len(reals), device=generator.device), generator, share_params=True)
    total = torch.zeros((), device=reals[0].device)
    for c, (real, syn) in enumerate(zip(reals, syns)):
        p_real = params.select(torch.full((real.shape[0],), c, device=generator.device))
        p_syn = params.select(torch.full((syn.shape[0],), c, device=generator.device))
        total = total + reference_class_loss(method, weights, k, net, augment.apply(real, p_real),
                                             augment.apply(syn, p_syn))
    return total


def reference_condense(method: str, weights: dict[str, float], k: int, task, iterations: int, batch_real: int,
                       lr: float, momentum: float) -> Tensor:
    """The reference's loop: per iteration a fresh net, then per class: sample, DSA, forward, loss."""
    indices = [torch.nonzero(task.labels == c).flatten() for c in task.classes]
    g = task.generator
    syn = torch.cat([task.images[idx[torch.randperm(idx.numel(), generator=g, device=g.device)[: task.ipc]
                                     .to(idx.device)]] for idx in indices]).clone().requires_grad_(True)
    optimiser = torch.optim.SGD([syn], lr=lr, momentum=momentum)
    augment = task.augment
    loss_sum = 0.0
    for _ in range(iterations):
        net = task.new_network()
        net.train()
        for p in net.parameters():
            p.requires_grad_(False)
        reals = [task.images[idx[torch.randperm(idx.numel(), generator=g, device=g.device)[:batch_real]
                                 .to(idx.device)]] for idx in indices]
        syns = list(syn.split(task.ipc))
        loss = reference_loss(method, weights, k, net, augment, reals, syns, g)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        loss_sum += loss.item()  # the reference reads the loss back every iteration
    return syn.detach()


# ----------------------------------------------------------------------------------------------- set-up
def make_task(case: str, args, device: torch.device, seed: int):
    from clbench.condensers.base import CondenseTask, network_factory

    c, s, k, num_classes = CASES[case]
    per_class = max(args.batch_real, args.ipc) + 44
    gen = torch.Generator().manual_seed(1000 + seed)
    images = torch.randn(k * per_class, c, s, s, generator=gen).to(device)
    labels = torch.arange(k).repeat_interleave(per_class).to(device)
    task_gen = torch.Generator(device=device).manual_seed(seed)

    def build(seed: int) -> nn.Module:
        return build_network("convnet", c, num_classes, s, seed=seed, device=device, width=args.width)

    return CondenseTask(images=images, labels=labels, classes=tuple(range(k)), ipc=args.ipc, generator=task_gen,
                        new_network=network_factory(build, task_gen), augment=DSA(), device=device,
                        num_classes=num_classes)


def condenser_for(method: str, args, iterations: int, amp: bool = False):
    from clbench.condensers import get_condenser

    cls = get_condenser(method)
    overrides = {"iterations": str(iterations), "batch_real": str(args.batch_real),
                 "report_every": str(max(iterations, 1)), "amp": str(amp).lower()}
    overrides.update(dict(kv.split("=", 1) for kv in args.opt))
    return cls(build_options(cls.Options, overrides, "paper", owner=method))


# ----------------------------------------------------------------------------------------------- checks
def loss_difference(method: str, case: str, args, device: torch.device) -> tuple[float, float, float]:
    """The condenser's loss in fp32 and with amp, and the reference loop's, on the same network, real batch,
    images and draws."""
    from clbench.condense.statistics import Batch, ClassSampler, frozen, siamese_augment

    task = make_task(case, args, device, seed=7)
    cond = condenser_for(method, args, 1)
    indices = [torch.nonzero(task.labels == c).flatten() for c in task.classes]
    k = len(task.classes)
    sampler = ClassSampler(indices, args.batch_real, device)
    picked = sampler.sample(torch.Generator(device=device).manual_seed(3))
    real = task.images[picked]
    syn = task.images[ClassSampler(indices, args.ipc, device).sample(torch.Generator(device=device).manual_seed(4))]
    syn = syn.clone().requires_grad_(True)
    net = frozen(task.new_network(seed=11))
    segment = torch.arange(k, device=device).repeat_interleave(args.ipc)
    batch = Batch(real, sampler.segment, sampler.counts, syn, segment, k, args.ipc)
    drawn = siamese_augment(task.augment, batch, torch.Generator(device=device).manual_seed(5))
    ours = float(cond.objective(cond.class_losses(net, drawn)).detach())
    amp = condenser_for(method, args, 1, amp=True)
    ours_amp = float(amp.objective(amp.class_losses(net, drawn)).detach())
    weights = cond.weights()
    ref = float(reference_loss(method, weights, getattr(cond.options, "k", 2), net, task.augment,
                               list(real.split(sampler.counts)), list(syn.split(args.ipc)),
                               torch.Generator(device=device).manual_seed(5)).detach())
    return ours, ours_amp, ref


# ----------------------------------------------------------------------------------------------- timing
def time_case(method: str, case: str, args, device: torch.device) -> dict[str, float]:
    """Median seconds per iteration of the reference loop and of the condenser, interleaved per repeat."""
    n = args.iterations
    runs: dict[str, Callable[[Any], Any]] = {}
    probe = condenser_for(method, args, n)
    weights, k = probe.weights(), getattr(probe.options, "k", 2)
    def reference(task):
        with reference_layers():
            return reference_condense(method, weights, k, task, n, args.batch_real, probe.options.lr,
                                      probe.options.momentum)

    runs["reference loop"] = reference
    runs[f"clbench {method} fp32"] = lambda task: condenser_for(method, args, n).condense(task)
    if not args.no_amp:  # the condenser's own bf16 switch
        runs[f"clbench {method} amp"] = lambda task: condenser_for(method, args, n, amp=True).condense(task)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(args.repeats + 1):  # repeat 0 warms up, not counted
        for name, run in runs.items():
            task = make_task(case, args, device, seed=r)
            synchronize(device)
            start = time.perf_counter()
            run(task)
            synchronize(device)
            if r:
                times[name].append((time.perf_counter() - start) / n)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--iterations", type=int, default=2, help="condensation iterations per timed run")
    p.add_argument("--cases", default="fmnist,cifar", help=f"among {', '.join(CASES)}")
    p.add_argument("--methods", default="dm,ddm")
    p.add_argument("--ipc", type=int, default=20)
    p.add_argument("--batch-real", type=int, default=256, help="real images per class per iteration")
    p.add_argument("--width", type=int, default=128, help="ConvNet width")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--no-amp", action="store_true", help="skip the run with the condenser's amp=true (bf16)")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="condenser option for the clbench side (e.g. a speed switch); repeatable")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device: {device_name(device)}; torch {torch.__version__}")
    print(f"ConvNet width {args.width}, ipc {args.ipc}, {args.batch_real} real per class; "
          f"{args.iterations} iterations per timing, median of {args.repeats} repeats; clbench options {args.opt}")
    for case in args.cases.split(","):
        c, s, k, _ = CASES[case]
        for method in args.methods.split(","):
            try:
                ours, ours_amp, ref = loss_difference(method, case, args, device)

                def rel(x: float, ref: float = ref) -> str:
                    return f"{abs(x - ref) / max(abs(ref), 1e-30):.1e}"

                check = (f"loss: reference fp32 {ref:.6g}, clbench fp32 {ours:.6g} (rel. diff {rel(ours)}), "
                         f"clbench amp {ours_amp:.6g} (rel. diff {rel(ours_amp)})")
            except (ImportError, AttributeError, TypeError) as exc:  # the condenser's internals changed
                check = f"loss comparison unavailable ({type(exc).__name__}: {exc})"
            result = time_case(method, case, args, device)
            base = result["reference loop"]
            cells = "  ".join(f"{name} {sec:.3f}s (x{base / sec:.2f})" for name, sec in result.items())
            print(f"{method} {case} {c}x{s}x{s}, {k} classes: s/iteration: {cells}; {check}", flush=True)


if __name__ == "__main__":
    main()
