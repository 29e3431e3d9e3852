"""`clbench run --log csv|tensorboard`: a run's progress as it happens, in files beside its record.

Each order writes its own folder, `<run folder>/logs/order<k>/`, from the process that runs it (so `--jobs`
workers never share a file):

- every step's test accuracy (per network, with the step's mean, memory size and timings);
- every loss the condenser reads back (`task.progress(done, total, info)` comes every iteration, but DM and DDM
  read their losses from the device every `report_every` iterations, DSA every 10, and repeat the last reading
  in between: a report is logged when its numbers are new): each number in `info` at that iteration;
- every training epoch's mean loss, per network (retrain) or of the one network (replay, new data plus memory).

`csv` writes `steps.csv`, `condense.csv` and `train.csv` (one row per value, flushed as written). `tensorboard`
writes one event file per order folder (torch's SummaryWriter, as Avalanche's TensorboardLogger does) with the
scalars `eval/accuracy` and `eval/accuracy/net<k>` (x: step), `condense/<name>` (x: step x iterations +
iteration) and `train/loss/net<k>` (x: step x epochs + epoch). Logging is not part of what a run computes: the
record's configuration leaves it out, and a resumed run appends. CSV rows of steps after the last saved one (a
step cut short by the stop) are dropped when the run resumes; TensorBoard keeps such points (it cannot remove
them), so a redone step's curve may show twice.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from clbench.core.errors import UsageError
from clbench.core.registry import Registry
from clbench.records.record import run_folder

COLUMNS = {
    "steps": ["order", "step", "network", "accuracy", "accuracy_mean", "memory_size", "condense_seconds",
              "train_seconds"],
    "condense": ["order", "step", "iteration", "iterations", "name", "value"],
    "train": ["order", "step", "network", "epoch", "epochs", "loss"],
}


def log_folder(record_path: Path, order: int) -> Path:
    return run_folder(record_path) / "logs" / f"order{order}"


class CsvLog:
    """steps.csv, condense.csv, train.csv in the order's folder, appended row by row."""

    def __init__(self, folder: Path, order: int, steps_done: int):
        self.order = order
        folder.mkdir(parents=True, exist_ok=True)
        self.files, self.writers = {}, {}
        for name, columns in COLUMNS.items():
            path = folder / f"{name}.csv"
            kept = _rows_before(path, steps_done)
            handle = path.open("w", newline="")
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows(kept)
            handle.flush()
            self.files[name], self.writers[name] = handle, writer

    @staticmethod
    def check() -> None:
        """Nothing to install."""

    def _row(self, name: str, *values: Any) -> None:
        self.writers[name].writerow([self.order, *values])
        self.files[name].flush()

    def step(self, entry: dict[str, Any]) -> None:
        for k, accuracy in enumerate(entry["accuracies"]):
            self._row("steps", entry["step"], k, accuracy, entry["accuracy_mean"], entry["memory_size"],
                      entry["condense_seconds"], entry["train_seconds"])

    def condense(self, step: int, done: int, total: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self._row("condense", step, done, total, name, value)

    def epoch(self, step: int, network: int, epoch: int, epochs: int, loss: float) -> None:
        self._row("train", step, network, epoch, epochs, loss)

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()


def _rows_before(path: Path, steps_done: int) -> list[list[str]]:
    """The rows of an existing file (a resumed run) whose step was saved; a partial last line is dropped."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    return [r for r in rows if len(r) > 2 and r[1].isdigit() and int(r[1]) < steps_done]


class TensorboardLog:
    """One SummaryWriter per order folder (a new event file per process; TensorBoard reads them together)."""

    def __init__(self, folder: Path, order: int, steps_done: int):
        from torch.utils.tensorboard import SummaryWriter

        folder.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(folder), flush_secs=10)

    @staticmethod
    def check() -> None:
        try:
            import tensorboard  # noqa: F401
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError:
            raise UsageError("--log tensorboard needs the tensorboard package: pip install -e '.[tensorboard]' "
                             "(or pip install tensorboard), or use --log csv") from None

    def step(self, entry: dict[str, Any]) -> None:
        self.writer.add_scalar("eval/accuracy", entry["accuracy_mean"], entry["step"])
        for k, accuracy in enumerate(entry["accuracies"]):
            self.writer.add_scalar(f"eval/accuracy/net{k}", accuracy, entry["step"])
        self.writer.flush()

    def condense(self, step: int, done: int, total: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"condense/{name}", value, step * total + done)

    def epoch(self, step: int, network: int, epoch: int, epochs: int, loss: float) -> None:
        self.writer.add_scalar(f"train/loss/net{network}", loss, step * epochs + epoch)

    def close(self) -> None:
        self.writer.close()


LOGGERS: Registry[type] = Registry("logger", paths=False)
LOGGERS.add("csv", CsvLog)
LOGGERS.add("tensorboard", TensorboardLog)


def parse_log(value: str) -> list[str]:
    """`--log csv`, `--log tensorboard` or both (`csv,tensorboard`); "" logs nothing. Unknown names and a
    logger whose package is missing are UsageErrors."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    for name in names:
        LOGGERS.get(name, where="--log").check()
    return list(dict.fromkeys(names))


class OrderLog:
    """Every logger of one order; `started(step)` says which step the reports that follow belong to."""

    def __init__(self, names: list[str], record_path: Path, order: int, steps_done: int):
        folder = log_folder(record_path, order)
        self.logs = [LOGGERS.get(n)(folder, order, steps_done) for n in names]
        self.step = steps_done
        self.last_read: tuple | None = None

    def started(self, step: int) -> None:
        self.step, self.last_read = step, None

    def step_done(self, entry: dict[str, Any]) -> None:
        for log in self.logs:
            log.step(entry)

    def condense(self, done: int, total: int, info: dict) -> None:
        """Logged when the values are new: condensers report every iteration but read their losses back from
        the device every `report_every` iterations, repeating the last reading in between."""
        values = {k: float(v) for k, v in info.items() if _is_number(v)}
        read = tuple(sorted((k, repr(v)) for k, v in values.items()))
        if read == self.last_read or all(math.isnan(v) for v in values.values()):
            return
        self.last_read = read
        for log in self.logs:
            log.condense(self.step, done, total, values)

    def epoch(self, network: int, epoch: int, epochs: int, loss: float) -> None:
        for log in self.logs:
            log.epoch(self.step, network, epoch, epochs, loss)

    def close(self) -> None:
        for log in self.logs:
            log.close()


def _is_number(value: Any) -> bool:
    try:
        return isinstance(float(value), float) and not isinstance(value, (str, bool))
    except (TypeError, ValueError):
        return False


__all__ = ["LOGGERS", "OrderLog", "log_folder", "parse_log"]
