"""Where each job of a sweep stands, read from the folder alone (`clbench sweep --status`): no engine, no driver,
so it works on a login node, on a copy of the folder, and after the cluster has forgotten the jobs.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clbench.core.errors import UsageError
from clbench.protocol.kinds import get_kind
from clbench.report.table import Column, Table
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
    history: list[dict[str, Any]]  # every attempt's status, oldest first (the `--job` view and the JSON)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON values (`clbench sweep --status FOLDER --format json`)."""
        return {"job": self.job.id, "config": self.job.config, "order": self.job.order,
                "folder": str(self.job.folder), "state": self.state, "host": self.host, "node": self.node,
                "engine_id": self.engine_id, "attempts": self.attempts, "steps_done": self.steps_done,
                "steps_total": self.steps_total, "resumed": self.resumed, "error": self.error,
                "history": self.history}


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
    steps_done, resumed, complete = _progress(job)
    state = "done" if complete else status.get("state", "not started")
    state = OLD_STATES.get(state, state) if isinstance(state, str) else state
    if state == "running" and _process_gone(status):
        state = "lost"
    return JobReport(job, state, str(last.get("host", "")), str(last.get("node", "")), len(started), steps_done,
                     job.experiment.work_per_unit(job.config), resumed, errors[-1] if errors else "",
                     str(last.get("engine_id", "")), [{k: v for k, v in a.items() if k != "history"} for a in attempts])


def find_job(reports: list[JobReport], wanted: str) -> JobReport:
    """The report of the job whose id is `wanted` or starts with it (the tables show the first 8 characters)."""
    found = [r for r in reports if r.job.id.startswith(wanted.strip().lower())] if wanted.strip() else []
    if len(found) != 1:
        what = "no job" if not found else f"{len(found)} jobs"
        raise UsageError(f"--job {wanted}: {what} of this sweep has that id; give more of it "
                         f"(`clbench sweep --status FOLDER` lists the ids)")
    return found[0]


STATE_STYLES = {"pending": "dim", "running": "cyan", "done": "green", "failed": "bold red", "lost": "yellow"}


def shown_error(error: str, folder: Path) -> str:
    """An error as a table shows it: its first line, paths inside the sweep folder relative to it."""
    first = error.strip().splitlines()[0] if error.strip() else ""
    return first.replace(str(Path(folder).resolve()) + os.sep, "").replace(str(folder) + os.sep, "")


def status_table(reports: list[JobReport], folder: str | Path) -> Table:
    """One line per job: state, attempts, progress, host and the last error's first line; `data` holds the
    reports whole (the JSON format)."""
    counts: dict[str, int] = {}
    for report in reports:
        counts[report.state] = counts.get(report.state, 0) + 1
    kind = reports[0].job.experiment if reports else get_kind("continual")  # a static sweep counts sets
    columns = [Column("job", key=True), Column("run", wrap=True), Column(kind.unit, numeric=True), Column("state"),
               Column("try", numeric=True), Column(kind.work_name, wrap=True), Column("host", drop=2),
               Column("node", drop=1), Column("last error", cut=True, below=True)]
    cells = []
    for r in reports:
        steps = f"{r.steps_done}/{r.steps_total}" + (f" ({r.resumed} resumed)" if r.resumed else "")
        cells.append([r.job.id[:8], r.job.run_label, str(r.job.order),
                      r.state, str(r.attempts), steps, r.host or "-",
                      (r.node[:12] + (f" {r.engine_id}" if r.engine_id else "")).strip() or "-",
                      shown_error(r.error, Path(folder)) or "-"])
    title = f"{len(reports)} job(s) in {folder}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    data = [r.to_dict() for r in reports]
    return Table(title, columns, cells, data, list(data[0]) if data else [],
                 "errors: first line; the whole job: clbench sweep --status FOLDER --job ID",
                 styles=[STATE_STYLES.get(r.state, "") for r in reports])


def _progress(job: Job) -> tuple[int, int, bool]:
    """(steps done, resumes, complete) of the job's furthest record (for a static job: its set)."""
    best: tuple[int, int, bool] = (0, 0, False)
    for _, record in job_records(job.folder):
        steps = job.experiment.work(record)
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
