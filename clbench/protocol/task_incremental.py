"""The `task` protocol (`clbench run --learner task`): the retrain protocol, scored task-incrementally.

Everything is the retrain protocol's: the same condensation, memory and fresh networks from the same seeds,
so the same networks to the bit. Only the test differs: each test image is classified among the classes of
its own experience (its task label is given at test time), i.e. one head per experience, the heads being
the network's outputs for those classes. The task-incremental accuracy that continual-learning papers report
beside the class-incremental one; per image it is at least as high, since a prediction right among all
classes is right among its experience's (tests/test_protocols.py checks both, and one step by hand).

A step's `accuracies` are over the test images of every experience seen, each among its own classes; its
`class_accuracy` is per class, likewise. A record says `config.learner = "task"`, so `compare` never pools it
with class-incremental records.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from clbench.protocol.retrain import Retrain


class TaskIncremental(Retrain):
    name = "task"
    summary = "the retrain protocol scored task-incrementally: each test image among its own experience's classes"

    def strategy_type(self) -> type:
        return _task_scored(super().strategy_type())


class OwnHead(nn.Module):
    """A network whose prediction is restricted to one experience's classes: the other outputs get -inf."""

    def __init__(self, net: nn.Module, classes: list[int], num_classes: int, device: torch.device):
        super().__init__()
        self.net = net
        mask = torch.full((num_classes,), float("-inf"), device=device)
        mask[torch.tensor(classes, device=device)] = 0.0
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).float() + self.mask


def _task_scored(base: type) -> type:
    """`base` (the retrain strategy) with its test scored per experience."""
    from clbench.training.batched import predict_networks
    from clbench.training.recipe import accuracy, per_class_accuracy

    class TaskScored(base):  # type: ignore[misc, valid-type]
        def score(self, images: Tensor, labels: Tensor, experiences: list[list[int]]) -> list[tuple[float, Any]]:
            predictions = torch.empty((len(self.networks), labels.numel()), dtype=torch.long, device=labels.device)
            for classes in experiences:
                rows = torch.isin(labels, torch.tensor(classes, device=labels.device)).nonzero().flatten()
                heads = [OwnHead(net, classes, self.data.num_classes, labels.device) for net in self.networks]
                predictions[:, rows] = predict_networks(heads, images[rows], self.recipe)
            seen = sorted(set(labels.tolist()))
            return [(accuracy(p, labels), per_class_accuracy(p, labels, seen)) for p in predictions]

    return TaskScored
