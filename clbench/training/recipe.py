"""The evaluation recipe: train a fresh network from scratch on a (condensed) set, then test it.

Data stays resident on the device as tensors: an epoch is a seeded permutation and slices of it, so there
is no DataLoader and no per-sample Python (the memory is a few thousand images at most).

The fp32 path with every speed switch off is the reference. The switches (`amp`, `tf32`, `channels_last`,
`micro_batch`, `compile`, `cuda_graphs`, `batched_networks`) change how the same update is computed, not what
it is: `channels_last`, `micro_batch` and `compile` agree with the reference to float rounding
(tests/test_speed_equivalence.py), and so does `batched_networks` (clbench.training.batched,
tests/test_batched_networks.py); `amp` (bf16) and `tf32` round more coarsely and are checked on accuracy or
loss instead. benchmarks/retrain.py and benchmarks/device_check.py measure them.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clbench.core.errors import NonFiniteError, UsageError
from clbench.core.options import check_options, option
from clbench.core.speed import tf32, use_bf16
from clbench.nets.augment import ALIGN_CORNERS_HELP
from clbench.nets.networks import samples_are_independent


@dataclass
class TrainRecipe:
    """docs/methods.md "Evaluation": SGD 0.01 / 0.9 / 5e-4, batch 256, lr x0.1 at half, DSA on every batch."""

    # quick: 60 epochs of batch 64. A memory holds at most a few hundred images there, so batch 256 would make one
    # step per epoch; four smaller steps train better at equal cost (benchmarks/README.md: 76.4% against 74.3%).
    epochs: int = option(1000, "training epochs per network (paper 1000)", quick=60, min=1)
    lr: float = option(0.01, "SGD learning rate", above=0)
    momentum: float = option(0.9, "SGD momentum", min=0, max=1)
    weight_decay: float = option(5e-4, "SGD weight decay", min=0)
    batch_size: int = option(256, "minibatch size (paper 256)", quick=64, min=1)
    decay_at: float = option(0.5, "fraction of the epochs after which the lr is multiplied by 0.1", min=0, max=1)
    # The reference's evaluate_synset (DatasetCondensation) runs `for ep in range(Epoch + 1)`, multiplies the lr by
    # 0.1 after epoch Epoch // 2 + 1 and builds a new SGD optimiser there (so no momentum is carried over).
    schedule: Literal["reference", "halves"] = option(
        "reference", "lr schedule: 'reference' = the reference code's (epochs + 1 epochs; lr x0.1 after epoch "
                     "int(epochs * decay_at) + 1, counting from 0, with the momentum reset as by a new SGD "
                     "optimiser); 'halves' = exactly `epochs` epochs, lr x0.1 from epoch int(epochs * decay_at), "
                     "momentum kept (clbench until December 2026, and the quick profile)", quick="halves")
    dsa: bool = option(True, "differentiable Siamese augmentation (training mode) on every batch")
    dsa_strategy: str = option("color_crop_cutout_flip_scale_rotate", "DSA ops used in training")
    dsa_align_corners: bool = option(False, ALIGN_CORNERS_HELP, quick=True)
    eval_batch_size: int = option(2048, "batch size for testing (speed and memory only, no effect on results; "
                                        "small batches are faster on a CPU)", quick=64, min=1)
    amp: bool | Literal["auto"] = option(
        False, "bf16 autocast for training and testing: true, false, or auto (where the device runs bf16 natively: "
               "AMX/AVX512-BF16 CPUs, Ampere or later GPUs). Speed switch; the fp32 path is the reference",
        quick="auto")
    channels_last: bool = option(False, "channels-last memory format for the network and its batches "
                                         "(speed switch: same values; a gain on GPUs, a loss on the CPUs measured)")
    micro_batch: int = option(0, "forward/backward each minibatch in chunks of this many images and sum the "
                                 "gradients: the same update (to float rounding), with activations that stay in "
                                 "cache on a CPU; 0 = whole minibatch; ignored for networks with batch norm",
                             min=0)
    compile: bool = option(False, "torch.compile the network (speed switch; compiling takes about a minute "
                                  "on a CPU, so it pays only over long runs)")
    cuda_graphs: bool = option(False, "with compile, on CUDA: compile in mode 'reduce-overhead' (CUDA graphs: "
                                      "a step's kernels replayed with one launch); no effect elsewhere")
    tf32: bool = option(False, "TF32 matrix products and convolutions on CUDA (Ampere or later); false keeps "
                               "full fp32 there (PyTorch's own default runs convolutions in TF32). No effect on "
                               "a CPU. Speed switch; fp32 is the reference")
    batched_networks: bool | Literal["auto"] = option(
        "auto", "train the networks of a step (--nets) in one batched pass (torch.func.vmap over their stacked "
                "weights), each with its own initialisation, minibatch order and augmentation draws: the same "
                "networks as trained one after the other, to float rounding. true, false, or auto (CUDA only: it "
                "did not pay on the CPU measured). Networks with batch norm, and runs with amp or channels_last, "
                "are trained one after the other")

    @property
    def total_epochs(self) -> int:
        """The epochs a network is trained for: `epochs`, plus the reference schedule's one more."""
        return self.epochs + 1 if self.schedule == "reference" else self.epochs

    @property
    def decay_epoch(self) -> int:
        """The epoch (counted from 0) at whose start the lr is multiplied by 0.1."""
        halfway = int(self.epochs * self.decay_at)
        return halfway + 2 if self.schedule == "reference" else halfway

    def augment(self) -> Any:
        """The training-mode augmentation this recipe asks for (the identity without dsa)."""
        from clbench.nets.augment import make_augment

        return make_augment(self.dsa_strategy if self.dsa else None, align_corners=self.dsa_align_corners)

    def validate(self) -> None:
        """Checks across fields and of the strategy's names (the bounds are on the fields): called by
        clbench.core.options.build_options, so a bad recipe fails before a run starts."""
        from clbench.nets.augment import make_augment

        if self.dsa:
            try:
                make_augment(self.dsa_strategy)
            except UsageError as exc:
                raise UsageError(f"the training recipe (--train): dsa_strategy={self.dsa_strategy!r}: {exc}") from None


