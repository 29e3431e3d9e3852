"""One `clbench run`: for each class order, stream the experiences through the condensed-rehearsal strategy,
record every step, and write the record (atomically, after every step) with its memory snapshots.

Reliability is kept here too: a checkpoint per order after every step (clbench.protocol.checkpoint), resuming from them,
errors that name the order and step, and stopping cleanly at safe points. The pieces it uses live beside it:
clbench.protocol.signals (SIGINT/SIGTERM), clbench.protocol.parallel (`jobs` processes that run orders side by side and give the
record of a sequential run), clbench.records.snapshots (memory snapshots and pictures, the output-folder check).
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from clbench.protocol import config as cfg
from clbench.protocol.checkpoint import (OrderState, acquire_lock, config_differences, release_lock, remove_checkpoint,
                                resume_states, save_checkpoint)
from clbench.core.errors import AlreadyComplete, ClbenchError, Interrupted, NonFiniteError, OutputError, UsageError
from clbench.memory.store import MemoryBudget
from clbench.records.record import (SCHEMA, SCHEMA_VERSION, RecordError, atomic_write_json, environment, load_record,
                             new_run_id, summarise)
from clbench.protocol.signals import StopRequested, StopSignals
from clbench.records.snapshots import check_writable, save_memory

# Re-exported: callers import these from the runner, whose run and resume raise or use them.
__all__ = ["AlreadyComplete", "Interrupted", "OutputError", "Prepared", "Reporter", "StopRequested", "StopSignals",
           "execute_order", "prepare", "recorded_run_config", "resolved_config", "resume", "run"]


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


_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


# -- resolving the configuration ----------------------------------------------------------------------------
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
    width: int | None


def prepare(config: cfg.RunConfig) -> Prepared:
    from clbench.data.datasets import load_dataset

    config.validate()
    device = cfg.resolve_device(config.device)
    profile = cfg.resolve_profile(config.profile, device)
    condenser_cls, options = cfg.condenser_and_options(config.condenser, config.opt, profile)
    recipe = cfg.train_recipe(config, profile)
    budget = MemoryBudget.parse(config.memory)
    dataset = load_dataset(config.dataset, config.data_dir)
    from clbench.data.streams import split_classes

    split_classes(list(range(dataset.num_classes)), config.steps)
    smallest = int(dataset.class_counts("train").min())
    budget.check(dataset.num_classes, smallest)
    if budget.total is not None and budget.per_class(dataset.num_classes // config.steps) > smallest:
        raise UsageError(
            f"--memory {budget}: the first step's share ({budget.per_class(dataset.num_classes // config.steps)} "
            f"per class) exceeds the smallest class ({smallest} images); give a smaller total"
        )
    from clbench.nets.networks import NETWORK_NAMES

    if config.network not in NETWORK_NAMES:
        raise UsageError(f"--network {config.network!r}: choose one of {', '.join(NETWORK_NAMES)}")
    if config.width is not None and not config.network.startswith("convnet"):
        raise UsageError(f"--width applies to ConvNet only, not to --network {config.network}")
    return Prepared(config, device, profile, condenser_cls, options, recipe, budget, dataset,
                    cfg.networks_per_step(config, profile), cfg.network_width(config, profile))


def _condenser(p: Prepared):
    return p.condenser_cls(p.condenser_options) if p.condenser_options is not None else p.condenser_cls()


def resolved_config(p: Prepared) -> dict[str, Any]:
    c = p.config
    options = dataclasses.asdict(p.condenser_options) if dataclasses.is_dataclass(p.condenser_options) else {}
    return {
        "condenser": c.condenser,
        "condenser_options": options,
        "shrink_rule": getattr(_condenser(p), "shrink_rule", ""),  # may depend on the options (DM's `shrink`)
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


# -- entry points -------------------------------------------------------------------------------------------
def run(config: cfg.RunConfig, reporter: Reporter | None = None, *,
        resume: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Run every order (or, with `resume`, what that record still lacks); returns the record's path and record.

    Raises Interrupted after a SIGINT/SIGTERM, AlreadyComplete for a finished record, and ClbenchError
    subclasses (naming order and step) when a step fails; the record on disk then holds every completed step.
    """
    reporter = reporter or Reporter()
    p = prepare(config)
    if resume is not None:
        session = _Session.reopen(p, Path(resume), reporter)
    else:
        session = _Session.create(p, reporter)
    return session.execute()


