"""One `clbench run`: for each class order, stream the experiences through the condensed-rehearsal strategy,
record every step, and write the record (atomically, after every step) with its memory snapshots.
"""
from __future__ import annotations

import dataclasses
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clbench import config as cfg
from clbench.errors import UsageError
from clbench.memory import MemoryBudget
from clbench.options import build_options
from clbench.results import (SCHEMA, SCHEMA_VERSION, atomic_torch_save, atomic_write_bytes, atomic_write_json,
                             environment, new_run_id, summarise)


class Reporter:
    """Progress callbacks; the library's default says nothing. The CLI passes a rich implementation."""

    def run_started(self, plan: dict[str, Any]) -> None: ...
    def order_started(self, order: int, class_order: list[int]) -> None: ...
    def step_started(self, order: int, step: int, classes: list[int]) -> None: ...
    def condense_progress(self, done: int, total: int, info: dict) -> None: ...
    def train_progress(self, network: int, done: int, total: int) -> None: ...
    def step_finished(self, order: int, step: dict[str, Any]) -> None: ...
    def run_finished(self, record: dict[str, Any], path: Path) -> None: ...


@dataclass
class Prepared:
    """Everything resolved before the first step: errors in the input surface here, not hours later."""

    config: cfg.RunConfig
    device: torch.device
    profile: str
    condenser_cls: type
    condenser_options: Any
    recipe: Any
    budget: MemoryBudget
    dataset: Any
    networks_per_step: int


def prepare(config: cfg.RunConfig) -> Prepared:
    from clbench.data import load_dataset
    from condensers import get_condenser

    config.validate()
    device = cfg.resolve_device(config.device)
    profile = cfg.resolve_profile(config.profile, device)
    condenser_cls = get_condenser(config.condenser)
    options_type = getattr(condenser_cls, "Options", None)
    options = build_options(options_type, config.opt, profile, owner=f"condenser {config.condenser!r}") \
        if options_type is not None else None
    if options_type is None and config.opt:
        raise UsageError(f"condenser {config.condenser!r} has no options; remove --opt")
    recipe = cfg.train_recipe(config, profile)
    budget = MemoryBudget.parse(config.memory)
    dataset = load_dataset(config.dataset, config.data_dir)
    from clbench.streams import split_classes

    split_classes(list(range(dataset.num_classes)), config.steps)
    smallest = int(dataset.class_counts("train").min())
    budget.check(dataset.num_classes, smallest)
    if budget.total is not None and budget.per_class(dataset.num_classes // config.steps) > smallest:
        raise UsageError(
            f"--memory {budget}: the first step's share ({budget.per_class(dataset.num_classes // config.steps)} "
            f"per class) exceeds the smallest class ({smallest} images); give a smaller total"
        )
    from clbench.networks import NETWORK_NAMES

    if config.network not in NETWORK_NAMES:
        raise UsageError(f"--network {config.network!r}: choose one of {', '.join(NETWORK_NAMES)}")
    return Prepared(config, device, profile, condenser_cls, options, recipe, budget, dataset,
                    cfg.networks_per_step(config, profile))


def resolved_config(p: Prepared) -> dict[str, Any]:
    c = p.config
    options = dataclasses.asdict(p.condenser_options) if dataclasses.is_dataclass(p.condenser_options) else {}
    return {
        "condenser": c.condenser,
        "condenser_options": options,
        "shrink_rule": getattr(p.condenser_cls, "shrink_rule", ""),
        "dataset": c.dataset,
        "memory": str(p.budget),
        "steps": c.steps,
        "orders": list(range(c.first_order, c.first_order + c.orders)),
        "profile": p.profile,
        "profile_requested": c.profile,
        "device": str(p.device),
        "seed": c.seed,
        "network": c.network,
        "networks_per_step": p.networks_per_step,
        "train": dataclasses.asdict(p.recipe),
    }


def run(config: cfg.RunConfig, reporter: Reporter | None = None) -> tuple[Path, dict[str, Any]]:
    """Run every order; returns the record's path and the record."""
    reporter = reporter or Reporter()
    p = prepare(config)
    out = Path(config.out)
    _check_writable(out)
    run_id = new_run_id(config.condenser, config.dataset)
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "kind": "continual",
        "run_id": run_id,
        "complete": False,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": resolved_config(p),
        "environment": environment(str(p.device)),
        "orders": [],
        "summary": {},
    }
    path = out / f"{run_id}.json"
    reporter.run_started({"record": str(path), **record["config"]})
    data = _resident_data(p)
    for order in record["config"]["orders"]:
        entry = run_order(p, order, data, reporter, record, path)
        record["orders"].append(entry)
        record["summary"] = summarise(record["orders"])
        atomic_write_json(path, record)
    record["complete"] = True
    record["summary"] = summarise(record["orders"])
    atomic_write_json(path, record)
    reporter.run_finished(record, path)
    return path, record


