"""The record of a run being made, for any kind of experiment: the one place that persists progress.

`Session` is what every kind shares (clbench.protocol.kinds: continual runs, static tables): a new record or
the record to resume, checked against the configuration; the record's lock, so that no two processes write
it; the record written atomically after every unit of work (clbench.records.writer); a failure recorded
beside the completed work, so the record stays resumable; a clean stop at the next safe point after
SIGINT/SIGTERM (clbench.protocol.signals), raised as Interrupted. A kind's session (the continual
`RunSession`, the static `StaticSession`) adds only what it knows: the record it starts, what its resume
checks and keeps, and how its units run (`run_units`).
"""
from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

from clbench.core.errors import AlreadyComplete, ClbenchError, Interrupted, OutputError, UsageError
from clbench.data.types import storage_facts
from clbench.protocol.checkpoint import acquire_lock, config_differences, release_lock
from clbench.protocol.failures import saving
from clbench.protocol.signals import StopRequested, StopSignals
from clbench.records.record import RecordError, load_record, new_run_id
from clbench.records.snapshots import check_writable
from clbench.records.writer import RecordWriter, new_record, now


class Session:
    """A record being written. Subclasses set `kind` and `work_name` and implement the methods below `-- a kind's`."""

    kind = ""
    work_name = ""  # what `done`/`total` count, in messages: "steps", "sets" (as the kind says)

    def __init__(self, p: Any, path: Path, record: dict[str, Any], reporter: Any):
        self.p, self.path, self.record, self.reporter = p, path, record, reporter
        self.signals = StopSignals(getattr(reporter, "stop_requested", None))
        self.writer = RecordWriter(path, resume_hint=f"clbench resume {path}")

    # -- a kind's: the record it starts, what a resume keeps, how its units run --------------------------
    @classmethod
    def resolved_config(cls, p: Any) -> dict[str, Any]:
        """The record's `config`: every value the run uses, defaults included."""
        raise NotImplementedError

    @classmethod
    def start(cls, p: Any) -> tuple[str, dict[str, Any]]:
        """The new record's name (what made it) and its empty units (`orders=[]`, `sets=[]`, a summary)."""
        raise NotImplementedError

    def run_config(self) -> dict[str, Any]:
        """The options the record keeps for `clbench resume`."""
        return dataclasses.asdict(self.p.config)

    def load_units(self, resuming: bool) -> None:
        """Read the units the record holds (and, resuming, what lies beside it: checkpoints), or start none."""

    def resumed(self) -> dict[str, Any]:
        """Facts of this resume, for the record's `resumes` list (called once the session holds the record)."""
        return {}

    def bytes_needed(self) -> int:
        """What the run will write, for the free-space check before any work (0: just that it can write)."""
        return 0

    def done(self) -> int:
        raise NotImplementedError

    def total(self) -> int:
        raise NotImplementedError

    def refresh(self) -> None:
        """Bring the record's units and summary up to date before it is written."""

    def plan(self) -> dict[str, Any]:
        return {}

    def run_units(self) -> None:
        """Run what the record still lacks, writing it after each unit; StopRequested at a safe point."""
        raise NotImplementedError

    def interrupted_jobs(self) -> int:
        return 1

    # -- shared: create or reopen, write, fail, stop, execute ---------------------------------------------
    @classmethod
    def create(cls, p: Any, reporter: Any) -> Session:
        out = Path(p.config.out)
        name, units = cls.start(p)
        run_id = new_run_id(name, p.config.dataset)
        record = new_record(cls.kind, run_id, cls.resolved_config(p), str(p.device), run_config={}, **units)
        session = cls(p, out / f"{run_id}.json", record, reporter)
        session.load_units(resuming=False)
        check_writable(out, session.bytes_needed())
        record["run_config"] = session.run_config()
        record["environment"]["real_data"] = storage_facts(p.dataset, p.device)
        return session

    @classmethod
    def reopen(cls, p: Any, path: Path, reporter: Any) -> Session:
        """The record at `path` to continue: of this kind, not complete, made with this configuration."""
        record = load_record(path)
        kind = record.get("kind", "continual")  # records older than the field are continual
        if kind != cls.kind:
            raise UsageError(f"{path} is a {kind} record, not a {cls.kind} one; continue it with "
                             f"`clbench resume {path}`")
        if record.get("complete"):
            raise AlreadyComplete(path)
        diffs = config_differences(record["config"], cls.resolved_config(p))
        if diffs:
            raise UsageError(
                f"{path} was made with another configuration, so it cannot be resumed with this one; "
                f"differences: {'; '.join(diffs)}. Use `clbench resume {path}` to continue it as it was started")
        session = cls(p, path, record, reporter)
        session.load_units(resuming=True)
        check_writable(path.parent, session.bytes_needed())
        record.pop("error", None)
        record.setdefault("resumes", []).append({"time": now(), **session.resumed()})
        record["run_config"] = session.run_config()
        return session

    def write(self) -> None:
        self.refresh()
        self.writer.write(self.record)

    def fail(self, exc: ClbenchError) -> ClbenchError:
        """Record the error beside the completed work; returns the exception to raise, with where it happened."""
        message = f"{exc} (completed {self.work_name} saved: {self.done()}, in {self.path})"
        # rebuilt with the longer message only where the class takes just a message; one with its own __init__
        # (Interrupted, AlreadyComplete take paths and counts) cannot be, and is raised as it is, as is a failed
        # write (OutputError), whose message already ends with how to continue
        rebuild = type(exc).__init__ is Exception.__init__ and not isinstance(exc, OutputError)
        failure = type(exc)(message) if rebuild else exc
        self.record["error"] = {"type": type(exc).__name__, "message": str(exc)}
        with contextlib.suppress(OutputError):
            self.write()
        return failure

    def interrupted(self) -> Interrupted:
        with contextlib.suppress(OutputError):
            self.write()
        return Interrupted(self.path, self.signals.signal_name or "SIGINT", self.done(), self.total(),
                           self.interrupted_jobs(), unit=self.work_name)

    def execute(self) -> tuple[Path, dict[str, Any]]:
        """Run what the record lacks under its lock; returns the record's path and the record."""
        self.reporter.run_started({"record": str(self.path), **self.record["config"], **self.plan()})
        saving(lambda: acquire_lock(self.path), self.path)
        try:
            self.write()  # a run that dies before its first unit still leaves a record to resume
            with self.signals:
                try:
                    self.run_units()
                except StopRequested:
                    raise self.interrupted() from None
                except ClbenchError as exc:
                    raise self.fail(exc) from exc
            self.record["complete"] = True
            self.write()
        finally:
            release_lock(self.path)
        self.reporter.run_finished(self.record, self.path)
        return self.path, self.record


def recorded_config(path: Path, config_type: type, command: str, **overrides: Any) -> Any:
    """The configuration a record was started with, for `clbench resume` (its folder stays its home, `overrides`
    on top); a RecordError when it has none or it cannot be read, AlreadyComplete when nothing is left."""
    from clbench.protocol.config import check_types

    record = load_record(path)
    if record.get("complete"):
        raise AlreadyComplete(path)
    values = record.get("run_config")
    if not isinstance(values, dict):
        raise RecordError(f"{path} does not hold the options it was run with (written by an older clbench?); "
                          f"resume it with `clbench {command} <the same options> --resume {path}`")
    known = {f.name for f in dataclasses.fields(config_type)}
    values = {**{k: v for k, v in values.items() if k in known}, "out": str(path.parent), **overrides}
    try:
        check_types(values, f"{path} is damaged: its options", config_type)
    except UsageError as exc:  # it names the record and the option already
        raise RecordError(str(exc)) from None
    try:
        return config_type(**values)
    except TypeError as exc:
        raise RecordError(f"{path} is damaged: its options cannot be read ({exc})") from None
