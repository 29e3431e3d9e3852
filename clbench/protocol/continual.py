"""`clbench run` and `clbench resume`: the continual protocol over several class orders, and its record.

`run` resolves the configuration (clbench.protocol.prepare), opens a `RunSession` (a new record, or the
record to resume) and executes the orders that are not complete: here, one after the other, or in `--jobs`
worker processes (clbench.protocol.parallel). What every kind of record shares (the lock, atomic writes, the
error beside the completed work, a clean stop on SIGINT/SIGTERM) is clbench.protocol.session's; a RunSession
adds the orders: their states, each finished step written at once, the checkpoint removed when an order is
complete. Each order itself runs in clbench.protocol.order, by the run's protocol (clbench.protocol.base).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from clbench.core.speed import threads_per_job
from clbench.data.types import storage_facts
from clbench.protocol import config as cfg
from clbench.protocol.checkpoint import OrderState, remove_checkpoint, resume_states
from clbench.protocol.hooks import Reporter
from clbench.protocol.kinds import RecordKind, file_safe
from clbench.protocol.order import execute_order
from clbench.protocol.prepare import Prepared, bytes_needed, prepare, resolved_config, torch_threads
from clbench.protocol.session import Session, recorded_config
from clbench.records.record import environment
from clbench.records.summary import summarise

# What callers use (Reporter is defined in clbench.protocol.hooks; the CLI passes its own).
__all__ = ["Reporter", "RunSession", "resume", "run"]


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


def resume(record_path: str | Path, reporter: Reporter | None = None, *,
           jobs: int | None = None) -> tuple[Path, dict[str, Any]]:
    """Continue the run of a record with the options it was started with (its folder stays its home)."""
    path = Path(record_path)
    config = recorded_config(path, cfg.RunConfig, "run", **({} if jobs is None else {"jobs": jobs}))
    return run(config, reporter, resume=path)


# -- one run's state and everything that writes it ----------------------------------------------------------
class RunSession(Session):
    """A continual record being written (clbench.protocol.session): its orders' states, the steps each has done,
    and where its orders run (here, or in `--jobs` worker processes)."""

    kind, work_name = "continual", "steps"

    def __init__(self, p: Prepared, path: Path, record: dict[str, Any], reporter: Reporter):
        super().__init__(p, path, record, reporter)
        self.jobs = p.config.jobs
        self.threads = threads_per_job(self.jobs)
        self.states: dict[int, OrderState] = {}
        self.entries: dict[int, dict[str, Any]] = {}

    # -- what the shared session asks of a kind -----------------------------------------------------------
    @classmethod
    def resolved_config(cls, p: Prepared) -> dict[str, Any]:
        return resolved_config(p)

    @classmethod
    def start(cls, p: Prepared) -> tuple[str, dict[str, Any]]:
        # named after what made the memory: the condenser, or the protocol where none does (joint)
        return (p.config.condenser if p.protocol.uses_condenser else p.protocol.name), {"orders": [], "summary": {}}

    @classmethod
    def create(cls, p: Prepared, reporter: Reporter) -> RunSession:
        session = super().create(p, reporter)
        session.record["environment"].update(jobs=session.jobs, threads_per_order=session.threads)
        return session

    def load_units(self, resuming: bool) -> None:
        from clbench.data.streams import class_order

        orders = self.record["config"]["orders"]
        self.states = resume_states(self.record, self.path) if resuming else {o: OrderState(o) for o in orders}
        for order, state in self.states.items():
            if state.complete_entry is not None:
                self.entries[order] = state.complete_entry
            elif state.steps:
                self.entries[order] = {"order": order, "class_order": class_order(order, self.p.dataset.num_classes),
                                       "complete": False, "steps": list(state.steps)}
        recorded_threads = (self.record.get("environment") or {}).get("threads_per_order")
        if resuming and isinstance(recorded_threads, int) and recorded_threads > 0:
            self.threads = recorded_threads  # CPU numbers depend on it: keep the run's, whatever the machine

    def run_config(self) -> dict[str, Any]:
        return {**(self.record.get("run_config") or dataclasses.asdict(self.p.config)), "jobs": self.p.config.jobs}

    def resumed(self) -> dict[str, Any]:
        return {"steps_done": self.done(), "jobs": self.jobs, "threads_per_order": self.threads,
                "host": environment(str(self.p.device))["host"], "real_data": storage_facts(self.p.dataset,
                                                                                             self.p.device)}

    def bytes_needed(self) -> int:
        return bytes_needed(self.p)

    def done(self) -> int:
        return sum(len(e["steps"]) for e in self.entries.values())

    def total(self) -> int:
        return len(self.record["config"]["orders"]) * self.p.config.steps

    def refresh(self) -> None:
        orders = [self.entries[o] for o in self.record["config"]["orders"] if o in self.entries]
        self.record["orders"] = orders
        self.record["summary"] = summarise(orders)

    def plan(self) -> dict[str, Any]:
        return {"completed_steps": self.done(), "jobs": self.jobs}

    def interrupted_jobs(self) -> int:
        return self.jobs

    def run_units(self) -> None:
        todo = [o for o, s in self.states.items() if s.complete_entry is None]
        workers = min(self.jobs, len(todo))
        if workers > 1:
            from clbench.protocol.parallel import ParallelOrders

            ParallelOrders(self, todo, workers).run()  # a RunSession is what it drives
        elif todo:
            data = self.p.dataset.resident(self.p.device)
            self.record["environment"]["real_data"] = storage_facts(self.p.dataset, self.p.device, data)
            with torch_threads(self.threads):
                for order in todo:
                    self.signals.check()
                    entry = execute_order(self.p, self.states[order], data, self.path, self.record["run_id"],
                                          self.reporter, self.signals.check, self.step_done)
                    self.order_done(entry)

    # -- progress, from this process or the workers --------------------------------------------------------
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


# -- the continual kind, as resume and sweeps see it (clbench.protocol.kinds) --------------------------------
class Continual(RecordKind):
    name = "continual"
    config_type = cfg.RunConfig
    unit, units_key, count_key, first_key = "order", "orders", "orders", "first_order"
    work_name = "steps"
    def default_count(self, spec: dict[str, Any], source: str) -> int:
        return 5  # the paper's five class orders

    def run(self, config: cfg.RunConfig, reporter: Reporter | None = None, *,
            resume: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
        return run(config, reporter, resume=resume)

    def resume(self, path: str | Path, reporter: Reporter | None = None, **options: Any) -> tuple[Path, dict[str, Any]]:
        return resume(path, reporter, **options)

    def check(self, values: dict[str, Any], source: str) -> None:
        from clbench.data.datasets import dataset_spec
        from clbench.data.streams import split_classes
        from clbench.protocol.resolve import check_unloaded

        cfg.check_types(values, source)
        config = cfg.RunConfig(**values)
        config.validate()
        check_unloaded(config)
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