def run_order(p: Prepared, order: int, data, reporter: Reporter, record: dict, path: Path) -> dict[str, Any]:
    from clbench.augment import make_augment
    from clbench.networks import build_network
    from clbench.streams import class_incremental_stream, class_order
    from strategies.condensed_rehearsal import CondensedRehearsal

    ds = p.dataset
    classes = class_order(order, ds.num_classes)
    reporter.order_started(order, classes)
    benchmark, groups = class_incremental_stream(ds.train_labels, ds.test_labels, classes, p.config.steps)
    condenser = p.condenser_cls(p.condenser_options) if p.condenser_options is not None else p.condenser_cls()

    def make_network(seed: int):
        return build_network(p.config.network, ds.channels, ds.num_classes, ds.image_size, seed=seed,
                             device=p.device)

    strategy = CondensedRehearsal(
        condenser=condenser, budget=p.budget, data=data, class_order=classes, make_network=make_network,
        recipe=p.recipe, augment=make_augment(p.recipe.dsa_strategy if p.recipe.dsa else None),
        networks_per_step=p.networks_per_step, seed=p.config.seed, order_index=order, device=p.device,
        condense_progress=reporter.condense_progress, train_progress=reporter.train_progress,
        extras={"dataset": p.config.dataset, "profile": p.profile},
    )
    entry: dict[str, Any] = {"order": order, "class_order": classes, "complete": False, "steps": []}
    for t, experience in enumerate(benchmark.train_stream):
        reporter.step_started(order, t, groups[t])
        strategy.train(experience, eval_streams=[])
        strategy.eval(benchmark.test_stream[: t + 1])
        step = _step_record(strategy.last_step)
        entry["steps"].append(step)
        reporter.step_finished(order, step)
        record["summary"] = summarise(record["orders"] + [entry])
        atomic_write_json(path, {**record, "orders": record["orders"] + [entry]})
    entry["complete"] = True
    entry["memory_file"] = _save_memory(path, order, strategy.memory, ds)
    return entry


def _step_record(result) -> dict[str, Any]:
    return {
        "step": result.step,
        "classes": result.classes,
        "seen_classes": result.seen_classes,
        "ipc": result.ipc,
        "memory_size": sum(result.memory_sizes.values()),
        "accuracies": result.accuracies,
        "accuracy_mean": sum(result.accuracies) / len(result.accuracies),
        "class_accuracy": {str(c): a for c, a in result.class_accuracy.items()},
        "condense_seconds": result.condense_seconds,
        "train_seconds": result.train_seconds,
        "condenser_facts": result.condenser_facts,
    }


def _resident_data(p: Prepared):
    from strategies.condensed_rehearsal import RealData

    train_x, train_y = p.dataset.normalised("train", p.device)
    test_x, test_y = p.dataset.normalised("test", p.device)
    return RealData(train_x, train_y, test_x, test_y, p.dataset.num_classes)


def _save_memory(record_path: Path, order: int, memory, dataset) -> str:
    """Tensors (torch.load(..., weights_only=True)) and a PNG grid, one row per class, beside the record."""
    folder = record_path.with_suffix("")
    state = memory.state()
    tensor_file = folder / f"memory-order{order}.pt"
    atomic_torch_save(tensor_file, state)
    atomic_write_bytes(folder / f"memory-order{order}.png", memory_grid_png(state, dataset))
    return str(tensor_file.relative_to(record_path.parent))


def memory_grid_png(state: dict[str, torch.Tensor], dataset) -> bytes:
    from torchvision.utils import make_grid
    from torchvision.transforms.functional import to_pil_image

    images, labels = state["images"], state["labels"]
    per_class = int((labels == labels[0]).sum()) if labels.numel() else 1
    pixels = dataset.denormalise(images.float())
    grid = make_grid(pixels, nrow=max(per_class, 1), padding=1, pad_value=1.0)
    buffer = io.BytesIO()
    to_pil_image(grid).save(buffer, format="PNG")
    return buffer.getvalue()


def _check_writable(out: Path) -> None:
    """Fail before any work if the output folder cannot take files."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".clbench-write-test-{time.time_ns()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror}); choose a writable folder") from None
