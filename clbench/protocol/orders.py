"""One class order of the continual protocol, as the run's own process or a `--jobs` worker executes it.

`prepare` resolves a RunConfig (clbench.protocol.resolve, plus the memory budget and the networks per step);
`execute_order` streams the order's experiences through the condensed-rehearsal strategy, with Avalanche
plugins that report each step and checkpoint it (clbench.protocol.plugins), and returns the order's entry
for the record. Every randomness is derived from (seed, order, step), so an order gives the same numbers in
any process and after any resume.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from clbench.condense.checks import OUT_OF_MEMORY
from clbench.core.errors import ClbenchError, NonFiniteError, OutputError, UsageError
from clbench.memory.store import MemoryBudget
from clbench.protocol import config as cfg
from clbench.protocol.checkpoint import OrderState, checkpoint_path, save_checkpoint
from clbench.protocol.failures import out_of_memory, saving
from clbench.protocol.resolve import PreparedRun, Resolved, resolve
from clbench.records.record import RecordError
from clbench.records.schema import OrderEntry, StepEntry
from clbench.records.snapshots import save_memory


class Reporter:
    """Progress callbacks; the library's default says nothing. The CLI passes a rich implementation."""

    def run_started(self, plan: dict[str, Any]) -> None: ...
    def order_started(self, order: int, class_order: list[int]) -> None: ...
    def step_started(self, order: int, step: int, classes: list[int]) -> None: ...
    def condense_progress(self, done: int, total: int, info: dict) -> None: ...
    def train_progress(self, network: int, done: int, total: int) -> None: ...
    def step_finished(self, order: int, step: dict[str, Any]) -> None: ...
    def run_finished(self, record: dict[str, Any], path: Path) -> None: ...
    # Called from a signal handler: keep it short (one line to the user).
    def stop_requested(self, signal_name: str) -> None: ...


@dataclass
class Prepared(PreparedRun):
    """A continual run, resolved before its first step: errors in the input surface here, not hours later."""

    config: cfg.RunConfig
    resolved: Resolved
    budget: MemoryBudget
    networks_per_step: int

    @property
    def width(self) -> int | None:
        """The width the run's network is built with (None for architectures without one)."""
        return self.resolved.width_for(self.config.network)


