"""Class orders and class-incremental Avalanche streams.

Order s is `numpy.random.seed(s); numpy.random.permutation(num_classes)` (DM's protocol), computed with a
private RandomState so the global numpy RNG is left alone. The stream's samples are `(index, label)` pairs:
indices into the dataset's tensors, which stay resident on the device, so that an experience hands its data
over as one index tensor instead of a per-sample copy.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from clbench.core.errors import UsageError


def class_order(seed: int, num_classes: int) -> list[int]:
    """The class order of order `seed`: equal to numpy.random.seed(seed); numpy.random.permutation(n)."""
    return np.random.RandomState(seed).permutation(num_classes).tolist()


def split_classes(order: list[int], steps: int) -> list[list[int]]:
    """Consecutive equal groups of the order; a count that does not divide is refused, not truncated."""
    if steps < 1:
        raise UsageError(f"--steps {steps}: give at least 1 step")
    if len(order) % steps:
        divisors = [d for d in range(1, len(order) + 1) if len(order) % d == 0]
        raise UsageError(
            f"--steps {steps} does not divide the {len(order)} classes into equal experiences; "
            f"choose one of {', '.join(map(str, divisors))}"
        )
    per_step = len(order) // steps
    return [order[i * per_step : (i + 1) * per_step] for i in range(steps)]


def _index_dataset(labels: Tensor):
    from avalanche.benchmarks.utils.classification_dataset import ClassificationDataset
    from avalanche.benchmarks.utils.data_attribute import DataAttribute

    indices = torch.arange(labels.numel())
    return ClassificationDataset(
        [torch.utils.data.TensorDataset(indices, labels.cpu())],
        data_attributes=[
            DataAttribute(labels.tolist(), "targets"),
            DataAttribute(indices.tolist(), "sample_index"),
        ],
    )


def class_incremental_stream(train_labels: Tensor, test_labels: Tensor, order: list[int], steps: int):
    """An Avalanche class-incremental benchmark over the dataset's sample indices, and its steps' class groups.
    That step t holds exactly the samples of group t is Avalanche's to keep; tests/test_streams.py checks it."""
    from avalanche.benchmarks.scenarios.supervised import class_incremental_benchmark

    groups = split_classes(order, steps)
    benchmark = class_incremental_benchmark(
        {"train": _index_dataset(train_labels), "test": _index_dataset(test_labels)},
        class_order=order,
        num_classes_per_exp=[len(g) for g in groups],
    )
    return benchmark, groups
