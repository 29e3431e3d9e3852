"""`clbench run` and `clbench resume`: the continual protocol over several class orders, and its record.

`run` resolves the configuration (clbench.protocol.prepare), opens a `RunSession` (a new record, or the
record to resume) and executes the orders that are not complete: here, one after the other, or in `--jobs`
worker processes (clbench.protocol.parallel). The session is the one place that persists progress: the record
after every step (clbench.records.writer, atomically), the checkpoint removed when an order is complete, the
error beside the completed steps when a step fails, and a clean stop on SIGINT/SIGTERM
(clbench.protocol.signals). Each order itself runs in clbench.protocol.order, by the run's protocol
(clbench.protocol.base).
"""
from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

from clbench.core.errors import AlreadyComplete, ClbenchError, Interrupted, OutputError, UsageError
from clbench.core.speed import threads_per_job
from clbench.data.types import storage_facts
from clbench.protocol import config as cfg
from clbench.protocol.checkpoint import (
    OrderState,
    acquire_lock,
    config_differences,
    release_lock,
    remove_checkpoint,
    resume_states,
)
from clbench.protocol.failures import saving
from clbench.protocol.hooks import Reporter
from clbench.protocol.kinds import RecordKind, file_safe
from clbench.protocol.order import execute_order
from clbench.protocol.prepare import Prepared, bytes_needed, prepare, resolved_config, torch_threads
from clbench.protocol.signals import StopRequested, StopSignals
from clbench.records.record import RecordError, environment, load_record, new_run_id
from clbench.records.snapshots import check_writable
from clbench.records.summary import summarise
from clbench.records.writer import RecordWriter, new_record, now

# What callers use (Reporter is defined in clbench.protocol.hooks; the CLI passes its own).
__all__ = ["Reporter", "RunSession", "recorded_run_config", "resume", "run"]


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
        session = RunSession.reopen(p, Path(resume), reporter)
    else:
        session = RunSession.create(p, reporter)
    return session.execute()


def recorded_run_config(record_path: str | Path) -> dict[str, Any]:
    """The options a record was started with (for `clbench resume`); a RecordError when it has none."""
    path = Path(record_path)
    record = load_record(path)
    if record.get("kind") == "static":
        raise RecordError(f"{path} is a static (clbench condense) record; continue it with `clbench resume {path}` "
                          f"(clbench.protocol.static.resume)")
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
        cfg.check_types(values, f"{path} is damaged: its run options")
    except UsageError as exc:
        raise RecordError(str(exc)) from None
    try:
        config = cfg.RunConfig(**values)
    except TypeError as exc:
        raise RecordError(f"{path} is damaged: its run options cannot be read ({exc})") from None
    return run(config, reporter, resume=path)