def prepare(config: cfg.RunConfig) -> Prepared:
    from clbench.data.streams import split_classes

    config.validate()
    if config.width is not None and not config.network.startswith("convnet"):
        raise UsageError(f"--width applies to ConvNet only, not to --network {config.network}")
    resolved = resolve(condenser=config.condenser, opt=config.opt, train=config.train, dataset=config.dataset,
                       data_dir=config.data_dir, device=config.device, profile=config.profile,
                       network=config.network, width=config.width)
    dataset = resolved.dataset
    if config.learner == "replay":
        from clbench.protocol.replay import check_replay

        check_replay(config, resolved.recipe)
    budget = MemoryBudget.parse(config.memory)
    split_classes(list(range(dataset.num_classes)), config.steps)
    smallest = int(dataset.class_counts("train").min())
    budget.check(dataset.num_classes, smallest)
    first_share = budget.per_class(dataset.num_classes // config.steps)
    if budget.total is not None and first_share > smallest:
        raise UsageError(f"--memory {budget}: the first step's share ({first_share} per class) exceeds the smallest "
                         f"class ({smallest} images); give a smaller total")
    nets = 1 if config.learner == "replay" else cfg.networks_per_step(config, resolved.profile)
    return Prepared(config, resolved, budget, nets)


def resolved_config(p: Prepared) -> dict[str, Any]:
    """The record's `config`: every value the run uses, defaults included."""
    c = p.config
    return {
        "learner": c.learner,
        "condenser": c.condenser,
        "condenser_options": p.resolved.condenser_options_dict(),
        "shrink_rule": getattr(p.resolved.new_condenser(), "shrink_rule", ""),  # may depend on the options
        "dataset": c.dataset,
        "memory": str(p.budget),
        "steps": c.steps,
        "orders": list(range(c.first_order, c.first_order + c.orders)),
        "profile": p.profile,
        "profile_requested": c.profile,
        "device": str(p.device),
        "seed": c.seed,
        "network": c.network,
        "width": p.width,
        "networks_per_step": p.networks_per_step,
        "train": dataclasses.asdict(p.recipe),
    }


def resident_data(p: Prepared):
    """The dataset, normalised, on the run's device: loaded once per process, shared by the orders it runs."""
    from clbench.strategies.condensed_rehearsal import RealData

    train_x, train_y = p.dataset.normalised("train", p.device)
    test_x, test_y = p.dataset.normalised("test", p.device)
    return RealData(train_x, train_y, test_x, test_y, p.dataset.num_classes)


def execute_order(p: Prepared, state: OrderState, data, record_path: Path, run_id: str, reporter: Reporter,
                  check_stop: Callable[[], None], on_step: Callable[[int, StepEntry], None]) -> OrderEntry:
    """Run the steps of one order after those `state` holds; a checkpoint after each. Returns the order's entry."""
    from clbench.data.streams import class_incremental_stream, class_order
    from clbench.nets.networks import build_network
    from clbench.protocol.logs import OrderLog, parse_log

    ds, order = p.dataset, state.order
    classes = class_order(order, ds.num_classes)
    reporter.order_started(order, classes)
    benchmark, groups = class_incremental_stream(ds.train_labels, ds.test_labels, classes, p.config.steps)

    def make_network(seed: int):
        return build_network(p.config.network, ds.channels, ds.num_classes, ds.image_size, seed=seed,
                             device=p.device, width=p.width)

    log = OrderLog(parse_log(p.config.log), record_path, order, len(state.steps)) if p.config.log else None

    def condense_progress(done: int, total: int, info: dict) -> None:
        check_stop()
        if log is not None:
            log.condense(done, total, info)
        reporter.condense_progress(done, total, info)

    def train_progress(network: int, done: int, total: int) -> None:
        check_stop()
        reporter.train_progress(network, done, total)

    def step_started(order: int, step: int, classes: list[int]) -> None:
        if log is not None:
            log.started(step)
        reporter.step_started(order, step, classes)

    def step_done(order: int, entry: StepEntry) -> None:
        if log is not None:
            log.step_done(entry)
        on_step(order, entry)

    hooks = Hooks(condense_progress, train_progress, log.epoch if log is not None else None, step_started,
                  step_done, check_stop)
    try:
        if p.config.learner == "replay":
            return _replay_order(p, state, classes, groups, data, make_network, record_path, run_id, hooks)
        return _retrain_order(p, state, classes, benchmark, groups, data, make_network, record_path, run_id, hooks)
    finally:
        if log is not None:
            log.close()


@dataclass
class Hooks:
    """What an order calls as it goes: the reporter's progress and the run's logs, then the session's record."""

    condense_progress: Callable[[int, int, dict], None]
    train_progress: Callable[[int, int, int], None]
    train_loss: Callable[[int, int, int, float], None] | None  # (network, epoch, epochs, loss); None: not logged
    step_started: Callable[[int, int, list[int]], None]
    step_done: Callable[[int, StepEntry], None]
    check_stop: Callable[[], None]


def _retrain_order(p: Prepared, state: OrderState, classes: list[int], benchmark, groups: list[list[int]], data,
                   make_network, record_path: Path, run_id: str, hooks: Hooks) -> OrderEntry:
    from clbench.memory.store import Memory
    from clbench.nets.augment import make_augment
    from clbench.protocol.plugins import StepRecorder, StepReport  # Avalanche: imported by the orders that use it
    from clbench.strategies.condensed_rehearsal import CondensedRehearsal

    ds, order = p.dataset, state.order
    epochs = p.recipe.epochs
    steps = list(state.steps)
    checkpoint = lambda steps, memory: saving(  # noqa: E731
        lambda: save_checkpoint(record_path, run_id, order, steps, memory), record_path)
    strategy = CondensedRehearsal(
        condenser=p.resolved.new_condenser(), budget=p.budget, data=data, class_order=classes,
        make_network=make_network, recipe=p.recipe,
        augment=make_augment(p.recipe.dsa_strategy if p.recipe.dsa else None),
        networks_per_step=p.networks_per_step, seed=p.config.seed, order_index=order, device=p.device,
        condense_progress=hooks.condense_progress, train_progress=hooks.train_progress,
        train_loss=None if hooks.train_loss is None else (
            lambda k, epoch, loss: hooks.train_loss(k, epoch, epochs, loss)),
        plugins=[StepReport(order, groups, hooks.step_started),
                 StepRecorder(order, steps, checkpoint, hooks.step_done)],
        extras={"dataset": p.config.dataset, "profile": p.profile},
    )
    if state.memory is not None:
        strategy.restore(len(steps), Memory.from_state(state.memory, p.device))
    for t, experience in enumerate(benchmark.train_stream):
        if t < len(state.steps):
            continue
        hooks.check_stop()
        with step_errors(p, order, t, groups[t], strategy.condenser_name):
            strategy.train(experience, eval_streams=[])
            strategy.eval(benchmark.test_stream[: t + 1])
    memory_file = saving(lambda: save_memory(record_path, order, strategy.memory, ds), record_path)
    return {"order": order, "class_order": classes, "complete": True, "steps": steps, "memory_file": memory_file}


def _replay_order(p: Prepared, state: OrderState, classes: list[int], groups: list[list[int]], data, make_network,
                  record_path: Path, run_id: str, hooks: Hooks) -> OrderEntry:
    """One order with the replay learner (clbench.protocol.replay), continued after the steps `state` holds; a
    checkpoint (memory, network, optimizer) after each step."""
    from clbench.protocol.replay import run_replay_order

    order = state.order
    if state.steps and state.learner is None:
        raise RecordError(f"checkpoint {checkpoint_path(record_path, order)} has no network for the replay "
                          f"learner; delete it to redo order {order} from its first step")
    steps: list[StepEntry] = list(state.steps)

    def step_done(entry: StepEntry, memory: dict, learner: dict) -> None:
        steps.append(entry)
        saving(lambda: save_checkpoint(record_path, run_id, order, steps, memory, learner), record_path)
        hooks.step_done(order, entry)

    memory = run_replay_order(
        p, order, classes, groups, data, make_network, condense_progress=hooks.condense_progress,
        train_progress=hooks.train_progress, check_stop=hooks.check_stop, step_done=step_done,
        step_started=lambda t, new: hooks.step_started(order, t, new),
        guard=lambda t, name: step_errors(p, order, t, groups[t], name), train_loss=hooks.train_loss,
        start=len(steps), memory_state=state.memory if steps else None, learner_state=state.learner)
    memory_file = saving(lambda: save_memory(record_path, order, memory, p.dataset), record_path)
    return {"order": order, "class_order": classes, "complete": True, "steps": steps, "memory_file": memory_file}


@contextlib.contextmanager
def step_errors(p: Prepared, order: int, step: int, classes: list[int], condenser: str) -> Iterator[None]:
    """A failing step's error, naming the order, the step and its classes (and the condenser for NaNs)."""
    where = f"order {order}, step {step} (classes {classes})"
    try:
        yield
    except NonFiniteError as exc:
        raise NonFiniteError(f"{where}: non-finite values with condenser {condenser!r}: {exc}") from exc
    except OutputError:
        raise
    except ClbenchError as exc:
        raise type(exc)(f"{where}: {exc}") from exc
    except OUT_OF_MEMORY as exc:
        raise out_of_memory(where, p.device, exc, "lower the memory budget, --nets or --jobs, then resume") from exc


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """CPU results depend on the intra-op thread count: an order always runs with the run's per-order count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def bytes_needed(p: Prepared) -> int:
    """A generous estimate of a run's files: per order a snapshot and a checkpoint of the largest memory."""
    ds = p.dataset
    images = p.budget.total or (p.budget.per_class(ds.num_classes) * ds.num_classes)
    per_image = ds.channels * int(ds.image_size) ** 2 * 4
    return p.config.orders * images * per_image * 3 + (1 << 20)
