"""Condensation speed: clbench's DM-family condensers against a plain per-class fp32 loop written the reference's way.

One process, one device, the same data, network family and sizes. The baseline is the reference structure:
every iteration a fresh frozen network (pooling with avg_pool2d, as the reference's layers do: see
benchmarks/reference_layers.py); then per class: draw the class's real batch, one Siamese DSA draw
applied to its real and its synthetic images, forward of the real batch (detached) and of the synthetic
images, that class's loss; one backward over the sum; one SGD step; the loss read back every iteration.
The candidate is the condenser itself (`condense()` with `iterations=N`, whatever batching and speed
switches it uses), timed per iteration.

It also checks that the two compute the same thing: on one iteration's network, real batch, synthetic images
and DSA draws, it prints the relative difference between the baseline's fp32 loss and the condenser's.

DataDAM's reference adds its attention term per class (the code's hooks on the ReLU outputs read the same
tensors as `embed_and_taps`). IDM's reference loop is its own (`reference_idm`): a queue of trained networks,
per class a forward of the real batch, one of the partitioned synthetic images for the embedding and another
for the logits (as the public code does), one image step per class, the loss read back per class.

    .venv/bin/python benchmarks/condense.py --device cpu --repeats 3 --methods dm,ddm,datadam,idm
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

from clbench.core.options import build_options  # noqa: E402
from clbench.core.speed import device_name, synchronize  # noqa: E402
from clbench.matching import losses  # noqa: E402
from clbench.nets.augment import DSA  # noqa: E402
from clbench.nets.networks import build_network  # noqa: E402

# name: (channels, size, classes per step, classes in the dataset); the paper's CL protocol
CASES = {"fmnist": (1, 28, 2, 10), "cifar": (3, 32, 20, 100)}


# ----------------------------------------------------------------------------------------------- the reference
def reference_class_loss(method: str, weights: dict[str, float], k: int, net: nn.Module, real: Tensor,
                         syn: Tensor) -> Tensor:
    """One class's loss, the reference way: the real batch through the net detached, the synthetic with autograd."""
    if not any(t in weights for t in ("mm", "cm", "attention")):
        real_emb, syn_emb = net.embed(real).detach(), net.embed(syn)
        real_taps: list[Tensor] = []
        syn_taps: list[Tensor] = []
    else:
        real_emb, real_taps = net.embed_and_taps(real)
        real_emb, real_taps = real_emb.detach(), [t.detach() for t in real_taps]
        syn_emb, syn_taps = net.embed_and_taps(syn)
    loss = weights["dm"] * losses.dm_loss(real_emb, syn_emb)
    if "attention" in weights:  # DataDAM: every block but the last, post-ReLU, power 1
        loss = loss + weights["attention"] * losses.attention_loss(real_taps[:-1], syn_taps[:-1], 1.0)
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


