"""`--jobs N`: a run's orders side by side in spawned worker processes (one per CUDA device when there are
several), while the parent alone writes the record from the workers' messages, so that it is the record of a
sequential run.

Each worker runs `clbench.protocol.order.execute_order` for the orders it takes; `clbench run` uses this module
only when a run has more than one job. What the parent does with the workers' messages (record, checkpoint,
report) is the session's: `Session` below says what this module needs of it.
"""
from __future__ import annotations

import dataclasses
import os
import queue
import sys
import traceback
from pathlib import Path
from typing import Any, Protocol

import torch

from clbench.core.errors import ClbenchError
from clbench.protocol import config as cfg
from clbench.protocol.checkpoint import OrderState, load_checkpoint
from clbench.protocol.hooks import Reporter
from clbench.protocol.order import execute_order
from clbench.protocol.prepare import Prepared, prepare
from clbench.protocol.signals import StopRequested, StopSignals, signals_ignored


class Session(Protocol):
    """What the parent's run session (clbench.protocol.continual.RunSession) offers the workers' messages."""

    p: Prepared
    path: Path
    record: dict[str, Any]
    states: dict[int, OrderState]
    threads: int
    reporter: Reporter
    signals: StopSignals

    def step_done(self, order: int, step: dict[str, Any]) -> None: ...
    def order_done(self, entry: dict[str, Any]) -> None: ...


class ParallelOrders:
    """`jobs` spawned workers take orders from a queue; the parent writes the record from their messages."""

    def __init__(self, session: Session, todo: list[int], workers: int):
        import multiprocessing

        self.session, self.todo, self.workers = session, todo, workers
        self.ctx = multiprocessing.get_context("spawn")

    def run(self) -> None:
        s = self.session
        tasks, results, stop_event = self.ctx.Queue(), self.ctx.Queue(), self.ctx.Event()
        for order in self.todo:
            tasks.put(order)
        for _ in range(self.workers):
            tasks.put(None)
        devices = _worker_devices(s.p, self.workers)
        procs = [
            self.ctx.Process(target=_worker_main, name=f"clbench-worker-{w}", daemon=True, args=(
                w, s.p.config, devices[w], s.threads, str(s.path), s.record["run_id"], tasks, results, stop_event,
                os.getpid()))
            for w in range(self.workers)
        ]
        # Workers start with SIGINT/SIGTERM ignored (inherited) until their own handlers are in place.
        with signals_ignored():
            for proc in procs:
                proc.start()
        s.signals.children = procs
        try:
            failure = self._gather(procs, results, stop_event)
        finally:
            stop_event.set()  # when the parent itself failed (e.g. could not write the record), workers stop too
            for proc in procs:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()
            s.signals.children = []
        if failure is not None:
            raise failure
        if s.signals.requested:
            raise StopRequested()
        unfinished = [o for o in self.todo if s.states[o].complete_entry is None]
        if unfinished:  # a worker ended without a word: never mark such a record complete
            raise ClbenchError(f"orders {unfinished} did not finish; resume to run them")

    def _gather(self, procs: list, results: Any, stop_event: Any) -> ClbenchError | None:
        s = self.session
        running: dict[int, int | None] = {w: None for w in range(len(procs))}  # worker -> its order
        failure: ClbenchError | None = None
        while running:
            if s.signals.requested and not stop_event.is_set():
                stop_event.set()
            try:
                message = results.get(timeout=0.2)
            except queue.Empty:
                for w in list(running):
                    if not procs[w].is_alive():
                        order = running.pop(w)
                        if failure is None and not s.signals.requested:
                            what = "before taking an order" if order is None else f"while running order {order}"
                            failure = ClbenchError(
                                f"a worker process died {what} (exit code {procs[w].exitcode}: killed, out of "
                                f"memory, or see its message above); resume to continue")
                            stop_event.set()
                continue
            kind, w, *rest = message
            if kind == "order_started":
                running[w] = rest[0]
                s.reporter.order_started(*rest)
            elif kind == "step_started":
                s.reporter.step_started(*rest)
            elif kind == "step":
                s.step_done(*rest)
            elif kind == "order_done":
                s.order_done(rest[0])
            elif kind == "stopped":
                s.signals.request(rest[0])
            elif kind in ("failed", "crashed") and failure is None:
                failure = rest[0] if kind == "failed" else ClbenchError(
                    f"the worker process running order {running.get(w)} failed:\n{rest[0]}")
                stop_event.set()
            elif kind == "exit":
                running.pop(w, None)
        return failure


def _worker_main(worker: int, config: cfg.RunConfig, device: str, threads: int, record_path: str, run_id: str,
                 tasks: Any, results: Any, stop_event: Any, parent: int) -> None:
    """One spawned worker: run orders from `tasks` until a None, reporting to `results`."""
    signals = StopSignals(event=stop_event, parent=parent)
    with signals:
        try:
            torch.set_num_threads(threads)
            if device.startswith("cuda"):  # this process's current device: where its CUDA context and
                torch.cuda.set_device(torch.device(device).index or 0)  # library handles go, not GPU 0 for all
            p = prepare(dataclasses.replace(config, device=device))
            data = p.dataset.resident(p.device)
            reporter = _QueueReporter(worker, results)
            while (order := tasks.get()) is not None:
                signals.check()
                state = load_checkpoint(Path(record_path), run_id, order) or OrderState(order)
                entry = execute_order(p, state, data, Path(record_path), run_id, reporter, signals.check,
                                      lambda o, step: results.put(("step", worker, o, step)))
                results.put(("order_done", worker, entry))
        except StopRequested:
            results.put(("stopped", worker, signals.signal_name))
        except ClbenchError as exc:
            results.put(("failed", worker, exc))
        except BaseException:  # a bug: hand the traceback to the parent, which reports it
            results.put(("crashed", worker, traceback.format_exc()))
        finally:
            results.put(("exit", worker))
            # Every file is written and closed; skip the interpreter's slow teardown (seconds with torch loaded)
            # once the messages have left.
            results.close()
            results.join_thread()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)


class _QueueReporter(Reporter):
    def __init__(self, worker: int, results: Any):
        self.worker, self.results = worker, results

    def order_started(self, order: int, class_order: list[int]) -> None:
        self.results.put(("order_started", self.worker, order, class_order))

    def step_started(self, order: int, step: int, classes: list[int]) -> None:
        self.results.put(("step_started", self.worker, order, step, classes))


def _worker_devices(p: Prepared, workers: int) -> list[str]:
    """One CUDA device per worker (round robin) when the run asked for CUDA without an index; else the run's."""
    if p.device.type == "cuda" and p.device.index is None and torch.cuda.device_count() > 1:
        return [f"cuda:{w % torch.cuda.device_count()}" for w in range(workers)]
    return [str(p.device)] * workers