def recorded_run_config(record_path: str | Path) -> dict[str, Any]:
    """The options a record was started with (for `clbench resume`); a RecordError when it has none."""
    path = Path(record_path)
    record = load_record(path)
    values = record.get("run_config")
    if not isinstance(values, dict):
        raise RecordError(f"{path} does not hold the options it was run with (written by an older clbench?); "
                          f"resume it with `clbench run <the same options> --resume {path}`")
    return values


def resume(record_path: str | Path, reporter: Reporter | None = None, *,
           jobs: int | None = None) -> tuple[Path, dict[str, Any]]:
    """Continue the run of a record with the options it was started with (its folder stays its home)."""
    path = Path(record_path)
    values = recorded_run_config(path)
    known = {f.name for f in dataclasses.fields(cfg.RunConfig)}
    values = {k: v for k, v in values.items() if k in known}
    values["out"] = str(path.parent)
    if jobs is not None:
        values["jobs"] = jobs
    try:
        config = cfg.RunConfig(**values)
    except TypeError as exc:
        raise RecordError(f"{path} is damaged: its run options cannot be read ({exc})") from None
    return run(config, reporter, resume=path)


# -- one run's state and everything that writes it ----------------------------------------------------------
class _Session:
    """The record being written, the orders' states, and the stop flag: the one place that persists progress."""

    def __init__(self, p: Prepared, path: Path, record: dict[str, Any], states: dict[int, OrderState],
                 reporter: Reporter):
        from clbench.data.streams import class_order

        self.p, self.path, self.record, self.states, self.reporter = p, path, record, states, reporter
        self.jobs = p.config.jobs
        self.threads = max(1, torch.get_num_threads() // self.jobs)
        self.entries: dict[int, dict[str, Any]] = {}
        for order, state in states.items():
            if state.complete_entry is not None:
                self.entries[order] = state.complete_entry
            elif state.steps:
                self.entries[order] = {"order": order, "class_order": class_order(order, p.dataset.num_classes),
                                       "complete": False, "steps": list(state.steps)}
        self.signals = StopSignals(reporter.stop_requested)

    @classmethod
    def create(cls, p: Prepared, reporter: Reporter) -> _Session:
        out = Path(p.config.out)
        check_writable(out, _bytes_needed(p))
        run_id = new_run_id(p.config.condenser, p.config.dataset)
        record: dict[str, Any] = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "kind": "continual",
            "run_id": run_id,
            "complete": False,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "config": resolved_config(p),
            "run_config": dataclasses.asdict(p.config),
            "environment": environment(str(p.device)),
            "orders": [],
            "summary": {},
        }
        session = cls(p, out / f"{run_id}.json", record, {o: OrderState(o) for o in record["config"]["orders"]},
                      reporter)
        record["environment"].update(jobs=session.jobs, threads_per_order=session.threads)
        return session

    @classmethod
    def reopen(cls, p: Prepared, path: Path, reporter: Reporter) -> _Session:
        record = load_record(path)
        if record.get("complete"):
            raise AlreadyComplete(path)
        diffs = config_differences(record["config"], resolved_config(p))
        if diffs:
            raise UsageError(
                f"{path} was made with another configuration, so it cannot be resumed with this one; "
                f"differences: {'; '.join(diffs)}. Use `clbench resume {path}` to continue it as it was started"
            )
        states = resume_states(record, path)
        check_writable(path.parent, _bytes_needed(p))
        session = cls(p, path, record, states, reporter)
        recorded_threads = (record.get("environment") or {}).get("threads_per_order")
        if isinstance(recorded_threads, int) and recorded_threads > 0:
            session.threads = recorded_threads  # CPU numbers depend on it: keep the run's, whatever the machine
        record.pop("error", None)
        record.setdefault("resumes", []).append({
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "steps_done": session.steps_done(),
            "jobs": session.jobs, "threads_per_order": session.threads, "host": environment(str(p.device))["host"],
        })
        record["run_config"] = {**(record.get("run_config") or dataclasses.asdict(p.config)), "jobs": p.config.jobs}
        return session

    # -- progress bookkeeping -----------------------------------------------------------------------------
    def steps_done(self) -> int:
        return sum(len(e["steps"]) for e in self.entries.values())

    def steps_total(self) -> int:
        return len(self.record["config"]["orders"]) * self.p.config.steps

    def write(self) -> None:
        orders = [self.entries[o] for o in self.record["config"]["orders"] if o in self.entries]
        self.record["orders"] = orders
        self.record["summary"] = summarise(orders)
        try:
            atomic_write_json(self.path, self.record)
        except OSError as exc:
            raise OutputError(f"cannot write the record {self.path} ({exc.strerror or exc}); the copy on disk "
                              f"keeps the steps saved before. Free space, then: clbench resume {self.path}") from None

    def step_done(self, order: int, step: dict[str, Any]) -> None:
        from clbench.data.streams import class_order

        entry = self.entries.setdefault(order, {
            "order": order, "class_order": class_order(order, self.p.dataset.num_classes), "complete": False,
            "steps": []})
        entry["steps"].append(step)
        self.write()
        self.reporter.step_finished(order, step)

    def order_done(self, entry: dict[str, Any]) -> None:
        self.entries[entry["order"]] = entry
        self.states[entry["order"]].complete_entry = entry
        self.write()
        remove_checkpoint(self.path, entry["order"])

    def fail(self, exc: ClbenchError) -> ClbenchError:
        """Record the error beside the completed steps; returns the exception to raise, with where it happened."""
        message = f"{exc} (completed steps saved: {self.steps_done()}, in {self.path})"
        failure = type(exc)(message) if type(exc).__init__ is Exception.__init__ else exc
        self.record["error"] = {"type": type(exc).__name__, "message": str(exc)}
        with contextlib.suppress(OutputError):
            self.write()
        return failure

    # -- running ------------------------------------------------------------------------------------------
    def execute(self) -> tuple[Path, dict[str, Any]]:
        todo = [o for o, s in self.states.items() if s.complete_entry is None]
        self.reporter.run_started({"record": str(self.path), **self.record["config"],
                                   "completed_steps": self.steps_done(), "jobs": self.jobs})
        _saving(lambda: acquire_lock(self.path), self.path)
        try:
            self.write()  # a run that dies before its first step still leaves a record to resume
            workers = min(self.jobs, len(todo))
            with self.signals:
                try:
                    if workers > 1:
                        from clbench.protocol.parallel import ParallelOrders

                        ParallelOrders(self, todo, workers).run()
                    elif todo:
                        self._run_here(todo)
                except StopRequested:
                    raise self._interrupted() from None
                except ClbenchError as exc:
                    raise self.fail(exc) from exc
            self.record["complete"] = True
            self.write()
        finally:
            release_lock(self.path)
        self.reporter.run_finished(self.record, self.path)
        return self.path, self.record

    def _interrupted(self) -> Interrupted:
        with contextlib.suppress(OutputError):
            self.write()
        return Interrupted(self.path, self.signals.signal_name or "SIGINT", self.steps_done(), self.steps_total(),
                           self.jobs)

    def _run_here(self, todo: list[int]) -> None:
        data = resident_data(self.p)
        with _torch_threads(self.threads):
            for order in todo:
                self.signals.check()
                entry = execute_order(self.p, self.states[order], data, self.path, self.record["run_id"],
                                      self.reporter, self.signals.check, self.step_done)
                self.order_done(entry)


