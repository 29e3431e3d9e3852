"""The Avalanche strategy that turns a condenser into a class-incremental rehearsal memory.

`train(experience)`: the condenser turns the new classes' real data into `ipc` images each; the memory keeps
them (shrinking older classes under a total budget); `networks_per_step` FRESH networks (head over all
classes of the dataset, original labels) are trained from scratch on the whole memory.
`eval(test experiences so far)`: each of those networks is tested on the union of the given experiences.

Behaviour around a step lives in Avalanche plugins on the usual hooks (`before_training_exp`,
`after_training_exp`, `after_eval`, ...): `strategy.last_step` holds the latest step's result for them to read,
and `strategy.memory` the memory (clbench.protocol.plugins reports and checkpoints each step that way).
Progress inside a step (condensation iterations, training epochs) is not an Avalanche event: it is reported
through the `condense_progress` and `train_progress` callbacks.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from avalanche.training.templates.base import BaseTemplate
from torch import Tensor, nn

from clbench.condensers.base import Condenser
from clbench.core.costs import measured
from clbench.core.errors import NonFiniteError
from clbench.core.seeding import derive_seed, generator
from clbench.data.datasets import RealData
from clbench.memory.checks import condenser_name
from clbench.memory.store import Memory, MemoryBudget
from clbench.records.record import jsonable
from clbench.records.schema import StepResult
from clbench.strategies.memory_step import condense_new_classes, memory_bytes, shrink_older_classes
from clbench.training.batched import evaluate_networks, train_networks
from clbench.training.recipe import TrainRecipe

# RealData (clbench.data.datasets) and StepResult (clbench.records.schema) are importable from here, as before
__all__ = ["CondensedRehearsal", "RealData", "StepResult"]


class _NoModel(nn.Module):
    """Avalanche templates want a model; this strategy makes fresh ones every step."""


class CondensedRehearsal(BaseTemplate):
    def __init__(
        self,
        *,
        condenser: Condenser,
        budget: MemoryBudget,
        data: RealData,
        class_order: list[int],
        make_network: Callable[[int], nn.Module],
        recipe: TrainRecipe,
        augment: Any,
        networks_per_step: int,
        seed: int,
        order_index: int,
        device: torch.device,
        condense_progress: Callable[[int, int, dict], None] | None = None,
        train_progress: Callable[[int, int, int], None] | None = None,
        train_loss: Callable[[int, int, float], None] | None = None,
        plugins: list | None = None,
        extras: dict | None = None,
    ):
        super().__init__(model=_NoModel(), device=device, plugins=plugins)
        self.condenser = condenser
        self.budget = budget
        self.data = data
        self.class_order = class_order
        self.make_network = make_network
        self.recipe = recipe
        self.augment = augment
        self.networks_per_step = networks_per_step
        self.seed = seed
        self.order_index = order_index
        self.condense_progress = condense_progress
        self.train_progress = train_progress
        self.train_loss = train_loss  # (network, epoch, mean loss), every epoch, where given
        self.extras = extras or {}
        self.memory = Memory()
        self.networks: list[nn.Module] = []
        self.step = 0
        self.last_step: StepResult | None = None
        self._eval_indices: list[Tensor] = []
        self._eval_classes: list[list[int]] = []  # per experience evaluated: its classes

    def restore(self, step: int, memory: Memory) -> None:
        """Continue after `step` completed steps with their memory (a resumed run: seeds depend on the step)."""
        self.step = step
        self.memory = memory

    @property
    def condenser_name(self) -> str:
        return condenser_name(self.condenser)

    # -- training: condense the new classes, then retrain from scratch on the memory --------------------
    def _train_exp(self, experience, eval_streams=None, **kwargs):
        new_classes = sorted(experience.classes_in_this_experience, key=self.class_order.index)
        indices = torch.tensor(list(experience.dataset.sample_index), dtype=torch.long,
                               device=self.data.train_labels.device)
        seen = self.memory.classes + new_classes
        ipc = self.budget.per_class(len(seen))
        result = StepResult(self.step, new_classes, seen, ipc, {})

        with measured(self.device) as cost:
            synthetic = self._condense(indices, new_classes, ipc)
        result.condense_seconds, result.condense_peak_bytes = cost.seconds, cost.peak_bytes
        result.condenser_facts = jsonable(getattr(synthetic, "facts", {}) or {})
        shrink_older_classes(self.memory, ipc, self.condenser, seed=self.seed, order=self.order_index,
                             step=self.step)
        self.memory.add(synthetic.images.detach().to(self.device), synthetic.labels.to(self.device))
        result.memory_sizes = self.memory.sizes()
        result.memory_bytes = memory_bytes(self.memory, self.condenser)

        with measured(self.device) as cost:
            self.networks = self._retrain()
        result.train_seconds, result.train_peak_bytes = cost.seconds, cost.peak_bytes
        self.model = self.networks[-1]
        self.last_step = result

    def _condense(self, indices: Tensor, classes: list[int], ipc: int):
        return condense_new_classes(
            self.condenser, self.data.train(indices), self.data.train_labels[indices], classes, ipc,
            seed=self.seed, order=self.order_index, step=self.step, make_network=self.make_network,
            device=self.device, num_classes=self.data.num_classes, progress=self.condense_progress,
            extras=self.extras)

    def _retrain(self) -> list[nn.Module]:
        """The step's fresh networks, trained on the memory: together in one batched pass where the recipe's
        `batched_networks` says so (the same networks, to float rounding), else one after the other."""
        images, labels = self.memory.tensors()
        networks, generators = [], []
        for k in range(self.networks_per_step):
            networks.append(self.make_network(derive_seed(self.seed, self.order_index, self.step, "network", k)))
            generators.append(generator(derive_seed(self.seed, self.order_index, self.step, "train", k), self.device))
        try:
            train_networks(networks, images, labels, self.recipe, self.augment, generators, self.train_progress,
                           self.train_loss)
        except NonFiniteError as exc:
            raise NonFiniteError(f"retraining on the memory: {exc}") from exc
        return networks

    def _after_training_exp(self, **kwargs):
        super()._after_training_exp(**kwargs)
        self.step += 1

    # -- evaluation: every network of the step on the test images of all classes seen so far -------------
    def _before_eval(self, **kwargs):
        self._eval_indices, self._eval_classes = [], []
        super()._before_eval(**kwargs)

    def _eval_exp(self, **kwargs):
        self._eval_indices.append(
            torch.tensor(list(self.experience.dataset.sample_index), dtype=torch.long,
                         device=self.data.test_labels.device)
        )
        self._eval_classes.append(sorted(self.experience.classes_in_this_experience))

    def score(self, images: Tensor, labels: Tensor, experiences: list[list[int]]) -> list[tuple[float, dict]]:
        """Each network's accuracy (percent, overall and per class) on the test images of the experiences seen
        (`experiences`: each one's classes): class-incremental, every image among all classes. A protocol that
        scores otherwise overrides this (clbench.protocol.task_incremental)."""
        return evaluate_networks(self.networks, images, labels, self.recipe)

    def _after_eval(self, **kwargs):
        indices = torch.cat(self._eval_indices)
        images, labels = self.data.test(indices), self.data.test_labels[indices]
        results = self.score(images, labels, self._eval_classes)
        accuracies, per_class = [acc for acc, _ in results], [class_acc for _, class_acc in results]
        if self.last_step is not None:
            self.last_step.accuracies = accuracies
            self.last_step.class_accuracy = {
                c: sum(pc[c] for pc in per_class) / len(per_class) for c in per_class[0]
            }
        super()._after_eval(**kwargs)
