"""Condensed sets made elsewhere, evaluated under clbench's protocols: the condenser that reads them from a file.

`--opt path=FILE` names a clbench memory or synthetic-set file, a static file of the reference code or a continual
one (clbench.data.setfiles says how each is laid out); `{order}` in the path is the class order's number, for
one file per order. Each step takes, for each of its classes, the file's images of that class (exactly ipc of
them), in the file's order. What does not fit the run (a missing class, another image shape, pixels instead of
normalised images, a count other than ipc) is one UsageError, checked before any work where the file is known.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from clbench.condensers.base import Condenser, CondenseTask, SyntheticSet, register, stack_by_class
from clbench.core.errors import UsageError
from clbench.core.options import option
from clbench.data.setfiles import read_set_file


@dataclass
class PrecomputedOptions:
    path: str = option("", "the set's file: clbench's (images, labels), the reference's static "
                           "{'data': [[images, labels], ...]} or continual {'data': [(images, labels) per step]}; "
                           "'{order}' stands for the class order's number")
    experiment: int = option(-1, "which set of a reference static file (its 'data' list, one per experiment); -1: "
                                 "static set k reads experiment k (a continual run, experiment 0). Ignored for the "
                                 "other layouts", min=-1)


@register
class Precomputed(Condenser):
    """Images read from a file (anyone's condensed set), checked against the task, not computed."""

    name = "precomputed"
    Options = PrecomputedOptions
    shrink_rule = "random subset (seeded), as for any condenser"

    def __init__(self, options: Any = None):
        super().__init__(options)
        self._cache: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor, str]] = {}

    def _read(self, path: str, set_index: int = 0) -> tuple[torch.Tensor, torch.Tensor, str]:
        experiment = set_index if self.options.experiment < 0 else self.options.experiment
        if (path, experiment) not in self._cache:
            (images, labels), fmt = read_set_file(path, experiment)
            self._cache[(path, experiment)] = (images, labels, fmt)
        return self._cache[(path, experiment)]

    def check_data(self, image_shape: tuple[int, ...], num_classes: int) -> None:
        path = self.options.path
        if not path:
            raise UsageError("precomputed: give the set's file with --opt path=FILE ('{order}' for one per order)")
        if "{order}" in path:
            return  # each order's file is read at its first step
        self._check(path, *self._read(path)[:2], image_shape, num_classes, classes=range(num_classes))

    @staticmethod
    def _check(path: str, images: torch.Tensor, labels: torch.Tensor, image_shape: tuple[int, ...],
               num_classes: int, classes: Any) -> None:
        if tuple(images.shape[1:]) != tuple(image_shape):
            raise UsageError(f"precomputed {path}: images of shape {tuple(images.shape[1:])}, but the dataset's are "
                             f"{tuple(image_shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise UsageError(f"precomputed {path}: labels {int(labels.min())}..{int(labels.max())}, but the dataset "
                             f"has classes 0..{num_classes - 1}")
        missing = sorted(set(classes) - set(labels.tolist()))
        if missing:
            raise UsageError(f"precomputed {path}: no images of class {', '.join(map(str, missing[:10]))}"
                             f"{' ...' if len(missing) > 10 else ''}; the file must hold every class the run uses")
        if images.numel() and float(images.min()) >= 0:
            raise UsageError(f"precomputed {path}: every value is >= 0 (range {float(images.min()):.3g}.."
                             f"{float(images.max()):.3g}): these look like pixels, but clbench and the reference "
                             f"keep images normalised with the dataset's mean and std; save (x - mean) / std")

    def condense(self, task: CondenseTask) -> SyntheticSet:
        start = time.perf_counter()
        path = self.options.path
        if "{order}" in path:
            if "order" not in task.extras:
                raise UsageError(f"precomputed {path}: '{{order}}' needs a class order, and this task has none "
                                 f"(a static set); name one file")
            path = path.replace("{order}", str(task.extras["order"]))
        images, labels, fmt = self._read(path, int(task.extras.get("set", 0)))
        # every class of the order (or the task), so that a file lacking a later step's class fails at step 0
        classes = task.extras.get("class_order", task.classes)
        self._check(path, images, labels, tuple(task.images.shape[1:]), task.num_classes, classes)
        chosen = {}
        for c in task.classes:
            mine = images[labels == c]
            if mine.shape[0] != task.ipc:
                raise UsageError(f"precomputed {path}: {mine.shape[0]} images of class {c}, but the run keeps "
                                 f"{task.ipc} per class; run with --memory {mine.shape[0]}ipc (or --ipc)")
            chosen[c] = mine.to(task.images.device)
        result = stack_by_class(chosen)
        result.facts = {"seconds": time.perf_counter() - start, "file": path, "format": fmt}
        return result