ProgressFn = Callable[[int, int], None]


def autocast(device: torch.device, amp: bool | str):
    """bf16 autocast where `amp` asks for it (True, or "auto" on a device with native bf16); a no-op context
    otherwise (the fp32 path is the reference)."""
    device = torch.device(device)
    if not use_bf16(amp, device):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _check(recipe: TrainRecipe) -> None:
    check_options(recipe, "training recipe")  # a recipe made in Python skips build_options' checks


def _memory_format(channels_last: bool, x: Tensor) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def compiled(fn: Callable, recipe: TrainRecipe, device: torch.device) -> Callable:
    """`fn` under torch.compile where the recipe asks for it (with CUDA graphs where asked and on CUDA)."""
    if not recipe.compile:
        return fn
    graphs = recipe.cuda_graphs and torch.device(device).type == "cuda"
    return torch.compile(fn, mode="reduce-overhead" if graphs else None)


def _chunk_size(net: nn.Module, recipe: TrainRecipe) -> int:
    """Images per forward/backward chunk: the whole minibatch unless micro-batching is exact for this net."""
    if recipe.micro_batch <= 0 or recipe.micro_batch >= recipe.batch_size:
        return recipe.batch_size
    if not samples_are_independent(net):
        return recipe.batch_size  # batch statistics need the whole minibatch: chunks would change the maths
    return recipe.micro_batch


def decay_lr(optimizer: torch.optim.Optimizer, recipe: TrainRecipe, epoch: int) -> None:
    """The recipe's one lr step, at the start of epoch `recipe.decay_epoch` (never the first): lr x 0.1; with the
    reference schedule the momentum buffers are dropped too (what a new SGD optimiser starts from)."""
    if epoch == recipe.decay_epoch and epoch > 0:
        for group in optimizer.param_groups:
            group["lr"] *= 0.1
        if recipe.schedule == "reference":
            optimizer.state.clear()


