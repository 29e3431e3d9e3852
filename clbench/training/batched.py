"""Several fresh networks of one architecture trained, and tested, in one batched pass.

A width-128 ConvNet on 32x32 images is too small to keep a GPU busy, so training a step's networks one after
the other leaves it mostly idle. Here their weights are stacked (`torch.func.stack_module_state`) and one
`vmap(functional_call)` runs every network on its own minibatch in one set of kernels. Nothing else is
shared: each network keeps its own initialisation, its own generator (minibatch order and augmentation draws
in the same sequence as `train_network` draws them) and its own loss, so the result is the networks that
`train_network` gives one by one, to float rounding (tests/test_batched_networks.py). The networks' losses
are summed before the backward pass: each network's gradient is that of its own loss. One SGD over the
stacked weights is elementwise the same update as one SGD per network (momentum, weight decay and the lr
step act on each element alone).

Left out, trained one after the other instead (the same results, without the speed): networks with batch
norm (their running statistics are state updated in place during training), and bf16 (`amp`): autocast does
not reach inside `vmap` in PyTorch 2.14 (the convolutions stay fp32 and then fail on mixed dtypes).
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from clbench.core.errors import NonFiniteError, UsageError
from clbench.core.speed import tf32, use_batched_networks, use_bf16
from clbench.nets.augment import DSA
from clbench.nets.networks import samples_are_independent
from clbench.training.recipe import (
    TrainRecipe,
    _check,
    accuracy,
    autocast,
    compiled,
    decay_lr,
    per_class_accuracy,
    predict,
    train_network,
)

NetworksProgress = Callable[[int, int, int], None]  # (network index, epochs done, epochs)
NetworksLoss = Callable[[int, int, float], None]  # (network index, epoch, the epoch's mean loss)


def batches_networks(nets: list[nn.Module], recipe: TrainRecipe, device: torch.device) -> bool:
    """Whether `train_networks` trains these networks together: the recipe's switch for this device and count,
    networks without batch norm, no bf16, and no channels-last layout (a per-network memory format has no
    meaning for the stacked weights)."""
    return (use_batched_networks(recipe.batched_networks, device, len(nets)) and not recipe.channels_last
            and not use_bf16(recipe.amp, device) and all(samples_are_independent(net) for net in nets))


def train_networks(nets: list[nn.Module], images: Tensor, labels: Tensor, recipe: TrainRecipe, augment: Any,
                   generators: list[torch.Generator], progress: NetworksProgress | None = None,
                   on_loss: NetworksLoss | None = None) -> list[float]:
    """Train every network in place, network k with `generators[k]`; returns each one's mean loss of the last
    epoch. Batched where `batches_networks` says so, else `train_network` on each in turn: the same networks.
    `on_loss(k, epoch, loss)`, where given, gets every epoch's mean loss of each network."""
    if len(nets) != len(generators):
        raise UsageError(f"{len(nets)} networks but {len(generators)} generators: each network needs its own")
    if not batches_networks(nets, recipe, images.device):
        losses = []
        for k, (net, gen) in enumerate(zip(nets, generators)):
            report = None if progress is None else (lambda done, total, k=k: progress(k, done, total))
            loss = None if on_loss is None else (lambda epoch, value, k=k: on_loss(k, epoch, value))
            try:
                losses.append(train_network(net, images, labels, recipe, augment, gen, report, loss))
            except NonFiniteError as exc:
                raise NonFiniteError(f"network {k + 1} of {len(nets)}: {exc}") from exc
        return losses
    _check(recipe)
    with tf32(recipe.tf32, images.device):
        return _train_stacked(nets, images, labels, recipe, augment, generators, progress, on_loss)


