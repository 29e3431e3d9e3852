"""One class order of a continual run, as the run's own process or a `--jobs` worker executes it.

`execute_order` is the same for every protocol: it draws the order's classes and stream, joins the reporter,
the live logs and the stop flag into the order's `Hooks`, hands the protocol an `OrderRun` (with the one
`StepRecorder` its steps go to), saves the final memory beside the record and returns the order's entry.
Every randomness is derived from (seed, order, step), so an order gives the same numbers in any process and
after any resume.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator

from clbench.core.errors import ClbenchError, NonFiniteError, OutputError
from clbench.memory.checks import OUT_OF_MEMORY
from clbench.protocol.base import OrderRun
from clbench.protocol.checkpoint import OrderState
from clbench.protocol.failures import out_of_memory, saving
from clbench.protocol.hooks import Hooks, Reporter, StepRecorder
from clbench.protocol.prepare import Prepared
from clbench.records.schema import OrderEntry, StepEntry
from clbench.records.snapshots import save_memory


def execute_order(p: Prepared, state: OrderState, data, record_path: Path, run_id: str, reporter: Reporter,
                  check_stop: Callable[[], None], on_step: Callable[[int, StepEntry], None]) -> OrderEntry:
    """Run the steps of one order after those `state` holds; a checkpoint after each. Returns the order's entry."""
    from clbench.data.streams import class_order, split_classes
    from clbench.nets.networks import build_network
    from clbench.protocol.logs import OrderLog, parse_log

    ds, order = p.dataset, state.order
    classes = class_order(order, ds.num_classes)
    reporter.order_started(order, classes)
    groups = split_classes(classes, p.config.steps)

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

    def step_started(step: int, new: list[int]) -> None:
        if log is not None:
            log.started(step)
        reporter.step_started(order, step, new)

    def step_done(entry: StepEntry) -> None:
        if log is not None:
            log.step_done(entry)
        on_step(order, entry)

    hooks = Hooks(condense_progress, train_progress, log.epoch if log is not None else None, step_started,
                  step_done, check_stop)
    steps: list[StepEntry] = list(state.steps)
    recorder = StepRecorder(record_path, run_id, order, steps, hooks)
    run = OrderRun(p, state, classes, groups, data, make_network, recorder, hooks, record_path)
    try:
        memory = p.protocol.run_order(run)
    finally:
        if log is not None:
            log.close()
    memory_file = None if memory is None else saving(lambda: save_memory(record_path, order, memory, ds),
                                                     record_path)
    return {"order": order, "class_order": classes, "complete": True, "steps": steps, "memory_file": memory_file}


@contextlib.contextmanager
def step_errors(run: OrderRun, step: int, condenser: str) -> Iterator[None]:
    """A failing step's error, naming the order, the step and its classes (and the condenser for NaNs)."""
    where = f"order {run.order}, step {step} (classes {run.groups[step]})"
    try:
        yield
    except NonFiniteError as exc:
        raise NonFiniteError(f"{where}: non-finite values with condenser {condenser!r}: {exc}") from exc
    except OutputError:
        raise
    except ClbenchError as exc:
        raise type(exc)(f"{where}: {exc}") from exc
    except OUT_OF_MEMORY as exc:
        raise out_of_memory(where, run.p.device, exc, "lower the memory budget, --nets or --jobs, then resume") \
            from exc
