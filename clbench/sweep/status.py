"""Where each job of a sweep stands, read from the folder alone (`clbench sweep --status`): no engine, no driver,
so it works on a login node, on a copy of the folder, and after the cluster has forgotten the jobs.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clbench.sweep.jobs import job_records, read_plan, read_status
from clbench.sweep.spec import Job

OLD_STATES = {"queued": "pending"}  # what status files written before clbench said "pending" hold


@dataclass
class JobReport:
    job: Job
    state: str  # not started, pending, running, done, failed, or lost (running, but its process is gone)
    host: str
    node: str  # the engine's node (Ray node id, Slurm node name) where it differs from the host
    attempts: int  # attempts that started on a worker
    steps_done: int  # completed steps in the job's record (what a retry resumes from)
    steps_total: int
    resumed: int  # times a retry continued the record instead of starting again
    error: str  # the latest error of any attempt (a done job shows what its retries got past)
    engine_id: str


def sweep_status(folder: str | Path) -> list[JobReport]:
    """One report per job of the sweep planned in `folder`, in plan order."""
    plan = read_plan(folder)
    return [job_report(Job.from_dict(data)) for data in plan["jobs"]]


def job_report(job: Job) -> JobReport:
    status = read_status(job.folder)
    attempts = [*status.get("history", []), status] if status else []
    started = [a for a in attempts if a.get("started")]
    last = started[-1] if started else {}
    errors = [a["error"] for a in attempts if a.get("error")]
    steps_done, resumed, complete = _progress(job.folder)
    state = "done" if complete else status.get("state", "not started")
    state = OLD_STATES.get(state, state) if isinstance(state, str) else state
    if state == "running" and _process_gone(status):
        state = "lost"
    return JobReport(job, state, str(last.get("host", "")), str(last.get("node", "")), len(started), steps_done,
                     int(job.config.get("steps", 0)), resumed, errors[-1] if errors else "",
                     str(last.get("engine_id", "")))


def _progress(folder: Path) -> tuple[int, int, bool]:
    """(steps done, resumes, complete) of the job's furthest record."""
    best: tuple[int, int, bool] = (0, 0, False)
    for _, record in job_records(folder):
        steps = sum(len(o.get("steps", [])) for o in record.get("orders", []))
        found = (steps, len(record.get("resumes", [])), bool(record.get("complete")))
        best = max(best, found, key=lambda f: (f[2], f[0]))
    return best


def _process_gone(status: dict[str, Any]) -> bool:
    """A job marked running whose process on this machine no longer exists (killed without a word)."""
    pid, host = status.get("pid"), status.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