def _stacked_forward(net: nn.Module, shared_input: bool = False) -> Callable[[dict, dict, Tensor], Tensor]:
    """(stacked params, stacked buffers, x) -> logits (networks, batch, classes); x is (networks, batch, ...),
    one minibatch per network, or with `shared_input` one (batch, ...) that every network sees."""
    skeleton = copy.deepcopy(net).to("meta")  # the architecture only; the weights come from the stacks

    def one(params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(skeleton, (params, buffers), (x,))

    return vmap(one, in_dims=(0, 0, None if shared_input else 0))


def _augment(augment: Any, x: Tensor, generators: list[torch.Generator]) -> Tensor:
    """Each network's batch augmented with draws from its own generator, as `DSA.train_batch` draws them; the
    ops are applied to all networks' images in one call where the augmentation is clbench's DSA."""
    count, b = x.shape[:2]
    flat = x.flatten(0, 1)
    if not isinstance(augment, DSA) or augment.is_identity:
        parts = [augment.train_batch(x[k], g) for k, g in enumerate(generators)]
        return torch.stack(parts)
    drawn = [augment.sample(torch.zeros(b, dtype=torch.long, device=g.device), g, share_params=False)
             for g in generators]
    params = type(drawn[0])(**{f.name: torch.cat([getattr(p, f.name) for p in drawn])
                               for f in dataclasses.fields(drawn[0])})
    return augment.apply(flat, params).view(count, b, *x.shape[2:])


def _train_stacked(nets: list[nn.Module], images: Tensor, labels: Tensor, recipe: TrainRecipe, augment: Any,
                   generators: list[torch.Generator], progress: NetworksProgress | None,
                   on_loss: NetworksLoss | None = None) -> list[float]:
    device, count, n = images.device, len(nets), images.shape[0]
    for net in nets:
        net.train()
    params, buffers = stack_module_state(nets)
    forward = compiled(_stacked_forward(nets[0]), recipe, device)
    optimizer = torch.optim.SGD(list(params.values()), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    chunk = recipe.micro_batch if 0 < recipe.micro_batch < recipe.batch_size else recipe.batch_size
    last = [float("nan")] * count
    epochs = recipe.total_epochs
    for epoch in range(epochs):
        decay_lr(optimizer, recipe, epoch)
        orders = torch.stack([torch.randperm(n, generator=g, device=g.device).to(device) for g in generators])
        epoch_loss = torch.zeros(count, device=device)
        for start in range(0, n, recipe.batch_size):
            idx = orders[:, start : start + recipe.batch_size]  # (networks, b)
            x, y = images[idx], labels[idx]
            if recipe.dsa:
                x = _augment(augment, x, generators)
            optimizer.zero_grad(set_to_none=True)
            loss = _backward(forward, params, buffers, x, y, chunk, device, recipe.amp)
            optimizer.step()
            epoch_loss += loss * idx.shape[1]
        if epoch == epochs - 1 or (epoch + 1) % 50 == 0:
            last = (epoch_loss / n).tolist()
            bad = [k for k, v in enumerate(last) if v != v or v in (float("inf"), float("-inf"))]
            if bad:
                raise NonFiniteError(f"network {bad[0] + 1} of {count}: training loss became non-finite at "
                                     f"epoch {epoch + 1}")
        if on_loss is not None:
            for k, value in enumerate((epoch_loss / n).tolist()):
                on_loss(k, epoch + 1, value)
        if progress is not None:
            for k in range(count):
                progress(k, epoch + 1, epochs)
    _unstack(nets, params, buffers)
    return last


def _backward(forward: Callable, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor, y: Tensor,
              chunk: int, device: torch.device, amp: bool | str) -> Tensor:
    """Gradients of each network's mean cross-entropy over its minibatch (chunk by chunk along the minibatch,
    as `train_network`'s micro-batching); returns the networks' losses, shape (networks,), detached."""
    count, b = y.shape
    total = torch.zeros(count, device=device)
    for start in range(0, b, chunk):
        with autocast(device, amp):
            logits = forward(params, buffers, x[:, start : start + chunk])
        part = F.cross_entropy(logits.flatten(0, 1).float(), y[:, start : start + chunk].flatten(),
                               reduction="none").view(count, -1).sum(1) / b
        part.sum().backward()
        total += part.detach()
    return total


@torch.no_grad()
def _unstack(nets: list[nn.Module], params: dict[str, Tensor], buffers: dict[str, Tensor]) -> None:
    for k, net in enumerate(nets):
        for name, value in net.named_parameters():
            value.copy_(params[name][k])
        for name, value in net.named_buffers():
            value.copy_(buffers[name][k])


@torch.no_grad()
def predict_networks(nets: list[nn.Module], images: Tensor, recipe: TrainRecipe) -> Tensor:
    """Predicted class of every image by every network, shape (networks, images): one batched pass per test
    batch where `batches_networks` says so, else `predict` on each network in turn."""
    _check(recipe)
    if not batches_networks(nets, recipe, images.device):
        return torch.stack([predict(net, images, recipe.eval_batch_size, recipe.amp,
                                    channels_last=recipe.channels_last, compile=recipe.compile,
                                    use_tf32=recipe.tf32) for net in nets])
    for net in nets:
        net.eval()
    params, buffers = stack_module_state(nets)
    forward = compiled(_stacked_forward(nets[0], shared_input=True), recipe, images.device)
    outputs = []
    with tf32(recipe.tf32, images.device):
        for start in range(0, images.shape[0], recipe.eval_batch_size):
            with autocast(images.device, recipe.amp):
                outputs.append(forward(params, buffers, images[start : start + recipe.eval_batch_size]).argmax(-1))
    if not outputs:
        return torch.empty(len(nets), 0, dtype=torch.long, device=images.device)
    return torch.cat(outputs, dim=1)


def evaluate_networks(nets: list[nn.Module], images: Tensor, labels: Tensor,
                      recipe: TrainRecipe) -> list[tuple[float, dict[int, float]]]:
    """`evaluate` of each network (overall and per-class accuracy, percent), all networks in one pass."""
    predictions = predict_networks(nets, images, recipe)
    classes = sorted(set(labels.tolist()))
    return [(accuracy(p, labels), per_class_accuracy(p, labels, classes)) for p in predictions]