# -- one run's state and everything that writes it ----------------------------------------------------------
class RunSession:
    """The record being written, the orders' states, and the stop flag: the one place that persists progress."""

    def __init__(self, p: Prepared, path: Path, record: dict[str, Any], states: dict[int, OrderState],
                 reporter: Reporter):
        from clbench.data.streams import class_order

        self.p, self.path, self.record, self.states, self.reporter = p, path, record, states, reporter
        self.jobs = p.config.jobs
        self.threads = threads_per_job(self.jobs)
        self.entries: dict[int, dict[str, Any]] = {}
        for order, state in states.items():
            if state.complete_entry is not None:
                self.entries[order] = state.complete_entry
            elif state.steps:
                self.entries[order] = {"order": order, "class_order": class_order(order, p.dataset.num_classes),
                                       "complete": False, "steps": list(state.steps)}
        self.signals = StopSignals(reporter.stop_requested)
        self.writer = RecordWriter(path, resume_hint=f"clbench resume {path}")

    @classmethod
    def create(cls, p: Prepared, reporter: Reporter) -> RunSession:
        out = Path(p.config.out)
        check_writable(out, bytes_needed(p))
        # named after what made the memory: the condenser, or the protocol where none does (joint)
        run_id = new_run_id(p.config.condenser if p.protocol.uses_condenser else p.protocol.name, p.config.dataset)
        record = new_record("continual", run_id, resolved_config(p), str(p.device),
                            run_config=dataclasses.asdict(p.config), orders=[], summary={})
        session = cls(p, out / f"{run_id}.json", record, {o: OrderState(o) for o in record["config"]["orders"]},
                      reporter)
        record["environment"].update(jobs=session.jobs, threads_per_order=session.threads,
                                     real_data=storage_facts(p.dataset, p.device))
        return session

    @classmethod
    def reopen(cls, p: Prepared, path: Path, reporter: Reporter) -> RunSession:
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
        check_writable(path.parent, bytes_needed(p))
        session = cls(p, path, record, states, reporter)
        recorded_threads = (record.get("environment") or {}).get("threads_per_order")
        if isinstance(recorded_threads, int) and recorded_threads > 0:
            session.threads = recorded_threads  # CPU numbers depend on it: keep the run's, whatever the machine
        record.pop("error", None)
        record.setdefault("resumes", []).append({
            "time": now(), "steps_done": session.steps_done(),
            "jobs": session.jobs, "threads_per_order": session.threads, "host": environment(str(p.device))["host"],
            "real_data": storage_facts(p.dataset, p.device),
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
        self.writer.write(self.record)

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
        # rebuilt with the longer message only where the class takes just a message; one with its own __init__
        # (Interrupted, AlreadyComplete take paths and counts) cannot be, and is raised as it is
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
        saving(lambda: acquire_lock(self.path), self.path)
        try:
            self.write()  # a run that dies before its first step still leaves a record to resume
            workers = min(self.jobs, len(todo))
            with self.signals:
                try:
                    if workers > 1:
                        from clbench.protocol.parallel import ParallelOrders

                        ParallelOrders(self, todo, workers).run()  # a RunSession is what it drives
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
        data = self.p.dataset.resident(self.p.device)
        with torch_threads(self.threads):
            for order in todo:
                self.signals.check()
                entry = execute_order(self.p, self.states[order], data, self.path, self.record["run_id"],
                                      self.reporter, self.signals.check, self.step_done)
                self.order_done(entry)


# -- the continual kind, as resume and sweeps see it (clbench.protocol.kinds) --------------------------------
class Continual(RecordKind):
    name = "continual"
    config_type = cfg.RunConfig
    unit, units_key, count_key, first_key = "order", "orders", "orders", "first_order"
    default_count = 5  # the paper's five class orders

    def run(self, config: cfg.RunConfig, reporter: Reporter | None = None, *,
            resume: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
        return run(config, reporter, resume=resume)

    def resume(self, path: str | Path, reporter: Reporter | None = None, **options: Any) -> tuple[Path, dict[str, Any]]:
        return resume(path, reporter, **options)

    def check(self, values: dict[str, Any], source: str) -> None:
        from clbench.condensers import new_condenser
        from clbench.data.datasets import dataset_spec
        from clbench.data.streams import split_classes
        from clbench.nets.networks import NETWORKS
        from clbench.protocol.resolve import check_condenser_data, condenser_and_options, train_recipe

        cfg.check_types(values, source)
        config = cfg.RunConfig(**values)
        config.validate()
        for profile in ["paper", "quick"] if config.profile == "auto" else [config.profile]:
            condenser = new_condenser(*condenser_and_options(config.condenser, config.opt, profile))
            check_condenser_data(condenser, dataset_spec(config.dataset), config.condenser)
            train_recipe(config.train, profile)
        NETWORKS.check(config.network, where="network")
        split_classes(list(range(dataset_spec(config.dataset).num_classes)), config.steps)

    def label(self, config: dict[str, Any]) -> str:
        return f"{config['condenser']} {config['dataset']} {config['memory']} {config['steps']} steps"

    def work(self, record: dict[str, Any]) -> int:
        return sum(len(o.get("steps", [])) for o in record.get("orders", []))

    def work_per_unit(self, config: dict[str, Any]) -> int:
        return int(config.get("steps", 0))

    def summarise(self, entries: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
        return summarise(entries)

    def record_name(self, config: dict[str, Any], key: str) -> str:
        return (f"{config['dataset']}-{file_safe(config['condenser'])}-{config['memory']}-{config['steps']}steps-"
                f"{key[:8]}")


CONTINUAL = Continual()