def reference_idm(task, iterations: int, o, ce_weight: float) -> Tensor:
    """IDM's loop the public code's way (no partition of the real side, a second forward for the logits)."""
    import torch.nn.functional as F

    from clbench.condensers.idm import partition

    g, ipc, parts = task.generator, task.ipc, o.factor ** 2
    indices = [torch.nonzero(task.labels == c).flatten() for c in task.classes]
    everything = torch.cat(indices)
    syn = torch.cat([task.images[idx[torch.randperm(idx.numel(), generator=g, device=g.device)[:ipc]
                                     .to(idx.device)]] for idx in indices]).clone().requires_grad_(True)
    optimiser = torch.optim.SGD([syn], lr=o.lr, momentum=o.momentum)

    def new_model():
        net = task.new_network()
        return [net, torch.optim.SGD(net.parameters(), lr=o.net_lr, momentum=o.net_momentum,
                                     weight_decay=o.net_weight_decay), 0, 0]

    queue = [new_model() for _ in range(o.queue_start)]
    for it in range(iterations):
        if it % (o.push_every or 30) == 0:
            queue = (queue + [new_model()])[-o.queue_size:]
        net, _, correct, seen = queue[int(torch.randint(len(queue), (1,), generator=g))]
        net.eval()
        for c, idx in enumerate(indices):
            real = task.images[idx[torch.randperm(idx.numel(), generator=g, device=g.device)[:o.batch_real]
                                   .to(idx.device)]]
            img = partition(syn[c * ipc:(c + 1) * ipc], o.factor)
            params = task.augment.sample(torch.zeros(1, dtype=torch.long), g, share_params=True)
            real = task.augment.apply(real, params.select(torch.zeros(real.shape[0], dtype=torch.long)))
            img = task.augment.apply(img, params.select(torch.zeros(img.shape[0], dtype=torch.long)))
            loss = losses.dm_loss(net.embed(real).detach(), net.embed(img))
            target = torch.full((parts * ipc,), task.classes[c], dtype=torch.long, device=img.device)
            loss = loss + ce_weight * (100.0 * correct / max(seen, 1)) * F.cross_entropy(net(img), target)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            loss.item()  # the reference reads each class's loss back
        for m in [queue[i] for i in torch.randperm(len(queue), generator=g)[:o.train_models].tolist()]:
            m[0].train()
            for _ in range(o.train_steps):
                pick = everything[torch.randperm(everything.numel(), generator=g)[:o.train_batch]]
                logits = m[0](task.images[pick])
                step_loss = F.cross_entropy(logits, task.labels[pick])
                m[1].zero_grad()
                step_loss.backward()
                m[1].step()
                m[2] += int((logits.argmax(1) == task.labels[pick]).sum())
                m[3] += pick.numel()
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
    from clbench.matching.statistics import Batch, ClassSampler, frozen, siamese_augment

    task = make_task(case, args, device, seed=7)
    cond = condenser_for(method, args, 1)
    if method == "idm":
        return idm_loss_difference(cond, task, args, device)
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


def idm_loss_difference(cond, task, args, device: torch.device) -> tuple[float, float, float]:
    """One class's IDM loss (embedding term and accuracy-weighted CE at 50%), clbench's and the reference's."""
    import torch.nn.functional as F

    from clbench.condensers.idm import partition
    from clbench.matching.statistics import Batch, frozen, siamese_augment

    idx = torch.nonzero(task.labels == 0).flatten()
    real = task.images[idx[: args.batch_real]]
    img = partition(task.images[idx[-args.ipc:]].clone(), cond.options.factor)
    net = frozen(task.new_network(seed=11)).eval()
    zeros = torch.zeros(1, dtype=torch.long, device=device)
    batch = Batch(real, zeros.expand(real.shape[0]), [real.shape[0]], img, zeros.expand(img.shape[0]), 1,
                  img.shape[0])
    drawn = siamese_augment(task.augment, batch, torch.Generator(device=device).manual_seed(5))
    cond._ce_weight = 0.5
    acc = torch.tensor(50.0)
    ours = float(cond.objective(cond.class_losses(net, drawn, label=0, accuracy=acc)).detach())
    real_a, img_a = drawn.augmented(real, batch.real_segment), drawn.augmented(img, batch.syn_segment)
    ref = float(losses.dm_loss(net.embed(real_a), net.embed(img_a))
                + 0.5 * 50.0 * F.cross_entropy(net(img_a), torch.zeros(img.shape[0], dtype=torch.long)))
    return ours, float("nan"), ref


# ----------------------------------------------------------------------------------------------- timing
def time_case(method: str, case: str, args, device: torch.device) -> dict[str, float]:
    """Median seconds per iteration of the reference loop and of the condenser, interleaved per repeat."""
    n = args.iterations
    runs: dict[str, Callable[[Any], Any]] = {}
    probe = condenser_for(method, args, n)
    weights, k = probe.weights(), getattr(probe.options, "k", 2)
    def reference(task):
        with reference_layers():
            if method == "idm":
                return reference_idm(task, n, probe.options, 0.5 if len(task.classes) * task.ipc <= 100 else 0.1)
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
