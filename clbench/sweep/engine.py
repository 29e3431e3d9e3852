"""What every engine that runs a sweep's jobs shares: the `Launcher` interface, the settings each is made with
(`LaunchSettings`: folder, retries, parallelism), and the bookkeeping of one finished attempt.

A launcher has one method, `run(jobs, board, execute)`: hand every job to the engine, follow it until it is
done or has failed `retries + 1` times, and keep the board up to date. The engine schedules; clbench only
submits, watches and resubmits. The engines themselves are `local_pool`, `ray_tasks` and `slurm_array`;
`launchers` names them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

from clbench.sweep.jobs import JobBoard, execute_job, read_status
from clbench.sweep.spec import Job

Execute = Callable[[Job], Any]


@dataclass(frozen=True)
class LaunchSettings:
    """The settings every launcher is made with: the spec's [sweep] table with the command line's on top."""

    folder: Path  # the sweep's folder
    retries: int
    max_parallel: int | None
    command_line_parallel: int | None = None  # --max-parallel itself (it beats an engine's own setting)
    detach: bool = False


class Launcher:
    """An engine. `Options` is the dataclass of its table in the spec ([local], [ray], [slurm]): its fields are
    the keys the table may hold; `from_options` makes the launcher from it and the common settings."""

    name = "launcher"
    retries = 0
    Options: ClassVar[type | None] = None
    detaches: ClassVar[bool] = False  # whether the driver may exit while the jobs run (--detach)
    notes: ClassVar[tuple[str, ...]] = ()  # lines on what the launcher decided for the user (the CLI shows them)

    @classmethod
    def from_options(cls, options: Any, settings: LaunchSettings) -> Launcher:
        raise NotImplementedError

    def run(self, jobs: list[Job], board: JobBoard, execute: Execute = execute_job) -> None:
        raise NotImplementedError

    def _finish(self, board: JobBoard, job: Job, attempt: int, error: str | None, log: str | None,
                requeue: Callable[[Job], None], retryable: bool = True) -> None:
        """One attempt is over: done, or failed and resubmitted while retries remain, or failed for good."""
        if error is None:
            status = read_status(job.folder)
            gpu = status.get("cuda_visible_devices")
            board.set(job.id, "done", detail=f"{status.get('host', '')}" + (f" GPU {gpu}" if gpu else ""),
                      started=status.get("started"), ended=status.get("ended"))
        elif retryable and attempt <= self.retries:
            board.set(job.id, "pending", detail=f"attempt {attempt} failed ({error}); retrying")
            requeue(job)
        else:
            board.set(job.id, "failed", error=error, log=log, detail=error)


def first_line(exc: BaseException) -> str:
    """The last non-empty line of an engine's error (where Ray and submitit put the exception itself)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__
