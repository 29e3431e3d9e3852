"""The evaluation recipe: train a fresh network from scratch on a (condensed) set, then test it.

Data stays resident on the device as tensors: an epoch is a seeded permutation and slices of it, so there
is no DataLoader and no per-sample Python (the memory is a few thousand images at most).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clbench.errors import NonFiniteError
from clbench.options import option


@dataclass
class TrainRecipe:
    """METHODS.md "Evaluation": SGD 0.01 / 0.9 / 5e-4, batch 256, lr x0.1 at half, DSA on every batch."""

    epochs: int = option(1000, "training epochs per network (paper 1000)", quick=300)
    lr: float = option(0.01, "SGD learning rate")
    momentum: float = option(0.9, "SGD momentum")
    weight_decay: float = option(5e-4, "SGD weight decay")
    batch_size: int = option(256, "minibatch size")
    decay_at: float = option(0.5, "fraction of the epochs after which the lr is multiplied by 0.1")
    dsa: bool = option(True, "differentiable Siamese augmentation (training mode) on every batch")
    dsa_strategy: str = option("color_crop_cutout_flip_scale_rotate", "DSA ops used in training")
    eval_batch_size: int = option(2048, "batch size for testing (memory only, no effect on results)")
    amp: bool = option(False, "bf16 autocast for training and testing (speed switch)")


ProgressFn = Callable[[int, int], None]


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast where asked for; a no-op context otherwise (the fp32 path is the reference)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def train_network(
    net: nn.Module,
    images: Tensor,
    labels: Tensor,
    recipe: TrainRecipe,
    augment: Any,
    generator: torch.Generator,
    progress: ProgressFn | None = None,
) -> float:
    """Train `net` in place on the tensors; returns the mean loss of the last epoch.

    A non-finite loss raises NonFiniteError naming the epoch (checked once per epoch, not per batch, so that
    the device is not synchronised on every step).
    """
    device = images.device
    optimizer = torch.optim.SGD(
        net.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    decay_epoch = int(recipe.epochs * recipe.decay_at)
    n = images.shape[0]
    net.train()
    last_loss = float("nan")
    for epoch in range(recipe.epochs):
        if epoch == decay_epoch and epoch > 0:
            for group in optimizer.param_groups:
                group["lr"] *= 0.1
        order = torch.randperm(n, generator=generator, device=generator.device).to(device)
        epoch_loss = torch.zeros((), device=device)
        for start in range(0, n, recipe.batch_size):
            idx = order[start : start + recipe.batch_size]
            x, y = images[idx], labels[idx]
            if recipe.dsa:
                x = augment.train_batch(x, generator)
            with autocast(device, recipe.amp):
                loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            epoch_loss += loss.detach() * idx.numel()
        if epoch == recipe.epochs - 1 or (epoch + 1) % 50 == 0:
            last_loss = float(epoch_loss / n)
            if last_loss != last_loss or last_loss in (float("inf"), float("-inf")):
                raise NonFiniteError(f"training loss became non-finite at epoch {epoch + 1}")
        if progress is not None:
            progress(epoch + 1, recipe.epochs)
    return last_loss


@torch.no_grad()
def predict(net: nn.Module, images: Tensor, batch_size: int = 2048, amp: bool = False) -> Tensor:
    net.eval()
    outputs = []
    for start in range(0, images.shape[0], batch_size):
        with autocast(images.device, amp):
            outputs.append(net(images[start : start + batch_size]).argmax(dim=1))
    return torch.cat(outputs) if outputs else torch.empty(0, dtype=torch.long, device=images.device)


def accuracy(predictions: Tensor, labels: Tensor) -> float:
    """Percent correct."""
    return 100.0 * float((predictions == labels).float().mean()) if labels.numel() else float("nan")


def per_class_accuracy(predictions: Tensor, labels: Tensor, classes: list[int]) -> dict[int, float]:
    """Percent correct on the test images of each class, computed by index, not by a loop over samples."""
    correct = (predictions == labels).float()
    size = max(classes) + 1 if classes else 0
    totals = torch.zeros(size, device=labels.device).index_add_(0, labels, torch.ones_like(correct))
    hits = torch.zeros(size, device=labels.device).index_add_(0, labels, correct)
    return {c: 100.0 * float(hits[c] / totals[c]) for c in classes if totals[c] > 0}


def evaluate(net: nn.Module, images: Tensor, labels: Tensor, recipe: TrainRecipe) -> tuple[float, dict[int, float]]:
    """Overall and per-class accuracy (percent) of `net` on the given test images."""
    predictions = predict(net, images, recipe.eval_batch_size, recipe.amp)
    classes = sorted(set(labels.tolist()))
    return accuracy(predictions, labels), per_class_accuracy(predictions, labels, classes)