def train_network(
    net: nn.Module,
    images: Tensor,
    labels: Tensor,
    recipe: TrainRecipe,
    augment: Any,
    generator: torch.Generator,
    progress: ProgressFn | None = None,
    on_loss: Callable[[int, float], None] | None = None,
) -> float:
    """Train `net` in place on the tensors; returns the mean loss of the last epoch. `on_loss(epoch, loss)`,
    where given, gets every epoch's mean loss (reading it back each epoch: `clbench run --log`).

    With `recipe.channels_last` the network's weights are also converted to that memory format, in place.

    A non-finite loss raises NonFiniteError naming the epoch (checked every 50 epochs and at the end, not per
    batch, so that the device is not synchronised on every step).
    """
    _check(recipe)
    with tf32(recipe.tf32, images.device):
        return _train(net, images, labels, recipe, augment, generator, progress, on_loss)


def _train(net: nn.Module, images: Tensor, labels: Tensor, recipe: TrainRecipe, augment: Any,
           generator: torch.Generator, progress: ProgressFn | None,
           on_loss: Callable[[int, float], None] | None = None) -> float:
    device = images.device
    if recipe.channels_last:
        net.to(memory_format=torch.channels_last)
    forward = compiled(net, recipe, device)  # the compiled wrapper shares the parameters: training it trains net
    chunk = _chunk_size(net, recipe)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    n = images.shape[0]
    net.train()
    last_loss = float("nan")
    epochs = recipe.total_epochs
    for epoch in range(epochs):
        decay_lr(optimizer, recipe, epoch)
        order = torch.randperm(n, generator=generator, device=generator.device).to(device)
        epoch_loss = torch.zeros((), device=device)
        for start in range(0, n, recipe.batch_size):
            idx = order[start : start + recipe.batch_size]
            x, y = images[idx], labels[idx]
            if recipe.dsa:
                x = augment.train_batch(x, generator)
            x = _memory_format(recipe.channels_last, x)
            optimizer.zero_grad(set_to_none=True)
            if chunk >= x.shape[0]:
                with autocast(device, recipe.amp):
                    loss = F.cross_entropy(forward(x), y)
                loss.backward()
            else:
                loss = _chunked_backward(forward, x, y, chunk, device, recipe.amp)
            optimizer.step()
            epoch_loss += loss.detach() * idx.numel()
        if epoch == epochs - 1 or (epoch + 1) % 50 == 0:
            last_loss = float(epoch_loss / n)
            if last_loss != last_loss or last_loss in (float("inf"), float("-inf")):
                raise NonFiniteError(f"training loss became non-finite at epoch {epoch + 1}")
        if on_loss is not None:
            on_loss(epoch + 1, float(epoch_loss / n))
        if progress is not None:
            progress(epoch + 1, epochs)
    return last_loss


def _chunked_backward(forward: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, chunk: int,
                      device: torch.device, amp: bool | str) -> Tensor:
    """Gradients of the minibatch's mean cross-entropy, accumulated chunk by chunk; returns that mean.

    Exact for networks whose samples do not interact (no batch norm): sum over chunks of (sum of losses / b).
    """
    b = x.shape[0]
    total = torch.zeros((), device=device)
    for start in range(0, b, chunk):
        with autocast(device, amp):
            logits = forward(x[start : start + chunk])
        part = F.cross_entropy(logits, y[start : start + chunk], reduction="sum") / b
        part.backward()
        total += part.detach()
    return total


@torch.no_grad()
def predict(
    net: nn.Module,
    images: Tensor,
    batch_size: int = 2048,
    amp: bool | str = False,
    *,
    channels_last: bool = False,
    compile: bool = False,
    use_tf32: bool = False,
) -> Tensor:
    """Predicted class of every image, in batches (the batch size changes speed and memory, not results)."""
    net.eval()
    if channels_last:
        net.to(memory_format=torch.channels_last)
    forward = torch.compile(net) if compile else net
    outputs = []
    for start in range(0, images.shape[0], batch_size):
        x = _memory_format(channels_last, images[start : start + batch_size])
        with autocast(images.device, amp), tf32(use_tf32, images.device):
            outputs.append(forward(x).argmax(dim=1))
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
    _check(recipe)
    predictions = predict(net, images, recipe.eval_batch_size, recipe.amp,
                          channels_last=recipe.channels_last, compile=recipe.compile, use_tf32=recipe.tf32)
    classes = sorted(set(labels.tolist()))
    return accuracy(predictions, labels), per_class_accuracy(predictions, labels, classes)
