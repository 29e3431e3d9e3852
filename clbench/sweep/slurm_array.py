"""The `slurm` engine: one Slurm job array per submission through submitit, which the driver may leave
(`--detach`) and re-attach to. submitit is imported only when a sweep runs on it.
"""
from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clbench.core.errors import ClbenchError, UsageError
from clbench.core.options import option
from clbench.sweep.engine import Execute, Launcher, LaunchSettings, first_line
from clbench.sweep.jobs import JobBoard, execute_job, mark, read_plan, save_engine_state
from clbench.sweep.spec import Job


def partition_has_gpus(partition: str | None) -> bool | None:
    """Whether the partition (else the cluster's partitions) offers GPUs, from the generic resources sinfo lists
    (`gpu:a100:4(S:0-1)`, or `(null)` without any); None where sinfo cannot say."""
    command = ["sinfo", "--noheader", "--format=%G"] + (["--partition", partition] if partition else [])
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    resources = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not resources:
        return None
    return any("gpu" in r.lower() for r in resources)


def gpus_per_job(requested: int | None, jobs: list[Job], has_gpus: Any) -> tuple[int, str | None]:
    """GPUs each array task asks for, and a note saying why where the cluster decided it. `requested` (the
    spec's or --gpus) wins; jobs with device cuda ask for 1; jobs with device auto ask for 1 where `has_gpus()`
    (the partition's answer) is not False, so that a CPU-only cluster does not refuse the array."""
    if requested is not None:
        return requested, None
    if any(j.uses_gpu() for j in jobs):
        return 1, None
    if not any(j.uses_gpu() is None for j in jobs):
        return 0, None
    if has_gpus is None:  # not on Slurm (submitit's local or debug cluster): nothing to ask
        return 1, None
    answer = has_gpus()
    if answer is False:
        return 0, ("device auto: sinfo lists no GPUs in the partition, so each job asks for none and runs on the "
                   "CPU (set [slurm] gpus = 1 to ask anyway)")
    if answer is None:
        return 1, "device auto: sinfo could not say whether the partition has GPUs; each job asks for 1"
    return 1, None


@dataclass(frozen=True)
class SlurmOptions:
    """The spec's [slurm] table (partition, time and gpus may also come from the command line)."""

    partition: str | None = option(None, "the Slurm partition (default: the cluster's)")
    time: Any = option("24:00:00", "time limit per job: minutes, HH:MM:SS or D-HH:MM:SS")
    gpus: int | None = option(None, "GPUs per job (default: 1 for jobs with device cuda; for device auto, 1 where "
                                    "sinfo shows GPUs in the partition, else 0)")
    cpus_per_task: int | None = option(None, "CPUs per job")
    mem_gb: float | None = option(None, "memory per job in GB")
    array_parallelism: int | None = option(None, "array tasks running at once (default: max_parallel)")
    cluster: str | None = option("slurm", "submitit's cluster: slurm, or local / debug to try it here")
    name: str | None = option(None, "the Slurm job name (default: clbench-<sweep folder>)")
    additional: dict[str, Any] | None = option(None, "more sbatch parameters, as submitit passes them")
    setup: list[str] | None = option(None, "shell lines run before each job")
    poll_seconds: float = option(30.0, "seconds between two looks at the queue")
    signal_delay_s: int = option(90, "seconds before the time limit at which Slurm warns a job, which then "
                                     "requeues itself to continue from its last completed step")


