"""Driving a whole sweep: plan it, skip what is complete, hand the rest to an engine (clbench.sweep.launchers),
follow the jobs on a board, gather the records; `--attach` follows a sweep an earlier driver submitted.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from clbench.core.errors import ClbenchError, UsageError
from clbench.sweep.jobs import JobBoard, JobState, complete_record, execute_job, gather, read_plan, write_plan
from clbench.sweep.spec import Job, SweepSpec, check_runs, expand


# -- the whole sweep -------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    folder: Path
    jobs: list[Job]
    board: JobBoard
    records: list[Path]
    launcher: str

    @property
    def failed(self) -> list[tuple[Job, JobState]]:
        return self.board.failures()


class SweepFailed(ClbenchError):
    """Some jobs failed after their retries; the others finished and were gathered."""


def plan(spec: SweepSpec, launcher: str, write: bool = True) -> list[Job]:
    """Check every run configuration and (with `write`) lay out the folder; nothing runs yet."""
    check_runs(spec)
    jobs = expand(spec)
    if write:
        spec.folder.mkdir(parents=True, exist_ok=True)
        write_plan(spec, jobs, launcher)
    return jobs


def run_sweep(spec: SweepSpec, launcher: Any, listener: Callable[[JobBoard], None] | None = None,
              execute: Callable[[Job], Any] | None = None) -> SweepResult:
    """Plan, skip the jobs already complete, hand the rest to `launcher`, gather. Holding the folder's lock
    means two drivers never run the same jobs twice at once."""
    jobs = plan(spec, launcher.name, write=False)
    board = JobBoard(jobs, listener)
    with driver_lock(spec.folder):
        write_plan(spec, jobs, launcher.name)
        todo = _pending(jobs, board)
        if todo:
            launcher.run(todo, board, execute or execute_job)
        records = gather(spec.folder, jobs)
    return SweepResult(spec.folder, jobs, board, records, launcher.name)


def _pending(jobs: list[Job], board: JobBoard) -> list[Job]:
    """The jobs still to run; those with a complete record are marked done (skipped) on the board."""
    todo = []
    for job in jobs:
        if complete_record(job.folder) is not None:
            board.set(job.id, "done", skipped=True, detail="already complete")
        else:
            todo.append(job)
    return todo


def attached_spec(folder: str | Path) -> tuple[SweepSpec, list[Job], str]:
    """The spec, jobs and launcher of a sweep already planned in `folder` (for `--attach`)."""
    plan_data = read_plan(folder)
    return (SweepSpec.from_dict(plan_data["spec"]), [Job.from_dict(j) for j in plan_data["jobs"]],
            plan_data.get("launcher", "local"))


def attach_sweep(folder: str | Path, launcher: Any, listener: Callable[[JobBoard], None] | None = None,
                 execute: Callable[[Job], Any] | None = None) -> SweepResult:
    """Follow a sweep whose jobs an earlier driver submitted (Slurm), resubmit what failed, then gather."""
    spec, jobs, _ = attached_spec(folder)
    board = JobBoard(jobs, listener)
    with driver_lock(spec.folder):
        todo = _pending(jobs, board)
        if todo:
            launcher.attach(todo, board, execute or execute_job)
        records = gather(spec.folder, jobs)
    return SweepResult(spec.folder, jobs, board, records, launcher.name)


class driver_lock:
    """An exclusive lock on <folder>/.driver.lock (flock): a second driver of the same sweep fails at once."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / ".driver.lock"
        self.handle = None

    def __enter__(self) -> "driver_lock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "another process"
            self.handle.close()
            raise UsageError(f"{self.path.parent}: another clbench sweep drives this folder ({holder}); "
                             f"wait for it or stop it first") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        self.handle.flush()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.handle is not None:
            self.handle.close()
