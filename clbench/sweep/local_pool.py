"""The `local` engine: a pool of spawned processes on this machine, one per job, one slot per GPU."""
from __future__ import annotations

import os
import sys
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Any

from clbench.core.options import option
from clbench.sweep.engine import Execute, Launcher, LaunchSettings
from clbench.sweep.jobs import JobBoard, execute_job
from clbench.sweep.spec import Job


@dataclass(frozen=True)
class LocalOptions:
    """The spec's [local] table."""

    gpus: list[Any] | None = option(None, "the GPU ids to run on (default: every visible GPU)")


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as the ids to put in a child's CUDA_VISIBLE_DEVICES."""
    try:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken driver is no GPU, not a crash of the sweep
        count = 0
    listed = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def _local_child(execute: Execute, job: Job, env: dict[str, str], log: str) -> None:
    """A fresh process per job: its GPU and thread count are fixed before torch starts; output to a log."""
    os.environ.update(env)
    handle = open(log, "a", buffering=1)
    os.dup2(handle.fileno(), 1)
    os.dup2(handle.fileno(), 2)
    sys.stdout = sys.stderr = handle
    try:
        execute(job)
    except BaseException:
        traceback.print_exc()
        handle.flush()
        sys.exit(1)
    handle.flush()


class LocalLauncher(Launcher):
    """A pool of spawn processes on this machine: one slot per GPU (CUDA_VISIBLE_DEVICES) when the jobs use
    GPUs, else `max_parallel` CPU slots sharing the cores. One process per job, so that a crash, a leak or a
    CUDA context ends with its job and never breaks the pool."""

    name = "local"
    Options = LocalOptions

    def __init__(self, max_parallel: int | None = None, retries: int = 0, gpus: list[str] | None = None,
                 poll_seconds: float = 0.2):
        self.max_parallel = max_parallel
        self.retries = retries
        self.gpus = gpus
        self.poll_seconds = poll_seconds

    @classmethod
    def from_options(cls, options: LocalOptions, settings: LaunchSettings) -> LocalLauncher:
        gpus = [str(g) for g in options.gpus] if options.gpus is not None else None
        return cls(settings.max_parallel, settings.retries, gpus)

    def slots(self, jobs: list[Job]) -> list[str | None]:
        wants_gpu = any(j.uses_gpu() is not False for j in jobs)
        gpus = (self.gpus if self.gpus is not None else visible_gpus()) if wants_gpu else []
        if gpus:
            return list(gpus[: self.max_parallel or len(gpus)])
        return [None] * (self.max_parallel or 1)

    def run(self, jobs: list[Job], board: JobBoard, execute: Execute = execute_job) -> None:
        import multiprocessing
        from multiprocessing.connection import wait

        ctx = multiprocessing.get_context("spawn")
        free = self.slots(jobs)
        threads = str(max(1, (os.cpu_count() or 1) // len(free)))
        queue: deque[Job] = deque(jobs)
        running: dict[int, tuple[Any, Job, str | None, int]] = {}
        try:
            while queue or running:
                while queue and free:
                    job, slot = queue.popleft(), free.pop(0)
                    attempt = board.submitted(job.id)
                    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads)}
                    if slot is not None:
                        env["CUDA_VISIBLE_DEVICES"] = slot
                    log = str(job.folder / "job.log")
                    process = ctx.Process(target=_local_child, args=(execute, job, env, log),
                                          name=f"clbench-job-{job.id}", daemon=False)
                    process.start()
                    running[process.sentinel] = (process, job, slot, attempt)
                    board.set(job.id, "running", detail="CPU" if slot is None else f"GPU {slot}")
                for sentinel in wait(list(running), timeout=self.poll_seconds):
                    process, job, slot, attempt = running.pop(sentinel)
                    process.join()
                    free.append(slot)
                    error = None
                    if process.exitcode != 0:
                        code = process.exitcode
                        how = f"killed by signal {-code}" if code < 0 else f"ended with exit code {code}"
                        error = board.failed_detail(job.id, f"the job's process {how}")
                    self._finish(board, job, attempt, error, str(job.folder / "job.log"), queue.append)
                board.tick()
        finally:
            for process, *_ in running.values():  # interrupted: no orphan keeps computing
                process.terminate()
                process.join(5)