def parse_minutes(value: Any) -> int:
    """Slurm's time formats (MM, HH:MM:SS, D-HH:MM:SS, D-HH) or an integer of minutes."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    text = str(value).strip()
    try:
        days, _, rest = text.rpartition("-")
        parts = [int(p) for p in rest.split(":")]
        if days and len(parts) == 1:  # D-HH
            parts = [parts[0], 0, 0]
        hours, minutes, seconds = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
        total = int(days or 0) * 1440 + hours * 60 + minutes + (1 if seconds else 0)
    except (ValueError, KeyError):
        total = 0
    if total <= 0:
        raise UsageError(f"slurm time {value!r}: give minutes or HH:MM:SS / D-HH:MM:SS")
    return total


class SlurmEntry:
    """What each array task runs: the job, and submitit's `checkpoint` hook. Warned of its time limit or of
    preemption (USR2), a task asks submitit to requeue it with the same job: the new attempt resumes the
    record from its last completed step (clbench.sweep.jobs.run_job)."""

    def __init__(self, execute: Execute):
        self.execute = execute

    def __call__(self, job: Job) -> str:
        try:
            return self.execute(job)
        except SystemExit:  # submitit's exit after requeueing the task
            mark(job.folder, "pending", queued=time.time(), note="requeued by Slurm (time limit or preemption)")
            raise

    def checkpoint(self, job: Job) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, job)


class SlurmLauncher(Launcher):
    """One Slurm job array per submission through submitit's `map_array`. Job ids are kept in .sweep.json,
    so the driver may exit (`detach`) and a new one re-attach; failed tasks are reported with their log
    files and resubmitted, as a new array, up to `retries` times."""

    name = "slurm"
    Options = SlurmOptions
    detaches = True

    def __init__(self, folder: Path, partition: str | None = None, time_limit: Any = "24:00:00",
                 gpus_per_job: int | None = None, cpus_per_task: int | None = None, mem_gb: float | None = None,
                 array_parallelism: int | None = None, retries: int = 0, cluster: str | None = "slurm",
                 name: str | None = None, additional: dict[str, Any] | None = None,
                 setup: list[str] | None = None, poll_seconds: float = 30.0, detach: bool = False,
                 signal_delay_s: int = 90):
        self.folder = Path(folder)
        self.partition = partition
        self.timeout_min = parse_minutes(time_limit)
        self.gpus_per_job = gpus_per_job
        self.cpus_per_task = cpus_per_task
        self.mem_gb = mem_gb
        self.array_parallelism = array_parallelism
        self.retries = retries
        self.cluster = cluster
        self.job_name = name or f"clbench-{self.folder.name}"
        self.additional = dict(additional or {})
        self.setup = list(setup or [])
        self.poll_seconds = poll_seconds
        self.detach = detach
        self.signal_delay_s = signal_delay_s
        self.notes: list[str] = []  # what the launcher decided for the user (shown by the CLI)

    @classmethod
    def from_options(cls, options: SlurmOptions, settings: LaunchSettings) -> SlurmLauncher:
        parallelism = options.array_parallelism if options.array_parallelism is not None else settings.max_parallel
        return cls(settings.folder, partition=options.partition, time_limit=options.time, gpus_per_job=options.gpus,
                   cpus_per_task=options.cpus_per_task, mem_gb=options.mem_gb,
                   array_parallelism=settings.command_line_parallel or parallelism, retries=settings.retries,
                   cluster=options.cluster, name=options.name, additional=options.additional,
                   setup=options.setup, poll_seconds=float(options.poll_seconds), detach=settings.detach,
                   signal_delay_s=int(options.signal_delay_s))

    @property
    def log_folder(self) -> Path:
        return self.folder / "slurm"

    def executor(self, jobs: list[Job]) -> Any:
        try:
            import submitit
        except ImportError:
            raise UsageError("--launcher slurm needs submitit: pip install 'clbench[slurm]'") from None
        try:
            executor = submitit.AutoExecutor(folder=self.log_folder, cluster=self.cluster)
        except Exception as exc:  # no srun/sbatch here
            raise UsageError(f"--launcher slurm: {first_line(exc)}; run the sweep from the cluster's login node "
                             f"(or set [slurm] cluster = \"local\" to try it on this machine)") from None
        on_slurm = executor.cluster == "slurm"
        gpus, note = gpus_per_job(self.gpus_per_job, jobs,
                                  (lambda: partition_has_gpus(self.partition)) if on_slurm else None)
        if note and note not in self.notes:
            self.notes.append(note)
        params: dict[str, Any] = {"name": self.job_name, "timeout_min": self.timeout_min, "gpus_per_node": gpus,
                                  "nodes": 1, "tasks_per_node": 1}
        if self.cpus_per_task:
            params["cpus_per_task"] = self.cpus_per_task
        if self.mem_gb:
            params["mem_gb"] = self.mem_gb
        if executor.cluster == "slurm":
            if self.partition:
                params["slurm_partition"] = self.partition
            if self.array_parallelism:
                params["slurm_array_parallelism"] = self.array_parallelism
            if self.additional:
                params["slurm_additional_parameters"] = self.additional
            if self.setup:
                params["slurm_setup"] = self.setup
            params["slurm_signal_delay_s"] = self.signal_delay_s
        executor.update_parameters(**params)
        return executor

    def submit(self, jobs: list[Job], board: JobBoard, execute: Execute = execute_job) -> list[Any]:
        """One array for `jobs`; their engine ids go to .sweep.json before anything else can fail."""
        executor = self.executor(jobs)
        attempts = [board.submitted(job.id) for job in jobs]
        try:
            handles = executor.map_array(SlurmEntry(execute), jobs)
        except Exception as exc:  # sbatch refused: a bad partition, account or time limit
            raise ClbenchError(f"Slurm refused the job array: {first_line(exc)}; check [slurm] in the spec "
                               f"(partition, time, gpus, additional)") from None
        state = self.engine_state()
        state["cluster"] = self.cluster
        state["log_folder"] = str(self.log_folder)
        for job, attempt, handle in zip(jobs, attempts, handles):
            state["tasks"][job.id] = {"engine_id": handle.job_id, "attempt": attempt}
        save_engine_state(self.folder, state)
        return handles

    def engine_state(self) -> dict[str, Any]:
        state = read_plan(self.folder).get("engine_state") or {}
        state.setdefault("tasks", {})
        return state

    def run(self, jobs: list[Job], board: JobBoard, execute: Execute = execute_job) -> None:
        self.refuse_if_in_flight(jobs)
        handles = dict(zip((j.id for j in jobs), self.submit(jobs, board, execute)))
        if not self.detach:
            self.wait(handles, board, execute)

    def reload(self, jobs: list[Job], board: JobBoard) -> dict[str, Any]:
        """The submitit handles of the jobs' last submissions, rebuilt from the ids in .sweep.json."""
        state = self.engine_state()
        job_class = self._job_class(state.get("cluster") or self.cluster)
        handles = {}
        for job in jobs:
            task = state["tasks"].get(job.id)
            if task is None:
                continue
            board.states[job.id].attempts = int(task.get("attempt", 1))
            handles[job.id] = job_class(folder=state.get("log_folder", self.log_folder), job_id=task["engine_id"])
        return handles

    @staticmethod
    def _job_class(cluster: str | None) -> Any:
        try:
            import submitit
        except ImportError:
            raise UsageError("re-attaching a Slurm sweep needs submitit: pip install 'clbench[slurm]'") from None
        if cluster == "local":
            return submitit.LocalJob
        if cluster == "debug":
            raise UsageError("a sweep run with the in-process debug cluster cannot be re-attached")
        return submitit.SlurmJob

    def refuse_if_in_flight(self, jobs: list[Job]) -> None:
        """Resubmitting jobs that are still queued would run them twice: point to --attach instead."""
        if not self.engine_state()["tasks"]:
            return
        live = [jid for jid, handle in self.reload(jobs, JobBoard(jobs)).items()
                if not _safe_done(handle) and _state(handle) in LIVE_STATES]
        if live:
            raise UsageError(
                f"{len(live)} job(s) of this sweep are still queued or running on Slurm; follow them with "
                f"`clbench sweep --attach {self.folder}` (or scancel them) before submitting again"
            )

    def attach(self, jobs: list[Job], board: JobBoard, execute: Execute = execute_job) -> None:
        handles = self.reload(jobs, board)
        for job in jobs:
            if job.id not in handles:  # never submitted (the driver stopped first): submit it now
                handles.update(zip([job.id], self.submit([job], board, execute)))
        self.wait(handles, board, execute)

    def wait(self, handles: dict[str, Any], board: JobBoard, execute: Execute = execute_job) -> None:
        pending = dict(handles)
        while pending:
            resubmit: list[Job] = []
            for job_id, handle in list(pending.items()):
                if not _safe_done(handle):
                    continue
                del pending[job_id]
                job = board.jobs[job_id]
                error = _job_error(handle)
                log = f"{handle.paths.stderr} (stdout: {handle.paths.stdout})"
                if error is not None:
                    error = board.failed_detail(job_id, error)
                self._finish(board, job, board.states[job_id].attempts, error, log, resubmit.append)
            if resubmit:
                pending.update(zip((j.id for j in resubmit), self.submit(resubmit, board, execute)))
            board.refresh()
            board.tick()
            if pending:
                time.sleep(self.poll_seconds)


LIVE_STATES = ("PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING", "SUSPENDED", "READY", "RESIZING")


def _state(handle: Any) -> str:
    """Slurm's word for the task; UNKNOWN (e.g. purged from accounting) does not count as live."""
    try:
        return str(handle.state).upper()
    except Exception:
        return "UNKNOWN"


def _safe_done(handle: Any) -> bool:
    try:
        return bool(handle.done())
    except Exception:  # sacct hiccups: ask again at the next poll
        return False


def _job_error(handle: Any) -> str | None:
    try:
        exc = handle.exception()
    except Exception as err:  # no result at all: killed, timed out, node failure
        return f"{type(err).__name__}: {first_line(err)} (state {getattr(handle, 'state', '?')})"
    if exc is None:
        return None
    return f"{type(exc).__name__}: {first_line(exc)}"