def execute_order(p: Prepared, state: OrderState, data, record_path: Path, run_id: str, reporter: Reporter,
                  check_stop: Callable[[], None], on_step: Callable[[int, dict[str, Any]], None]) -> dict[str, Any]:
    """Run the steps of one order after those `state` holds; a checkpoint after each. Returns the order's entry."""
    from clbench.nets.augment import make_augment
    from clbench.memory.store import Memory
    from clbench.nets.networks import build_network
    from clbench.data.streams import class_incremental_stream, class_order
    from clbench.strategies.condensed_rehearsal import CondensedRehearsal

    ds, order = p.dataset, state.order
    classes = class_order(order, ds.num_classes)
    reporter.order_started(order, classes)
    benchmark, groups = class_incremental_stream(ds.train_labels, ds.test_labels, classes, p.config.steps)
    condenser = _condenser(p)

    def make_network(seed: int):
        return build_network(p.config.network, ds.channels, ds.num_classes, ds.image_size, seed=seed,
                             device=p.device, width=p.width)

    def condense_progress(done: int, total: int, info: dict) -> None:
        check_stop()
        reporter.condense_progress(done, total, info)

    def train_progress(network: int, done: int, total: int) -> None:
        check_stop()
        reporter.train_progress(network, done, total)

    strategy = CondensedRehearsal(
        condenser=condenser, budget=p.budget, data=data, class_order=classes, make_network=make_network,
        recipe=p.recipe, augment=make_augment(p.recipe.dsa_strategy if p.recipe.dsa else None),
        networks_per_step=p.networks_per_step, seed=p.config.seed, order_index=order, device=p.device,
        condense_progress=condense_progress, train_progress=train_progress,
        extras={"dataset": p.config.dataset, "profile": p.profile},
    )
    steps = list(state.steps)
    if state.memory is not None:
        strategy.restore(len(steps), Memory.from_state(state.memory, p.device))
    for t, experience in enumerate(benchmark.train_stream):
        if t < len(steps):
            continue
        check_stop()
        reporter.step_started(order, t, groups[t])
        try:
            strategy.train(experience, eval_streams=[])
            strategy.eval(benchmark.test_stream[: t + 1])
        except NonFiniteError as exc:
            raise NonFiniteError(f"order {order}, step {t} (classes {groups[t]}): non-finite values with condenser "
                                 f"{strategy.condenser_name!r}: {exc}") from exc
        except ClbenchError as exc:
            raise type(exc)(f"order {order}, step {t} (classes {groups[t]}): {exc}") from exc
        except _OUT_OF_MEMORY as exc:
            raise ClbenchError(f"order {order}, step {t} (classes {groups[t]}): out of memory on {p.device} "
                               f"({str(exc).splitlines()[0]}); free the device or lower the memory budget, "
                               f"--nets or --jobs, then resume") from exc
        step = _step_record(strategy.last_step)
        steps.append(step)
        _saving(lambda: save_checkpoint(record_path, run_id, order, steps, strategy.memory.state()), record_path)
        on_step(order, step)
    memory_file = _saving(lambda: save_memory(record_path, order, strategy.memory, ds), record_path)
    return {"order": order, "class_order": classes, "complete": True, "steps": steps, "memory_file": memory_file}


def _saving(write: Callable[[], Any], record_path: Path) -> Any:
    try:
        return write()
    except OSError as exc:
        raise OutputError(f"cannot write beside {record_path} ({exc.strerror or exc}); the record keeps the steps "
                          f"saved before. Free space, then: clbench resume {record_path}") from None


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """CPU results depend on the intra-op thread count: an order always runs with the run's per-order count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# -- records and estimates ---------------------------------------------------------------------------------
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


def resident_data(p: Prepared):
    """The dataset, normalised, on the run's device: loaded once per process, shared by the orders it runs."""
    from clbench.strategies.condensed_rehearsal import RealData

    train_x, train_y = p.dataset.normalised("train", p.device)
    test_x, test_y = p.dataset.normalised("test", p.device)
    return RealData(train_x, train_y, test_x, test_y, p.dataset.num_classes)


def _bytes_needed(p: Prepared) -> int:
    """A generous estimate of a run's files: per order a snapshot and a checkpoint of the largest memory."""
    ds = p.dataset
    images = p.budget.total or (p.budget.per_class(ds.num_classes) * ds.num_classes)
    per_image = ds.channels * int(ds.image_size) ** 2 * 4
    return p.config.orders * images * per_image * 3 + (1 << 20)

