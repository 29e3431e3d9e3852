"""The condenser contract, as a check a plugin author calls from pytest.

    from clbench.testing import check_condenser
    from my_package import MyCondenser

    def test_contract():
        check_condenser(MyCondenser)

It builds a small real task (a few classes of scikit-learn's digits, a narrow ConvNet, DSA) the way the
harness does, runs the condenser twice with the same seed, and raises AssertionError naming the first broken
promise: the set's shape, dtype, labels, images per class, finite values, the same set for the same seed,
and the real data left as it was given.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from clbench.core.errors import ClbenchError

__all__ = ["check_condenser", "make_task"]


def make_task(
    *,
    dataset: str = "digits",
    classes: tuple[int, ...] = (0, 1, 2),
    ipc: int = 2,
    seed: int = 0,
    per_class: int = 40,
    network: str = "convnet",
    width: int | None = 32,
    device: str | torch.device = "cpu",
) -> Any:
    """A CondenseTask like the harness builds: `per_class` real training images of each class (shuffled
    together), a seeded generator, fresh seeded networks of `network`, and DSA with the default strategy."""
    from clbench.data.datasets import load_dataset
    from clbench.nets.networks import build_network
    from clbench.strategies.memory_step import new_task

    device = torch.device(device)
    ds = load_dataset(dataset)
    bad = [c for c in classes if not 0 <= c < ds.num_classes]
    if bad or len(set(classes)) != len(classes):
        raise ValueError(f"classes {classes}: give distinct class ids in 0..{ds.num_classes - 1}")
    images, labels = ds.normalised("train", "cpu")
    picked = torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in classes])
    shuffle = torch.randperm(picked.numel(), generator=torch.Generator().manual_seed(1234))
    picked = picked[shuffle]  # classes interleaved: a condenser must not assume contiguous blocks
    gen = torch.Generator(device=device).manual_seed(seed)
    def build(seed: int) -> torch.nn.Module:
        return build_network(network, ds.channels, ds.num_classes, ds.image_size, seed=seed, device=device,
                             width=width)

    return new_task(images[picked].to(device), labels[picked].to(device), classes, ipc, generator=gen,
                    make_network=build, device=device, num_classes=ds.num_classes,
                    extras={"dataset": dataset, "profile": "quick"})


def _instance(condenser: Any, options: Mapping[str, Any] | None) -> Any:
    """A class (built with its quick options plus `options`), an instance, or a registered name."""
    from clbench.core.options import build_options

    if isinstance(condenser, str):
        from clbench.condensers import get_condenser

        condenser = get_condenser(condenser)
    if isinstance(condenser, type):
        options_type = getattr(condenser, "Options", None)
        if options_type is None:
            return condenser()
        import dataclasses

        assert dataclasses.is_dataclass(options_type), (
            f"{condenser.__qualname__}.Options must be a dataclass (build its fields with clbench.core.options.option)")
        return condenser(build_options(options_type, dict(options or {}), "quick", owner=condenser.__qualname__))
    if options:
        raise TypeError("options= applies to a condenser class; an instance already has its options")
    return condenser


def _run(condenser: Any, task: Any, label: str) -> Any:
    from clbench.core.speed import tf32

    try:
        with tf32(False, task.device):  # as the harness runs it (condense.checks.run_condenser)
            return condenser.condense(task)
    except Exception as exc:
        raise AssertionError(f"{label}: condense raised {type(exc).__name__}: {exc}") from exc


def check_condenser(
    condenser: Any,
    *,
    dataset: str = "digits",
    ipc: int = 2,
    classes: tuple[int, ...] = (0, 1, 2),
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    network: str = "convnet",
    device: str | torch.device = "cpu",
) -> None:
    """Raise AssertionError, with a message naming what is wrong, unless `condenser` keeps the contract.

    `condenser` is a Condenser class (built with its quick-profile options, then `options`), an instance, or a
    registered name. The harness applies the same checks to every set it receives (clbench.memory.checks), so a
    condenser that passes here is accepted by `clbench run`.
    """
    from clbench.core.errors import UsageError
    from clbench.memory.checks import check_synthetic_set, checked_shrink

    instance = _instance(condenser, options)
    name = getattr(instance, "name", "") or type(instance).__name__
    label = f"check_condenser({name})"
    assert callable(getattr(instance, "condense", None)), f"{label}: the condenser has no condense(task) method"

    task = make_task(dataset=dataset, classes=classes, ipc=ipc, seed=seed, network=network, device=device)
    check_data = getattr(instance, "check_data", None)  # the harness asks it before any work
    if callable(check_data):
        try:
            check_data(tuple(task.images.shape[1:]), task.num_classes)
        except UsageError as exc:
            raise AssertionError(f"{label}: check_data refuses the {dataset} test data ({exc}); pass dataset= "
                                 f"and options it accepts") from exc
    real_images, real_labels = task.images.clone(), task.labels.clone()
    result = _run(instance, task, label)

    # the real data it was given, left untouched
    if not torch.equal(task.images, real_images):
        changed = int((task.images != real_images).flatten(1).any(dim=1).sum())
        raise AssertionError(f"{label}: condense changed the real images it was given in place ({changed} of "
                             f"{real_images.shape[0]} images differ afterwards); work on a copy (images.clone())")
    if not torch.equal(task.labels, real_labels):
        raise AssertionError(f"{label}: condense changed the real labels it was given in place")

    # shapes, dtypes, labels, images per class, device, finite values, facts: the harness's own check
    try:
        check_synthetic_set(result, task.images, list(classes), ipc * getattr(instance, "expansion", 1), name)
    except ClbenchError as exc:
        raise AssertionError(f"{label}: {exc}") from None

    # the same seed gives the same set
    again = _run(instance, make_task(dataset=dataset, classes=classes, ipc=ipc, seed=seed, network=network,
                                     device=device), label)
    same_labels = getattr(again, "labels", None) is not None and torch.equal(again.labels, result.labels)
    same_images = same_labels and again.images.shape == result.images.shape and torch.equal(again.images,
                                                                                           result.images)
    if not same_images:
        detail = "labels differ" if not same_labels else \
            f"images differ by up to {float((again.images - result.images).abs().max()):.3g}"
        raise AssertionError(f"{label}: two runs with the same seed gave different sets ({detail}); draw all "
                             f"randomness from task.generator (task.randint, task.randperm, task.seed(), "
                             f"task.new_network()), never from the global RNG or the clock")

    # the shrink rule, used under a total memory budget, returns valid indices (counted in training images:
    # budget images times the condenser's expansion)
    if ipc >= 2:
        per = getattr(instance, "expansion", 1)
        first = result.images[result.labels == classes[0]]
        have, keep = ipc * per, (ipc - 1) * per
        idx = instance.shrink(first, keep, torch.Generator(device=task.device).manual_seed(seed))
        try:
            checked_shrink(idx, have, keep, label)  # the check a run applies
        except ClbenchError as exc:
            raise AssertionError(f"{label}: {exc}") from None
