"""A condensed rehearsal memory for ANY Avalanche strategy: a storage policy (`ExemplarsBuffer`).

```python
buffer = CondensedBuffer("ddm", memory="20ipc", num_classes=10, opt={"iterations": 100}, width=32)
strategy = Naive(model, optimizer, criterion, plugins=[ReplayPlugin(buffer.max_size, storage_policy=buffer)])
```

After each training experience, Avalanche's `ReplayPlugin` calls `update(strategy)`: the classes of the
experience just seen are condensed by the condenser (any registered one: built-in, entry point or
`module.path:ClassName`, with its options) into `ipc` synthetic images each; older classes shrink by the
condenser's `shrink` rule when a total budget requires it (as clbench's own Memory does); `self.buffer` becomes
an AvalancheDataset of `(image, label, task 0)` over the synthetic images, which `ReplayPlugin` mixes into the
next experience's minibatches.

Real images are read from the experience's dataset with its `eval` transforms, so the memory lives in the
model's input space (already normalised): the buffer dataset has no transforms of its own.

Seeding is clbench's: the condensation generator is `derive_seed(seed, order, step, "condense")` and the shrink
generator `derive_seed(seed, order, step, "shrink")`, with `step` the number of experiences condensed before,
so the same seed, order and step give the same memory, as in `clbench run`.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset
from avalanche.benchmarks.utils.utils import concat_datasets
from avalanche.training.storage_policy import ExemplarsBuffer
from torch import Tensor, nn

from clbench.condensers import condenser_options, get_condenser, new_condenser
from clbench.condensers.base import Condenser, expansion
from clbench.core.costs import Cost, measured
from clbench.core.errors import UsageError
from clbench.memory.checks import condenser_name
from clbench.memory.store import Memory, MemoryBudget
from clbench.nets.networks import build_network, check_width
from clbench.strategies.memory_step import condense_new_classes, shrink_older_classes


def make_condenser(condenser: str | Condenser | type, opt: dict[str, Any] | None = None,
                   profile: str = "quick") -> Condenser:
    """A condenser instance from a name (or class) and `key=value` options for `profile`, or the instance given."""
    if not isinstance(condenser, (str, type)):
        if opt:
            raise UsageError("give options either inside the condenser instance or as `opt`, not both")
        return condenser
    cls = get_condenser(condenser) if isinstance(condenser, str) else condenser
    name = condenser if isinstance(condenser, str) else getattr(cls, "name", cls.__name__)
    options = condenser_options(cls, name, dict(opt or {}), profile, flag="opt")
    return new_condenser(cls, options)


class CondensedBuffer(ExemplarsBuffer):
    """Class-balanced memory of condensed images; a storage policy for Avalanche's `ReplayPlugin`.

    `memory`: `<N>ipc` (N images per class, always) or a total number of images shared equally by the classes
    seen. `max_size` (what `ReplayPlugin(mem_size=...)` must be given) is the total, or N x `num_classes`.
    `make_network(seed)` builds the condensers' embedding networks; by default a `network` of `width` for the
    images' shape with a head over `num_classes`. `class_order` orders each experience's classes for the
    condenser (default: ascending). `seed`, `order`: the run seed and class-order index of the seeding.
    """

    def __init__(self, condenser: str | Condenser | type = "dm", memory: str | int | MemoryBudget = "20ipc", *,
                 num_classes: int, opt: dict[str, Any] | None = None, profile: str = "quick",
                 network: str = "convnet", width: int | None = None, seed: int = 0, order: int = 0,
                 device: torch.device | str = "cpu", make_network: Callable[[int], nn.Module] | None = None,
                 class_order: list[int] | None = None, progress: Callable[[int, int, dict], None] | None = None,
                 extras: dict[str, Any] | None = None, read_batch_size: int = 1024,
                 reader: Callable[[Any], tuple[Tensor, Tensor] | None] | None = None):
        self.budget = memory if isinstance(memory, MemoryBudget) else MemoryBudget.parse(memory)
        if num_classes < 1:
            raise UsageError(f"num_classes {num_classes}: give the size of the label space")
        self.budget.check(num_classes, smallest_class=10**9)  # the per-class cap is checked on each experience
        self.condenser = make_condenser(condenser, opt, profile)
        # in training images: a condenser with expansion > 1 (IDM) stores that many per budget image
        super().__init__((self.budget.total or self.budget.per_class(num_classes) * num_classes)
                         * expansion(self.condenser))
        self.num_classes = num_classes
        check_width(network, width, "width")
        self.network, self.width = network, width
        self.seed, self.order = seed, order
        self.device = torch.device(device)
        self._make_network = make_network
        self.class_order = class_order
        self.progress = progress
        self.extras = {"profile": profile, **(extras or {})}
        self.read_batch_size = read_batch_size
        self.reader = reader
        self.memory = Memory()
        self.step = 0  # experiences condensed so far (the `step` of the seeds)
        self.last_ipc = 0
        self.last_condense_cost = Cost()  # the latest condensation's seconds and peak memory
        self.last_facts: dict[str, Any] = {}

    @property
    def condenser_name(self) -> str:
        return condenser_name(self.condenser)

    # -- the storage-policy contract ----------------------------------------------------------------------
    def update(self, strategy: Any, **kwargs: Any) -> None:
        """Called by ReplayPlugin after each training experience: condense `strategy.experience`."""
        self.post_adapt(strategy, strategy.experience)

    def post_adapt(self, agent_state: Any, exp: Any) -> None:
        self.add_experience(exp)

    def resize(self, strategy: Any, new_size: int) -> None:
        """A new total budget: every class shrinks to its equal share, by the condenser's rule."""
        self.budget = MemoryBudget.parse(new_size)
        self.max_size = new_size * expansion(self.condenser)
        if self.memory.classes:
            self._shrink(self.budget.per_class(len(self.memory.classes)), max(self.step - 1, 0))
            self.buffer = self._dataset()

    def restore(self, step: int, memory: Memory) -> None:
        """Continue after `step` condensed experiences with their memory (a resumed run: seeds depend on it)."""
        self.step, self.memory = step, memory
        self.buffer = self._dataset()

    @property
    def last_condense_seconds(self) -> float:  # the name before last_condense_cost; still read by users' code
        return self.last_condense_cost.seconds

    # -- condensing one experience ------------------------------------------------------------------------
    def add_experience(self, exp: Any) -> None:
        images, labels = self.read(exp.dataset)
        present = set(labels.unique().tolist())
        wanted = getattr(exp, "classes_in_this_experience", None) or sorted(present)
        order = self.class_order or sorted(present)
        new = sorted((int(c) for c in wanted if int(c) not in self.memory.images),
                     key=lambda c: (order.index(c) if c in order else len(order), c))
        if not new:
            return
        seen = self.memory.classes + new
        ipc = self.budget.per_class(len(seen))
        smallest = min(int((labels == c).sum()) for c in new)
        if ipc > smallest:
            raise UsageError(f"memory {self.budget}: {ipc} images per class, but a new class has only {smallest} "
                             f"training images in this experience")
        with measured(self.device) as self.last_condense_cost:
            synthetic = condense_new_classes(
                self.condenser, images, labels, new, ipc, seed=self.seed, order=self.order, step=self.step,
                make_network=self._network_builder(images), device=self.device, num_classes=self.num_classes,
                progress=self.progress, extras=self.extras)
        self.last_facts = dict(getattr(synthetic, "facts", {}) or {})
        self._shrink(ipc, self.step)
        self.memory.add(synthetic.images.detach().to(self.device), synthetic.labels.to(self.device))
        self.last_ipc = ipc
        self.buffer = self._dataset()
        self.step += 1

    def read(self, dataset: Any) -> tuple[Tensor, Tensor]:
        """All (image, label) pairs of an Avalanche dataset, with its eval transforms, on the device (from
        `reader(dataset)` where it gives them: a caller that holds the dataset's tensors reads them at once)."""
        data = dataset.eval() if hasattr(dataset, "eval") else dataset
        tensors = self.reader(data) if self.reader is not None else None
        if tensors is not None:
            torch.empty((), dtype=torch.int64).random_()  # the draw a DataLoader's iterator makes: later draws stay
            return tensors[0].to(self.device, torch.float32), tensors[1].to(self.device, torch.long)
        loader = torch.utils.data.DataLoader(data, batch_size=self.read_batch_size, shuffle=False,
                                             collate_fn=getattr(data, "collate_fn", None))
        xs, ys = [], []
        for batch in loader:
            xs.append(torch.as_tensor(batch[0]).to(self.device, torch.float32))
            ys.append(torch.as_tensor(batch[1]).to(self.device, torch.long))
        return torch.cat(xs), torch.cat(ys)

    def _network_builder(self, images: Tensor) -> Callable[[int], nn.Module]:
        if self._make_network is not None:
            return self._make_network
        channels, size = int(images.shape[1]), int(images.shape[2])
        return lambda seed: build_network(self.network, channels, self.num_classes, size, seed=seed,
                                          device=self.device, width=self.width)

    def _shrink(self, keep: int, step: int) -> None:
        shrink_older_classes(self.memory, keep, self.condenser, seed=self.seed, order=self.order, step=step)

    def _dataset(self) -> Any:
        if not self.memory.classes:
            return concat_datasets([])
        images, labels = self.memory.tensors()
        images, labels = images.detach().cpu(), labels.cpu()
        dataset = _make_taskaware_tensor_classification_dataset(images, labels, task_labels=0,
                                                                targets=labels.tolist())
        # each sample's row in memory.tensors(), for loaders that gather batches from them (clbench's replay)
        return dataset.update_data_attribute("memory_index", list(range(len(labels))))

    def sizes(self) -> dict[int, int]:
        """Images per class in memory, classes in arrival order."""
        return self.memory.sizes()
