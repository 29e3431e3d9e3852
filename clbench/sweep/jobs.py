"""A sweep's folder and its jobs: the plan and status files, one job run on a worker, the board of job states,
and the gathering of the jobs' records into one run record per configuration (the folder's layout is in
clbench.sweep.spec's docstring).
"""
from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from clbench.core.errors import UsageError
from clbench.sweep.spec import JOB_FILE, STATES, STATUS_FILE, SWEEP_FILE, Job, SweepSpec


# -- the sweep folder ------------------------------------------------------------------------------------
def write_plan(spec: SweepSpec, jobs: list[Job], launcher: str) -> None:
    """The spec and job list on disk: what a re-attached driver and a curious user read."""
    from clbench.core.atomic import atomic_write_json

    plan_path = spec.folder / SWEEP_FILE
    previous = _read_json(plan_path) or {}
    atomic_write_json(plan_path, {
        "schema": "clbench.sweep", "spec": spec.to_dict(), "launcher": launcher,
        "jobs": [j.to_dict() for j in jobs], "engine_state": previous.get("engine_state", {}),
    })
    for job in jobs:
        if not (job.folder / JOB_FILE).is_file():
            atomic_write_json(job.folder / JOB_FILE, job.to_dict())


def read_plan(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / SWEEP_FILE
    plan = _read_json(path)
    if plan is None or plan.get("schema") != "clbench.sweep":
        raise UsageError(f"{folder}: not a sweep folder (no readable {SWEEP_FILE})")
    return plan


def save_engine_state(folder: Path, state: dict[str, Any]) -> None:
    """Launcher bookkeeping (e.g. Slurm job ids) kept in .sweep.json, so that a driver can re-attach."""
    from clbench.core.atomic import atomic_write_json

    plan = read_plan(folder)
    plan["engine_state"] = state
    atomic_write_json(folder / SWEEP_FILE, plan)


def _read_json(path: Path) -> dict[str, Any] | None:
    """A plan or status file; None where it is missing or unreadable in any way (clbench.core.jsonfile)."""
    from clbench.core.jsonfile import UnreadableJson, read_json_file

    try:
        found = read_json_file(path, 64 << 20)
    except UnreadableJson:
        return None
    return found if isinstance(found, dict) else None


def job_records(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The readable run records in a job's folder (damaged ones left out)."""
    from clbench.records.record import RecordError, load_record

    found = []
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            found.append((path, load_record(path)))
        except RecordError:
            continue
    return found


def complete_record(folder: Path) -> Path | None:
    """The job's finished record, if it has one: the test that makes a re-run skip the job."""
    for path, record in job_records(folder):
        if record.get("complete"):
            return path
    return None


def best_record(folder: Path, kind: Any) -> tuple[Path, dict[str, Any]] | None:
    """The complete record, else the one that got furthest by `kind`'s count of work (a partial order still
    feeds the curve)."""
    records = job_records(folder)
    done = [(p, r) for p, r in records if r.get("complete")]
    if done:
        return done[0]
    partial = [(p, r) for p, r in records if r.get(kind.units_key)]
    return max(partial, key=lambda pr: kind.work(pr[1])) if partial else None


def read_status(folder: Path) -> dict[str, Any]:
    return _read_json(folder / STATUS_FILE) or {}


def mark(folder: Path, state: str, **info: Any) -> dict[str, Any]:
    """Replace the job's status atomically; the previous attempts are kept in `history`."""
    from clbench.core.atomic import atomic_write_json

    previous = read_status(folder)
    history = list(previous.pop("history", []))
    before = previous.pop("state", None)
    starts_attempt = {"pending": ("running", "done", "failed"), "running": ("running", "done", "failed")}
    if before in starts_attempt.get(state, ()):  # a new attempt: the last one goes to the history
        history.append({"state": before, **previous})
        previous = {}
    elif state == "pending":
        previous = {}
    status = {**previous, "state": state, **info, "history": history}
    atomic_write_json(folder / STATUS_FILE, status)
    return status


# -- one job, on a worker --------------------------------------------------------------------------------
def execute_job(job: Job, work: Callable[[Job], Any] | None = None) -> str:
    """The entry point every engine calls on a worker. Idempotent: a job already done returns at once, so a
    requeued or duplicated job costs nothing. Marks its status, runs, and re-raises any error for the engine."""
    folder = job.folder
    done = complete_record(folder)
    if done is not None:
        mark(folder, "done", record=str(done), note="already complete")
        return str(done)
    wait_for_earlier_attempt(folder)
    mark(folder, "running", started=time.time(), host=socket.gethostname(), pid=os.getpid(),
         cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"), **engine_place())
    try:
        result = (work or run_job)(job)
    except BaseException as exc:
        mark(folder, "failed", ended=time.time(), error=_one_line(exc), traceback=traceback.format_exc())
        raise
    mark(folder, "done", ended=time.time(), record=str(result))
    return str(result)


EARLIER_ATTEMPT_GRACE_S = 120.0


def wait_for_earlier_attempt(folder: Path, grace_s: float = EARLIER_ATTEMPT_GRACE_S) -> None:
    """An engine reruns a job once it has given the last attempt up (its node lost, its task killed), but that
    attempt's process may take a while to notice and exit; where it runs on this machine (several Ray nodes or
    Slurm jobs share a host) it would still hold the record's lock. Wait up to `grace_s` for it to end; if it
    lives on, the lock check that follows refuses, as for any live writer."""
    from clbench.protocol.checkpoint import process_alive

    earlier = read_status(folder)
    pid = earlier.get("pid")
    if (earlier.get("state") != "running" or earlier.get("host") != socket.gethostname()
            or not isinstance(pid, int) or pid == os.getpid()):
        return
    deadline = time.monotonic() + grace_s
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)


NODE_VARIABLE = "CLBENCH_ENGINE_NODE"  # set by an engine's entry point: the node the job runs on (Ray's node id)


def engine_place() -> dict[str, str]:
    """Where the engine put this attempt, beyond the host name (several Ray nodes or Slurm jobs share a host)."""
    place = {}
    if os.environ.get(NODE_VARIABLE):
        place["node"] = os.environ[NODE_VARIABLE]
    elif os.environ.get("SLURMD_NODENAME"):
        place["node"] = os.environ["SLURMD_NODENAME"]
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    engine_id = f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")
    if engine_id:
        place["engine_id"] = engine_id
    return place


def run_job(job: Job) -> Path:
    """One order through the ordinary runner. An earlier attempt's unfinished record (killed, timed out,
    preempted) is resumed from its last completed step, so a retry loses at most the step it was in; a record
    that cannot be resumed (damaged, another configuration) is cleared and the order starts again."""
    import shutil

    from clbench.core.errors import UsageError
    from clbench.protocol.checkpoint import acquire_lock, release_lock
    from clbench.records.record import RecordError

    unfinished = [(p, r) for p, r in job_records(job.folder) if not r.get("complete")]
    unfinished.sort(key=lambda pr: -job.experiment.work(pr[1]))
    for index, (path, _) in enumerate(unfinished):
        acquire_lock(path)  # a live duplicate of this job still writing it: fail, never clear its record
        release_lock(path)
        if index == 0:
            try:
                return job.experiment.run(job.run_config(), resume=path)[0]
            except (RecordError, UsageError):
                pass
        path.unlink(missing_ok=True)
        shutil.rmtree(path.with_suffix(""), ignore_errors=True)
    path, _ = job.experiment.run(job.run_config())
    return path


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# -- gathering -------------------------------------------------------------------------------------------
def gather(folder: Path, jobs: list[Job]) -> list[Path]:
    """One record per run configuration in <folder>/records: its jobs' orders (or sets) concatenated, the
    summary recomputed over them, complete only when every one is. Written atomically; re-gathering overwrites."""
    from clbench.records.writer import RecordWriter, new_record

    out = folder / "records"
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.run_key, []).append(job)
    written = []
    for key, group in groups.items():
        group = sorted(group, key=lambda j: j.order)
        kind = group[0].experiment
        entries, sources, first = [], [], None
        for job in group:
            found = best_record(job.folder, kind)
            if found is None or not found[1].get(kind.units_key):
                continue
            path, record = found
            first = first or record
            entry = dict(record[kind.units_key][0])
            for name, value in entry.items():  # files beside the job's record, named from the gathered one
                if name.endswith("_file") and isinstance(value, str):
                    entry[name] = os.path.relpath(path.parent / value, out)
            entries.append(entry)
            sources.append({kind.unit: job.order, "job": job.id, "record": os.path.relpath(path, out),
                            "host": record.get("environment", {}).get("host")})
        if first is None:
            continue
        name = kind.record_name(group[0].config, key)
        complete = len(entries) == len(group) and all(e.get("complete") for e in entries)
        config = {**first["config"], kind.units_key: [j.order for j in group]}
        units = {"orders": entries} if kind.units_key == "orders" else {"orders": [], kind.units_key: entries}
        done = {s[kind.unit] for s in sources}
        gathered = new_record(first.get("kind", "continual"), name, config, str(first["config"].get("device", "cpu")),
                              env=first.get("environment", {}),  # where the units ran, not where they were gathered
                              **units, summary=kind.summarise(entries, config),
                              sweep={"folder": str(folder), "run_key": key, "jobs": sources,
                                     f"missing_{kind.units_key}": [j.order for j in group if j.order not in done]})
        gathered["complete"] = complete
        path = out / f"{name}.json"
        RecordWriter(path).write(gathered)
        written.append(path)
    return written


# -- progress --------------------------------------------------------------------------------------------
@dataclass
class JobState:
    state: str = "pending"
    attempts: int = 0
    detail: str = ""
    error: str | None = None
    log: str | None = None
    started: float | None = None
    ended: float | None = None
    skipped: bool = False


class JobBoard:
    """Where each job stands, for the live table and the closing summary. Launchers set what they know
    (submitted, finished, failed); `refresh` adds what only the workers know (started, host, GPU)."""

    def __init__(self, jobs: Iterable[Job], listener: Callable[["JobBoard"], None] | None = None):
        self.jobs = {j.id: j for j in jobs}
        self.states = {j: JobState() for j in self.jobs}
        self.listener = listener
        self.started = time.time()
        self._last_refresh = float("-inf")

    def set(self, job_id: str, state: str, **info: Any) -> None:
        if state not in STATES:
            raise ValueError(f"unknown job state {state!r}")
        entry = self.states[job_id]
        entry.state = state
        for key, value in info.items():
            setattr(entry, key, value)
        if state == "running" and entry.started is None:
            entry.started = time.time()
        if state in ("done", "failed") and entry.ended is None:
            entry.ended = time.time()
        self.tick()

    def submitted(self, job_id: str) -> int:
        """A new attempt handed to the engine: pending until a worker says it started."""
        entry = self.states[job_id]
        entry.attempts += 1
        entry.started = entry.ended = None
        entry.error = entry.log = None
        entry.state, entry.detail = "pending", "submitted" if entry.attempts == 1 else f"retry {entry.attempts - 1}"
        mark(self.jobs[job_id].folder, "pending", queued=time.time(), attempt=entry.attempts)
        self.tick()
        return entry.attempts

    def refresh(self) -> None:
        """Pick up workers that started since the last look (their status file says running). At most once a
        second (less often for big sweeps): the files may sit on a shared file system."""
        now = time.monotonic()
        if now - self._last_refresh < max(1.0, len(self.states) / 500):
            return
        self._last_refresh = now
        changed = False
        for job_id, entry in self.states.items():
            if entry.state != "pending" or entry.attempts == 0:
                continue
            status = read_status(self.jobs[job_id].folder)
            if status.get("state") == "running":
                entry.state = "running"
                entry.started = status.get("started") or time.time()
                gpu = status.get("cuda_visible_devices")
                entry.detail = f"{status.get('host', '')}" + (f" GPU {gpu}" if gpu else "")
                changed = True
        if changed:
            self.tick()

    def failed_detail(self, job_id: str, fallback: str) -> str:
        """The worker's own one-line error when it wrote one, else what the engine said."""
        status = read_status(self.jobs[job_id].folder)
        return status.get("error") if status.get("state") == "failed" and status.get("error") else fallback

    def tick(self) -> None:
        if self.listener is not None:
            self.listener(self)

    def counts(self) -> dict[str, int]:
        counts = {s: 0 for s in STATES}
        for entry in self.states.values():
            counts[entry.state] += 1
        return counts

    def failures(self) -> list[tuple[Job, JobState]]:
        return [(self.jobs[j], s) for j, s in self.states.items() if s.state == "failed"]
