"""IDM, improved distribution matching (Zhao et al., CVPR 2023): DM with partitioned images, a queue of partly
trained matching models, and a class-aware cross-entropy term.

- Partition and expansion: each stored synthetic image holds factor x factor parts (2 x 2 by default); each part,
  upsampled (bilinear) to full size, is one training image. So `ipc` stored images of a class are matched and
  trained on as factor^2 * ipc images, and that expanded set is what the memory keeps (`expansion`). The budget
  counts stored images: `20ipc` holds the pixels of 20 full-size images per class, 80 quarter-resolution
  training images. Initialisation ("mosaic"): each part is a different real image of the class, downscaled.
- Model queue: 3 random networks to start; a new one pushed every 30 iterations (5 at ipc 1), the oldest dropped
  beyond 100. Each iteration one queue model (eval mode, frozen) is the matching network, and 2 random queue
  models then take 10 SGD steps on real images of the step's classes (no augmentation), keeping their training
  accuracy since the last reset (every 100 iterations, 500 at ipc 50, as the reference resets its meters at each
  evaluation).
- Per class, one image step (the reference's order: class by class, one optimiser for all images):
      L_c = || mean embed(real_c) - mean embed(expanded syn_c) ||^2 + ce_weight * acc% * CE(net(expanded syn_c), c)
  with one Siamese DSA draw per class; plus any add-on (`sm`, `icd`) on the same forward pass.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clbench.condensers.base import CondenseTask, SyntheticSet, register
from clbench.condensers.dm import DM, DMOptions
from clbench.core.errors import UsageError
from clbench.core.options import option
from clbench.core.speed import use_bf16
from clbench.matching.statistics import Batch, ClassSampler, Features, siamese_augment

CE_AUTO_LIMIT = 100  # stored images in a step at or below which the reference's commands use ce_weight 0.5


@dataclass
class IDMOptions(DMOptions):
    lr: float = option(0.2, "SGD learning rate on the synthetic images", above=0)
    batch_real: int = option(0, "real images per class per image step; 0 = auto: the whole class at ipc 1 (the "
                                "reference's ipc-1 commands), else 256", quick=256, min=0)
    init: Literal["mosaic", "real", "noise"] = option(
        "mosaic", "'mosaic': each part of a stored image is a different real image of the class, downscaled "
                  "(the reference); 'real': one real image per stored image; 'noise': N(0, 1)")
    factor: int = option(2, "partition: each stored image holds factor x factor parts, each upsampled to a "
                            "training image (1 = no partition)", min=1)
    queue_start: int = option(3, "random models in the queue at the start", min=1)
    push_every: int = option(0, "iterations between pushes of a new random model into the queue; 0 = 5 at "
                                "ipc 1, else 30 (the reference's commands)", min=0)
    queue_size: int = option(100, "most models in the queue (the oldest leaves)", min=1)
    match_models: int = option(1, "queue models each iteration matches in (each gives every class one step)", min=1)
    train_models: int = option(2, "queue models trained each iteration", min=0)
    train_steps: int = option(10, "SGD steps each trained queue model takes per iteration (50 in the reference "
                                  "for CIFAR-100 ipc 10; quick: 2, as training the queue models costs ~80% of an "
                                  "iteration on a CPU)", quick=2, min=0)
    train_batch: int = option(256, "real images (of all the step's classes) per queue-model step", min=1)
    net_lr: float = option(0.01, "queue models' SGD learning rate", above=0)
    net_momentum: float = option(0.9, "queue models' SGD momentum", min=0, max=1)
    net_weight_decay: float = option(5e-4, "queue models' weight decay", min=0)
    ce: bool = option(True, "the class-aware cross-entropy term on the expanded synthetic images")
    ce_weight: float = option(0.0, "weight of the cross-entropy term (times the matching model's training "
                                   "accuracy in percent); 0 = auto: 0.5 where the step stores at most 100 images "
                                   "(classes x ipc), else 0.1, which gives the reference's value in each of its "
                                   "CIFAR settings", min=0)
    acc_reset_every: int = option(0, "iterations between resets of the queue models' running accuracy; 0 = auto: "
                                     "500 at ipc 50 and above, else 100 (the reference resets at each of its "
                                     "evaluations, at those intervals in its commands)", min=0)
    shrink: Literal["random"] = option("random", "under a total memory budget, a seeded random subset of the "
                                                 "stored images stays, each with all its parts")


@dataclass
class QueueModel:
    """A queue network, its optimiser, and its training accuracy since the last reset (tensors: no host sync)."""

    net: nn.Module
    optimiser: torch.optim.Optimizer
    correct: Tensor
    seen: Tensor = field(default_factory=lambda: torch.zeros(()))

    def accuracy(self) -> Tensor:
        """Training accuracy in percent since the last reset (0 before any step)."""
        return 100.0 * self.correct / self.seen.clamp_min(1)

    def reset(self) -> None:
        self.correct, self.seen = torch.zeros_like(self.correct), torch.zeros_like(self.seen)


def partition(images: Tensor, factor: int) -> Tensor:
    """Each image's factor x factor parts, each upsampled (bilinear) to the image's size: (N, C, H, W) ->
    (factor^2 * N, C, H, W), part-major (all images' first part, then their second, ...); parts go down the
    columns (top-left, bottom-left, top-right, bottom-right for 2 x 2), as in the reference."""
    if factor == 1:
        return images
    h, w = images.shape[-2] // factor, images.shape[-1] // factor
    parts = [images[..., i * h:(i + 1) * h, j * w:(j + 1) * w] for j in range(factor) for i in range(factor)]
    return torch.cat([F.interpolate(p, scale_factor=factor, mode="bilinear", align_corners=False) for p in parts])


def partition_by_class(images: Tensor, num_classes: int, factor: int) -> Tensor:
    """`partition` of images stored class by class, keeping the classes in blocks."""
    return torch.cat([partition(x, factor) for x in images.chunk(num_classes)])


@register
class IDM(DM):
    """IDM: partitioned synthetic images matched in a queue of partly trained models, with a cross-entropy term."""

    name = "idm"
    Options = IDMOptions
    shrink_rule = "random subset of the stored images (seeded), each with all its parts"

    def __init__(self, options: IDMOptions | None = None):
        super().__init__(options)
        self.expansion = self.options.factor ** 2
        self.shrink_rule = IDM.shrink_rule
        self._ce_weight = self.options.ce_weight  # resolved for the step's size in `condense` where 0 (auto)

    def check_data(self, image_shape: tuple[int, ...], num_classes: int) -> None:
        factor, (height, width) = self.options.factor, image_shape[-2:]
        if height % factor or width % factor:
            fits = [f for f in range(1, min(height, width) + 1) if height % f == 0 and width % f == 0]
            raise UsageError(f"factor={factor} does not divide the images' size ({height}x{width} px) into parts; "
                             f"use one of {', '.join(map(str, fits))}")

    # ------------------------------------------------------------------------------------------- the objective
    def base_weights(self) -> dict[str, float]:
        return {"dm": 1.0, **({"ce": self._ce_weight} if self.options.ce else {})}

    def class_losses(self, net: nn.Module, batch: Batch, label: int | None = None,
                     accuracy: Tensor | None = None) -> dict[str, Tensor]:
        """DM's terms and the add-ons' for one class, and the cross-entropy of the network's predictions for the
        synthetic images against `label`, times the model's `accuracy` (percent)."""
        features = self.features(net, batch)
        terms = self.terms(features, batch)
        if self.options.ce and label is not None:
            terms["ce"] = self.cross_entropy(net, features, label) * (0.0 if accuracy is None else accuracy)
        return terms

    @staticmethod
    def cross_entropy(net: nn.Module, features: Features, label: int) -> Tensor:
        """CE of the synthetic images' logits (the network's head on the embeddings already computed), (1,)."""
        head = getattr(net, "classifier", None)
        if head is None:
            raise UsageError(f"idm: the cross-entropy term needs a network with a `classifier` head on its "
                             f"embedding ({type(net).__name__} has none); use a ConvNet or ce=false")
        logits = head(features.syn_emb.to(next(head.parameters()).dtype)).float()
        target = torch.full((logits.shape[0],), label, dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, target).reshape(1)

    # ------------------------------------------------------------------------------------------- initialisation
    def initial_images(self, task: CondenseTask, class_indices: list[Tensor]) -> Tensor:
        o = self.options
        if o.init != "mosaic" or o.factor == 1:
            return super().initial_images(task, class_indices)
        parts = [F.interpolate(super(IDM, self).initial_images(task, class_indices), scale_factor=1 / o.factor,
                               mode="bilinear", align_corners=False) for _ in range(o.factor ** 2)]
        h = parts[0].shape[-2]
        images = torch.empty(parts[0].shape[0], *task.images.shape[1:], device=task.device)
        for n, part in enumerate(parts):  # down the columns, as `partition` reads them back
            i, j = n % o.factor, n // o.factor
            images[..., i * h:(i + 1) * h, j * h:(j + 1) * h] = part
        return images

    # ------------------------------------------------------------------------------------------- the loop
    def _condense(self, task: CondenseTask) -> SyntheticSet:  # DM.condense checks the options, sets `tf32`
        o = self.options
        self.check_data(tuple(task.images.shape[1:]), task.num_classes)
        start = time.perf_counter()
        by_class = task.class_indices()
        class_indices = [by_class[c] for c in task.classes]
        k, ipc, parts = len(task.classes), task.ipc, o.factor ** 2
        if o.ce_weight == 0:
            self._ce_weight = 0.5 if k * ipc <= CE_AUTO_LIMIT else 0.1
        push_every = o.push_every or (5 if ipc == 1 else 30)
        reset_every = o.acc_reset_every or (500 if ipc >= 50 else 100)
        batch_real = o.batch_real or (max(int(i.numel()) for i in class_indices) if ipc == 1 else 256)
        augment = task.augmentation(o.dsa, o.dsa_strategy, o.dsa_align_corners)
        sampler = ClassSampler(class_indices, batch_real, task.device)
        everything = torch.cat(class_indices).to(task.device)
        syn = self.initial_images(task, class_indices).requires_grad_(True)
        optimiser = torch.optim.SGD([syn], lr=o.lr, momentum=o.momentum)
        queue = [self._new_model(task) for _ in range(o.queue_start)]
        embed_dim = self.new_network(task, seed=0).embed_dim
        zero = torch.zeros(1, dtype=torch.long, device=task.device)
        one_class = zero.expand(parts * ipc)

        last: dict[str, float] = {}
        for it in range(o.iterations):
            if it % push_every == 0:
                queue = (queue + [self._new_model(task)])[-o.queue_size:]
            if it and it % reset_every == 0:
                for model in queue:
                    model.reset()
            pending: dict[str, Tensor] = {}
            for model in self._pick(queue, o.match_models, task):
                model.net.eval().requires_grad_(False)
                real = task.images[sampler.sample(task.generator).to(task.device)]
                for c, real_c in enumerate(real.split(sampler.counts)):
                    expanded = partition(syn[c * ipc:(c + 1) * ipc], o.factor)
                    batch = Batch(real_c, zero.expand(real_c.shape[0]), [real_c.shape[0]], expanded, one_class, 1,
                                  parts * ipc)
                    terms = self.class_losses(model.net, siamese_augment(augment, batch, task.generator),
                                              label=task.classes[c], accuracy=model.accuracy())
                    loss = self.objective(terms, embed_dim)
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                    for name, value in [*terms.items(), ("total", loss)]:
                        pending[name] = pending.get(name, 0) + value.detach().sum()
                model.net.requires_grad_(True)
            for model in self._pick(queue, o.train_models, task):
                self._train(model, task, everything)
            if (it + 1) % o.report_every == 0 or it + 1 == o.iterations:
                last = self._read(pending, it + 1)
            task.progress(it + 1, o.iterations, {"loss": last.get("total", float("nan")), **last})

        images = partition_by_class(syn.detach(), k, o.factor)
        labels = torch.tensor(task.classes, dtype=torch.long, device=images.device).repeat_interleave(parts * ipc)
        facts = {
            "iterations": o.iterations,
            "seconds": time.perf_counter() - start,
            "final_losses": last,  # each term summed over classes (and matching models), at the last iteration
            "init": o.init,
            "terms": list(self.weights()),
            "weights": self.weights(embed_dim),
            "embed_dim": embed_dim,
            "stored_per_class": ipc,
            "training_images_per_class": parts * ipc,
            "queue_models": len(queue),
            "batch_real": batch_real,
            "acc_reset_every": reset_every,
            "amp": use_bf16(o.amp, task.device),
            "tf32": o.tf32 and torch.device(task.device).type == "cuda",
            "shrink_rule": self.shrink_rule,
        }
        return SyntheticSet(images, labels, facts)

    def _new_model(self, task: CondenseTask) -> QueueModel:
        o = self.options
        net = self.new_network(task).requires_grad_(True)
        optimiser = torch.optim.SGD(net.parameters(), lr=o.net_lr, momentum=o.net_momentum,
                                    weight_decay=o.net_weight_decay)
        return QueueModel(net, optimiser, torch.zeros((), device=task.device), torch.zeros((), device=task.device))

    @staticmethod
    def _pick(queue: list[QueueModel], n: int, task: CondenseTask) -> list[QueueModel]:
        """`n` distinct queue models at random (all of them where the queue is shorter)."""
        return [queue[i] for i in task.randperm(len(queue))[:n].tolist()]

    def _train(self, model: QueueModel, task: CondenseTask, everything: Tensor) -> None:
        """`train_steps` SGD steps of a queue model on real images of the step's classes, no augmentation."""
        o = self.options
        net = model.net.train()
        for _ in range(o.train_steps):
            idx = everything[task.randperm(everything.numel())[:o.train_batch].to(everything.device)]
            logits = net(task.images[idx])
            target = task.labels[idx]
            loss = F.cross_entropy(logits, target)
            model.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            model.optimiser.step()
            model.correct = model.correct + (logits.detach().argmax(1) == target).sum()
            model.seen = model.seen + target.numel()

    # ------------------------------------------------------------------------------------------- memory budget
    def shrink(self, images: Tensor, keep: int, generator: torch.Generator) -> Tensor:
        """`keep` training images (keep / factor^2 stored images, chosen at random), each stored image with all
        its parts; `images` is one class's expanded set, part-major."""
        parts = self.expansion
        stored, kept = images.shape[0] // parts, keep // parts
        chosen = torch.randperm(stored, generator=generator, device=generator.device)[:kept].sort().values
        chosen = chosen.to(images.device)
        return torch.cat([q * stored + chosen for q in range(parts)])
