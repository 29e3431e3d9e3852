"""What one paper-profile step costs: time a few iterations and epochs, extrapolate to the paper's counts.

The paper's continual protocol on CIFAR-100 in 5 steps (docs/methods.md): per step, condense 20 new classes with
20000 DM/DDM iterations (ConvNet width 128, 256 real images per class, ipc 20), then train 3 fresh networks
for 1000 epochs on the whole memory (400 images after step 1, 2000 after step 5) and test them on the
classes seen so far. This times `--iterations` condensation iterations and `--epochs` training epochs on
CIFAR-shaped random tensors with the paper profile's options (plus the switches given), and prints the
seconds per iteration and per epoch and the extrapolated time of step 1, step 5 and a whole order.

    .venv/bin/python benchmarks/paper_step.py --device cuda                 # GPU: amp=auto is bf16 there
    .venv/bin/python benchmarks/paper_step.py --device cpu --threads 1 --iterations 2 --epochs 1
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clbench.condensers import get_condenser  # noqa: E402
from clbench.condensers.base import CondenseTask, network_factory  # noqa: E402
from clbench.core.options import build_options  # noqa: E402
from clbench.core.speed import device_name, synchronize  # noqa: E402
from clbench.nets.augment import DSA  # noqa: E402
from clbench.nets.networks import build_network  # noqa: E402
from clbench.training.recipe import TrainRecipe, evaluate, train_network  # noqa: E402

CLASSES, STEPS, IPC, REAL_PER_CLASS, WIDTH = 100, 5, 20, 500, 128
PAPER_ITERATIONS, PAPER_EPOCHS, NETS, TEST_PER_CLASS = 20000, 1000, 3, 100


def seconds_per_iteration(method: str, args, device: torch.device) -> float:
    """Condensation of one step's 20 classes, timed over `args.iterations` after one warm-up iteration."""
    k = CLASSES // STEPS
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(k * REAL_PER_CLASS, 3, 32, 32, generator=gen).to(device)
    labels = torch.arange(k).repeat_interleave(REAL_PER_CLASS).to(device)
    cls = get_condenser(method)
    times = []
    for iterations in (1, args.iterations):
        task_gen = torch.Generator(device=device).manual_seed(0)
        build = lambda seed: build_network("convnet", 3, CLASSES, 32, seed=seed, device=device, width=WIDTH)  # noqa: E731
        task = CondenseTask(images, labels, tuple(range(k)), IPC, task_gen, network_factory(build, task_gen), DSA(),
                            device, CLASSES)
        options = build_options(cls.Options, {"iterations": str(iterations), "report_every": str(iterations),
                                              **dict(kv.split("=", 1) for kv in args.opt)}, "paper", owner=method)
        synchronize(device)
        start = time.perf_counter()
        cls(options).condense(task)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times[1] / args.iterations


def seconds_per_epoch_and_test(memory: int, seen: int, args, device: torch.device) -> tuple[float, float]:
    """One training epoch on `memory` images (paper recipe plus the switches given) and one test pass over the
    test images of `seen` classes."""
    recipe = build_options(TrainRecipe, dict(kv.split("=", 1) for kv in args.train), "paper", owner="train")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(memory, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, seen, (memory,), generator=gen).to(device)
    tx = torch.randn(seen * TEST_PER_CLASS, 3, 32, 32, generator=gen).to(device)
    ty = torch.arange(seen).repeat_interleave(TEST_PER_CLASS).to(device)
    net = build_network("convnet", 3, CLASSES, 32, seed=0, device=device, width=WIDTH)
    train_gen = torch.Generator(device=device).manual_seed(0)
    train_network(net, x, y, dataclasses.replace(recipe, epochs=1), DSA(), train_gen)  # warm-up
    synchronize(device)
    start = time.perf_counter()
    train_network(net, x, y, dataclasses.replace(recipe, epochs=args.epochs, schedule="halves"), DSA(), train_gen)
    synchronize(device)
    epoch = (time.perf_counter() - start) / args.epochs
    start = time.perf_counter()
    evaluate(net, tx, ty, recipe)
    synchronize(device)
    return epoch, time.perf_counter() - start


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--method", default="ddm")
    p.add_argument("--iterations", type=int, default=20, help="condensation iterations timed")
    p.add_argument("--epochs", type=int, default=5, help="training epochs timed")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="condenser option")
    p.add_argument("--train", action="append", default=[], metavar="KEY=VALUE", help="training recipe option")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device: {device_name(device)}; torch {torch.__version__}; {args.method}, paper profile, "
          f"condenser options {args.opt}, training options {args.train}")
    it = seconds_per_iteration(args.method, args, device)
    print(f"condensation: {it:.4f} s/iteration (20 classes, 256 real and {IPC} synthetic per class, width {WIDTH})",
          flush=True)
    per_step = []
    for step in range(1, STEPS + 1):
        seen = step * CLASSES // STEPS
        epoch, test = seconds_per_epoch_and_test(seen * IPC, seen, args, device)
        total = PAPER_ITERATIONS * it + NETS * (PAPER_EPOCHS * epoch + test)
        per_step.append(total)
        print(f"step {step}: memory {seen * IPC} images, {epoch:.4f} s/epoch, test {test:.2f} s; step = "
              f"{PAPER_ITERATIONS} x {it:.4f} s + {NETS} x ({PAPER_EPOCHS} x {epoch:.4f} s + {test:.2f} s) = "
              f"{hours(total)}", flush=True)
    print(f"one order (5 steps): {hours(sum(per_step))}; 5 orders: {hours(5 * sum(per_step))} "
          f"(on one device; --jobs spreads orders over devices)")


if __name__ == "__main__":
    main()
