"""Retraining speed: clbench's train_network against a plain DataLoader loop written the reference's way.

One process, one device, the same network, data and recipe (SGD 0.01/0.9/5e-4, batch 256, DSA in training
mode on every batch). The baseline is the reference structure: a TensorDataset on the device, a shuffling
DataLoader, per-batch DSA (clbench's own DSA ops, so that augmentation code is not what is compared), fp32,
and the reference's pooling (benchmarks/reference_layers.py).
Measured: seconds per epoch, median over `--repeats` interleaved repeats, and the ratio baseline / candidate.
With `--networks N` (default 3) it also times N fresh networks trained one after the other against the same N
trained in one batched pass (clbench.training.batched), fp32, in the same run: the ratio sequential / batched.

    .venv/bin/python benchmarks/retrain.py --device cpu --repeats 5
    .venv/bin/python benchmarks/retrain.py --device cpu --threads 1 --networks 3 --only-networks
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_layers import reference_layers  # noqa: E402

from clbench.core.speed import device_name, fast_train_options, synchronize  # noqa: E402
from clbench.nets.augment import make_augment  # noqa: E402
from clbench.nets.networks import build_network  # noqa: E402
from clbench.training.batched import train_networks  # noqa: E402
from clbench.training.recipe import TrainRecipe, train_network  # noqa: E402

SHAPES = {"fmnist": (1, 28, 10), "cifar": (3, 32, 10)}  # channels, size, classes


def reference_epochs(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, recipe: TrainRecipe,
                     augment, epochs: int, seed: int) -> float:
    """The reference's evaluation loop: DataLoader over a TensorDataset, per-batch DSA, fp32, avg_pool2d."""
    with reference_layers():
        return _reference_epochs(net, images, labels, recipe, augment, epochs, seed)


def _reference_epochs(net, images, labels, recipe: TrainRecipe, augment, epochs: int, seed: int) -> float:
    loader = DataLoader(TensorDataset(images, labels), batch_size=recipe.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed), num_workers=0)
    optimizer = torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    aug_gen = torch.Generator(device=images.device).manual_seed(seed)
    net.train()
    loss = torch.zeros(())
    for _ in range(epochs):
        for x, y in loader:
            x, y = x.float().to(images.device), y.to(images.device)
            x = augment.train_batch(x, aug_gen)
            loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return float(loss.detach())


def clbench_epochs(net, images, labels, recipe: TrainRecipe, augment, epochs: int, seed: int) -> float:
    gen = torch.Generator(device=images.device).manual_seed(seed)
    # "halves": exactly `epochs` epochs, as the reference loop it is timed against (the schedule does not change
    # the speed of an epoch)
    return train_network(net, images, labels, dataclasses.replace(recipe, epochs=epochs, schedule="halves"), augment,
                         gen)


def _memory(case: dict, args):
    """The device, (channels, size, classes), a random memory of the case's shape and size, and the DSA."""
    device = torch.device(args.device)
    c, s, k = SHAPES[case["shape"]]
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(case["n"], c, s, s, generator=gen).to(device)
    labels = torch.randint(0, k, (case["n"],), generator=gen).to(device)
    return device, (c, s, k), images, labels, make_augment(TrainRecipe().dsa_strategy)


def measure(case: dict, variants: dict[str, Callable], recipes: dict[str, TrainRecipe], args) -> dict[str, float]:
    """Median seconds per epoch of each variant; variants interleaved within every repeat."""
    device, (c, s, k), images, labels, augment = _memory(case, args)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.repeats + 1):  # repeat 0 warms up (kernel selection, allocator), not counted
        for name, run in variants.items():
            net = build_network("convnet", c, k, s, seed=r, device=device, width=args.width)
            synchronize(device)
            start = time.perf_counter()
            run(net, images, labels, recipes[name], augment, args.epochs, r)
            synchronize(device)
            if r:
                times[name].append((time.perf_counter() - start) / args.epochs)
    return {name: statistics.median(t) for name, t in times.items()}


def measure_networks(case: dict, args) -> dict[str, float]:
    """Median seconds per epoch of `args.networks` networks trained one after the other and in one batched
    pass (fp32, every other switch off), interleaved within every repeat."""
    device, (c, s, k), images, labels, augment = _memory(case, args)
    times: dict[str, list[float]] = {"sequential": [], "batched": []}
    for r in range(args.repeats + 1):  # repeat 0 warms up
        for name in times:
            recipe = TrainRecipe(epochs=args.epochs, schedule="halves", batched_networks=name == "batched")
            nets = [build_network("convnet", c, k, s, seed=10 * r + j, device=device, width=args.width)
                    for j in range(args.networks)]
            gens = [torch.Generator(device=device).manual_seed(10 * r + j) for j in range(args.networks)]
            synchronize(device)
            start = time.perf_counter()
            train_networks(nets, images, labels, recipe, augment, gens)
            synchronize(device)
            if r:
                times[name].append((time.perf_counter() - start) / args.epochs)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--epochs", type=int, default=2, help="epochs per timed run")
    p.add_argument("--sizes", default="200,2000", help="memory sizes (images)")
    p.add_argument("--shapes", default="fmnist,cifar", help=f"among {', '.join(SHAPES)}")
    p.add_argument("--width", type=int, default=128, help="ConvNet width")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--no-amp", action="store_true", help="leave bf16 out of the fast variant")
    p.add_argument("--compile", action="store_true",
                   help="also time the fast variant with torch.compile (its compile time falls in the warm-up)")
    p.add_argument("--networks", type=int, default=3, help="networks for the sequential/batched comparison (0: none)")
    p.add_argument("--only-networks", action="store_true", help="time only the sequential/batched comparison")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    fast = fast_train_options(device)
    if args.no_amp:
        fast["amp"] = False
    recipes = {"reference loop": TrainRecipe(), "clbench fp32": TrainRecipe(),
               "clbench fast": TrainRecipe(**fast)}
    if args.compile:
        recipes["clbench fast+compile"] = TrainRecipe(**fast, compile=True)
    variants = {name: clbench_epochs for name in recipes}
    variants["reference loop"] = reference_epochs
    print(f"device: {device_name(device)}; torch {torch.__version__}")
    print(f"ConvNet width {args.width}; {args.epochs} epochs per timing, median of {args.repeats} repeats")
    print(f"clbench fast = {fast}")
    for shape in args.shapes.split(","):
        for n in (int(v) for v in args.sizes.split(",")):
            c, s, _ = SHAPES[shape]
            if not args.only_networks:
                result = measure({"shape": shape, "n": n}, variants, recipes, args)
                base = result["reference loop"]
                cells = "  ".join(f"{name} {sec:.3f}s (x{base / sec:.2f})" for name, sec in result.items())
                print(f"{shape} {c}x{s}x{s}, {n} images, s/epoch: {cells}", flush=True)
            if args.networks > 1:
                nets = measure_networks({"shape": shape, "n": n}, args)
                print(f"{shape} {c}x{s}x{s}, {n} images, {args.networks} networks, s/epoch: sequential "
                      f"{nets['sequential']:.3f}s, batched {nets['batched']:.3f}s "
                      f"(x{nets['sequential'] / nets['batched']:.2f})", flush=True)


if __name__ == "__main__":
    main()
