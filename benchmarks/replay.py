"""Replay learner speed: minibatches gathered from the resident tensors against Avalanche's sample-by-sample
loading, in the same process, on the same order.

Both paths run one order of `clbench run --learner replay` (clbench.protocol.replay.run_replay_order) with the
same configuration; `fast_batches=False` is Avalanche's own loading (ReplayDataLoader / TaskBalancedDataLoader
fetching and collating every sample), `True` is clbench.protocol.tensor_batches (the same sampler, one index
operation per minibatch). The runs are interleaved `--repeats` times; printed: seconds per order (median), the
ratio Avalanche / gathered, and a check that both gave the same accuracies and memory bit for bit.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/replay.py --dataset fashion-mnist --epochs 2 --repeats 2
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clbench.core.speed import device_name  # noqa: E402
from clbench.data.streams import class_order, split_classes  # noqa: E402
from clbench.nets.networks import build_network  # noqa: E402
from clbench.protocol.base import OrderRun  # noqa: E402
from clbench.protocol.checkpoint import OrderState  # noqa: E402
from clbench.protocol.config import RunConfig  # noqa: E402
from clbench.protocol.hooks import Hooks  # noqa: E402
from clbench.protocol.prepare import prepare  # noqa: E402
from clbench.protocol.replay import run_replay_order  # noqa: E402


class _Collect:
    """A recorder that keeps each step's accuracies (the benchmark writes no record or checkpoint)."""

    def __init__(self):
        self.accuracies = []

    def record(self, result, memory, learner=None) -> None:
        self.accuracies.append(result.accuracies)


def one_order(p, data, fast: bool) -> tuple[float, list, torch.Tensor]:
    ds, order = p.dataset, p.config.first_order
    classes = class_order(order, ds.num_classes)

    def make_network(seed: int):
        return build_network(p.config.network, ds.channels, ds.num_classes, ds.image_size, seed=seed,
                             device=p.device, width=p.width)

    hooks = Hooks(condense_progress=lambda done, total, info: None, train_progress=lambda n, done, total: None,
                  train_loss=None, step_started=lambda t, new: None, step_done=lambda entry: None,
                  check_stop=lambda: None)
    collect = _Collect()
    run = OrderRun(p, OrderState(order), classes, split_classes(classes, p.config.steps), data, make_network,
                   collect, hooks, Path("unused.json"))
    start = time.perf_counter()
    memory = run_replay_order(run, fast_batches=fast)
    seconds = time.perf_counter() - start
    return seconds, collect.accuracies, memory.tensors()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--condenser", default="random")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--memory", default="20ipc")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per experience (quick: 60)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    config = RunConfig(condenser=args.condenser, dataset=args.dataset, steps=args.steps, memory=args.memory,
                       orders=1, profile="quick", device=args.device, learner="replay",
                       train={"epochs": args.epochs})
    p = prepare(config)
    data = p.dataset.resident(p.device)
    times: dict[bool, list[float]] = {False: [], True: []}
    results = {}
    for _ in range(args.repeats):
        for fast in (False, True):
            seconds, accuracies, memory = one_order(p, data, fast)
            times[fast].append(seconds)
            results.setdefault(fast, (accuracies, memory))
    same = results[False][0] == results[True][0] and torch.equal(results[False][1], results[True][1])
    slow, fast = statistics.median(times[False]), statistics.median(times[True])
    print(f"{device_name(p.device)}; {args.dataset}, {args.steps} steps, {args.memory}, {args.condenser}, "
          f"{args.epochs} epochs per step, {args.repeats} repeats")
    print(f"Avalanche loading : {slow:8.1f} s per order  {times[False]}")
    print(f"gathered batches  : {fast:8.1f} s per order  {times[True]}")
    print(f"ratio             : {slow / fast:8.2f}x   same accuracies and memory: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
