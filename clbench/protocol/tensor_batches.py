"""The replay learner's minibatches gathered from resident tensors in one index operation each. Avalanche's loaders
(`ReplayDataLoader`, and `TaskBalancedDataLoader` before the memory has anything) fetch a minibatch sample by sample
through `AvalancheDataset.__getitem__` and collate it: on a Fashion-MNIST step that is about as slow as a small
network's forward pass (profiled in benchmarks/replay.py). Here the loader's own batch sampler still decides every
minibatch (the same draws from the same generators: the same samples in the same order); only the fetch changes.
Each dataset in the loader carries a data attribute with its rows in a tensor (`sample_index`: rows of the real
training images; `memory_index`: rows of the memory), and a minibatch is `images[rows]` (the real images normalised
as they are gathered, clbench.data.types.RealData): the same tensors as Avalanche's, so the same numbers
(tests/test_replay_learner.py compares the batches). A loader over any other dataset keeps Avalanche's own path.

This replaces `_make_pytorch_loader` on the loader instance, a private hook of avalanche-lib 0.6.0 (pinned).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
from avalanche.benchmarks.utils.data_loader import MultiDatasetDataLoader
from avalanche.core import SupervisedPlugin
from torch import Tensor

# the current (images, labels) that a row attribute indexes; images a tensor, or a function of rows giving them
Images = Tensor | Callable[[Tensor], Tensor]
Source = Callable[[], tuple[Images, Tensor]]


def with_rows(dataset: Any, attribute: str) -> Any:
    """`dataset` with a data attribute `attribute` = 0..n-1: its samples are those rows of its tensors."""
    return dataset.update_data_attribute(attribute, list(range(len(dataset))))


@dataclass
class _Table:
    images: Images
    labels: Tensor
    rows: Tensor  # per sample of the dataset: its row in images/labels
    tasks: Tensor  # per sample: its task label


def rows_of(dataset: Any, attribute: str) -> Tensor | None:
    """The dataset's rows under `attribute`, None when it has no such attribute."""
    try:
        values = getattr(dataset, attribute)
    except AttributeError:
        return None
    return torch.as_tensor(list(values), dtype=torch.long)


class TensorBatches(SupervisedPlugin):
    """Before each experience, the strategy's loader is switched to gathered batches where every dataset in it
    names its rows. `sources` maps a row attribute to a function giving the tensors it indexes now."""

    def __init__(self, sources: dict[str, Source]):
        super().__init__()
        self.sources = sources

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        loader = strategy.dataloader
        if not isinstance(loader, MultiDatasetDataLoader) or loader.loader_kwargs.get("num_workers", 0):
            return
        tables = [self._table(dataset) for dataset in loader.datasets]
        if any(table is None for table in tables):
            return
        loader._make_pytorch_loader = lambda datasets, batch_sampler: gathered(batch_sampler, tables)

    def _table(self, dataset: Any) -> _Table | None:
        for attribute, source in self.sources.items():
            rows = rows_of(dataset, attribute)
            if rows is not None:
                images, labels = source()
                tasks = torch.as_tensor(list(dataset.targets_task_labels), dtype=torch.long)
                return _Table(images, labels, rows, tasks)
        return None


def skip_loader_seed() -> None:
    """Draw what a torch DataLoader's iterator draws from the global generator when it starts (its workers'
    base seed), so that every later draw (the next epoch's shuffling) stays where Avalanche's loader left it."""
    torch.empty((), dtype=torch.int64).random_()


def gathered(batch_sampler: Any, tables: list[_Table]) -> Iterator[list[Tensor]]:
    """`[images, labels, task labels]` per list of indices the sampler yields (indices into the concatenation
    of the tables' datasets, as Avalanche's ConcatDataset numbers them)."""
    skip_loader_seed()
    device = tables[0].labels.device
    rows = torch.cat([t.rows for t in tables]).to(device)
    which = torch.cat([torch.full((len(t.rows),), k, dtype=torch.long) for k, t in enumerate(tables)]).to(device)
    tasks = torch.cat([t.tasks for t in tables]).to(device)
    fetch = [t.images if callable(t.images) else t.images.__getitem__ for t in tables]
    for indices in batch_sampler:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=device)
        r, w = rows[idx], which[idx]
        x = y = None
        for k, table in enumerate(tables):
            mask = w == k
            if bool(mask.any()):
                images = fetch[k](r[mask])
                if x is None:
                    x = images.new_empty((len(idx), *images.shape[1:]))
                    y = torch.empty(len(idx), dtype=torch.long, device=images.device)
                x[mask] = images
                y[mask] = table.labels[r[mask]]
        yield [x, y, tasks[idx]]
