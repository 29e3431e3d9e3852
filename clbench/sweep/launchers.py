"""Engines that run a sweep's jobs: a local process pool, Ray core tasks, or a Slurm job array via submitit.

All three have one method, `run(jobs, board, execute)`: hand every job to the engine, follow it until it is
done or has failed `retries + 1` times, and keep the board up to date. The engine schedules; clbench only
submits, watches and resubmits. Ray and submitit are imported only when their launcher runs.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any, Callable

from clbench.core.errors import ClbenchError, UsageError
from clbench.sweep.spec import (STATUS_FILE, Job, JobBoard, SweepSpec, execute_job, read_plan, read_status,
                           save_engine_state)

Execute = Callable[[Job], Any]
LOCAL_KEYS = ("gpus",)
RAY_KEYS = ("address", "num_cpus", "num_gpus", "gpus_per_job", "cpus_per_job", "max_retries")
SLURM_KEYS = ("partition", "time", "gpus", "cpus_per_task", "mem_gb", "array_parallelism", "cluster", "name",
              "additional", "setup", "poll_seconds")


class Launcher:
    name = "launcher"
    retries = 0

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


# -- local -----------------------------------------------------------------------------------------------
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

    def __init__(self, max_parallel: int | None = None, retries: int = 0, gpus: list[str] | None = None,
                 poll_seconds: float = 0.2):
        self.max_parallel = max_parallel
        self.retries = retries
        self.gpus = gpus
        self.poll_seconds = poll_seconds

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


# -- Ray -------------------------------------------------------------------------------------------------
def _ray_entry(execute: Execute, job: Job) -> str:
    return execute(job)


def unmet_request(request: dict[str, float], nodes: list[dict[str, float]]) -> bool:
    """True when no single node has every resource a task asks for: Ray would keep it pending forever."""
    return not any(all(node.get(k, 0.0) >= v for k, v in request.items() if v > 0) for node in nodes)


def short_temp_dir(folder: Path) -> str:
    """Ray's session sockets must fit in 107 bytes: a deep sweep folder is reached through a short link."""
    if len(str(folder)) <= 40:
        return str(folder)
    link = Path("/tmp") / f"clbench-ray-{hashlib.sha256(str(folder).encode()).hexdigest()[:10]}"
    if link.is_symlink() and Path(os.readlink(link)) != folder:
        link.unlink()
    if not link.is_symlink():
        link.symlink_to(folder, target_is_directory=True)
    return str(link)


def start_local_ray(folder: Path, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """A Ray instance on this machine whose temporary files and logs live under <sweep>/ray."""
    import logging

    import ray

    temp = Path(folder) / "ray"
    temp.mkdir(parents=True, exist_ok=True)
    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, _temp_dir=short_temp_dir(temp), include_dashboard=False,
             log_to_driver=False, logging_level=logging.WARNING)


class RayLauncher(Launcher):
    """Ray core tasks, one per job: `max_calls=1` gives each job a fresh worker process, `num_gpus` makes Ray
    set its CUDA_VISIBLE_DEVICES, `max_retries` reruns tasks whose worker crashed, and exceptions are
    resubmitted by the driver up to `retries` times."""

    name = "ray"

    def __init__(self, folder: Path, address: str | None = None, num_cpus: int | None = None,
                 num_gpus: int | None = None, gpus_per_job: float | None = None, cpus_per_job: float = 1,
                 max_retries: int = 2, retries: int = 0, max_parallel: int | None = None,
                 poll_seconds: float = 0.5):
        self.folder = Path(folder)
        self.address = address
        self.num_cpus = num_cpus if num_cpus is not None else max_parallel
        self.num_gpus = num_gpus
        self.gpus_per_job = gpus_per_job
        self.cpus_per_job = cpus_per_job
        self.max_retries = max_retries
        self.retries = retries
        self.max_parallel = max_parallel
        self.poll_seconds = poll_seconds

    def request(self, job: Job, cluster_gpus: float) -> dict[str, float]:
        if self.gpus_per_job is not None:
            gpus = float(self.gpus_per_job)
        else:
            uses = job.uses_gpu()
            gpus = 1.0 if uses or (uses is None and cluster_gpus > 0) else 0.0
        return {"CPU": float(self.cpus_per_job), "GPU": gpus}

    def run(self, jobs: list[Job], board: JobBoard, execute: Execute = execute_job) -> None:
        try:
            import ray
        except ImportError:
            raise UsageError("--launcher ray needs Ray: pip install 'clbench[ray]'") from None
        started_here = False
        if not ray.is_initialized():
            if self.address:
                try:
                    ray.init(address=self.address, log_to_driver=False)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise UsageError(f"--ray-address {self.address}: cannot join the Ray cluster ({exc})") from None
            else:
                start_local_ray(self.folder, self.num_cpus, self.num_gpus)
            started_here = True
        try:
            self._run(ray, jobs, board, execute)
        finally:
            if started_here:
                ray.shutdown()

    def _run(self, ray: Any, jobs: list[Job], board: JobBoard, execute: Execute) -> None:
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        cluster_gpus = sum(n.get("GPU", 0.0) for n in nodes)
        requests = {job.id: self.request(job, cluster_gpus) for job in jobs}
        for job in jobs:  # before anything is submitted: Ray would leave such a task pending forever
            request = requests[job.id]
            if unmet_request(request, nodes):
                biggest = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)), default={})
                raise UsageError(
                    f"job {job.id} ({job.label}) asks for {request['GPU']:g} GPU(s) and {request['CPU']:g} CPU(s), "
                    f"but no node of the Ray cluster has them (largest: {biggest.get('GPU', 0):g} GPU(s), "
                    f"{biggest.get('CPU', 0):g} CPU(s)); run on CPU (device = \"cpu\"), lower [ray] gpus_per_job / "
                    f"cpus_per_job, or add nodes"
                )
        logs = _ray_logs(ray)
        task = ray.remote(max_calls=1, max_retries=self.max_retries, retry_exceptions=False)(_ray_entry)
        queue: deque[Job] = deque(jobs)
        in_flight: dict[Any, tuple[Job, int]] = {}
        while queue or in_flight:
            while queue and (self.max_parallel is None or len(in_flight) < self.max_parallel):
                job = queue.popleft()
                request = requests[job.id]
                attempt = board.submitted(job.id)
                ref = task.options(num_cpus=request["CPU"], num_gpus=request["GPU"]).remote(execute, job)
                in_flight[ref] = (job, attempt)
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=self.poll_seconds)
            for ref in ready:
                job, attempt = in_flight.pop(ref)
                error, retryable, log = None, True, None
                try:
                    ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # the job raised: ours to retry
                    error = board.failed_detail(job.id, _first_line(exc))
                    log = f"{job.folder / STATUS_FILE} (traceback)"
                except ray.exceptions.RayError as exc:  # the worker died, and Ray's max_retries are spent
                    error, retryable = f"worker crashed ({type(exc).__name__}): {_first_line(exc)}", False
                    log = f"{logs}/python-core-worker-*.log (on the worker's node)"
                self._finish(board, job, attempt, error, log, queue.append, retryable)
            board.refresh()
            board.tick()


def _ray_logs(ray: Any) -> str:
    """The session's log folder (resolved through the short link of a local instance)."""
    try:
        context = ray.get_runtime_context()
        return os.path.realpath(Path(context.get_temp_dir()) / context.get_session_name() / "logs")
    except Exception:  # an older Ray: its default place
        return "/tmp/ray/session_latest/logs"


def _first_line(exc: BaseException) -> str:
    lines = [l for l in str(exc).splitlines() if l.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


# -- Slurm -----------------------------------------------------------------------------------------------
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


class SlurmLauncher(Launcher):
    """One Slurm job array per submission through submitit's `map_array`. Job ids are kept in .sweep.json,
    so the driver may exit (`detach`) and a new one re-attach; failed tasks are reported with their log
    files and resubmitted, as a new array, up to `retries` times."""

    name = "slurm"

    def __init__(self, folder: Path, partition: str | None = None, time_limit: Any = "24:00:00",
                 gpus_per_job: int | None = None, cpus_per_task: int | None = None, mem_gb: float | None = None,
                 array_parallelism: int | None = None, retries: int = 0, cluster: str | None = "slurm",
                 name: str | None = None, additional: dict[str, Any] | None = None,
                 setup: list[str] | None = None, poll_seconds: float = 30.0, detach: bool = False):
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

    @property
    def log_folder(self) -> Path:
        return self.folder / "slurm"

    def executor(self, jobs: list[Job]) -> Any:
        try:
            import submitit
        except ImportError:
            raise UsageError("--launcher slurm needs submitit: pip install 'clbench[slurm]'") from None
        gpus = self.gpus_per_job
        if gpus is None:
            gpus = 1 if any(j.uses_gpu() is not False for j in jobs) else 0
        try:
            executor = submitit.AutoExecutor(folder=self.log_folder, cluster=self.cluster)
        except Exception as exc:  # no srun/sbatch here
            raise UsageError(f"--launcher slurm: {_first_line(exc)}; run the sweep from the cluster's login node "
                             f"(or set [slurm] cluster = \"local\" to try it on this machine)") from None
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
        executor.update_parameters(**params)
        return executor

    def submit(self, jobs: list[Job], board: JobBoard, execute: Execute = execute_job) -> list[Any]:
        """One array for `jobs`; their engine ids go to .sweep.json before anything else can fail."""
        executor = self.executor(jobs)
        attempts = [board.submitted(job.id) for job in jobs]
        try:
            handles = executor.map_array(execute, jobs)
        except Exception as exc:  # sbatch refused: a bad partition, account or time limit
            raise ClbenchError(f"Slurm refused the job array: {_first_line(exc)}; check [slurm] in the spec "
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
        from clbench.sweep.spec import JobBoard as _Board

        live = [jid for jid, handle in self.reload(jobs, _Board(jobs)).items()
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
        return f"{type(err).__name__}: {_first_line(err)} (state {getattr(handle, 'state', '?')})"
    if exc is None:
        return None
    return f"{type(exc).__name__}: {_first_line(exc)}"


# -- choosing one ----------------------------------------------------------------------------------------
def make_launcher(name: str, spec: SweepSpec, *, max_parallel: int | None = None, retries: int | None = None,
                  ray_address: str | None = None, slurm: dict[str, Any] | None = None,
                  detach: bool = False) -> Launcher:
    """The spec's engine tables, with the command line's options on top."""
    retries = spec.retries if retries is None else retries
    given_parallel = max_parallel  # the command line's, which beats [slurm] array_parallelism
    max_parallel = spec.max_parallel if max_parallel is None else max_parallel
    if retries < 0:
        raise UsageError(f"--retries {retries}: give 0 or more")
    if max_parallel is not None and max_parallel < 1:
        raise UsageError(f"--max-parallel {max_parallel}: give at least 1")
    if detach and name != "slurm":
        raise UsageError("--detach is for --launcher slurm: local and Ray jobs end with their driver")
    if name == "local":
        table = _engine_table(spec, "local", LOCAL_KEYS)
        gpus = table.get("gpus")
        return LocalLauncher(max_parallel, retries, [str(g) for g in gpus] if gpus is not None else None)
    if name == "ray":
        table = _engine_table(spec, "ray", RAY_KEYS)
        return RayLauncher(spec.folder, address=ray_address or table.get("address"), num_cpus=table.get("num_cpus"),
                           num_gpus=table.get("num_gpus"), gpus_per_job=table.get("gpus_per_job"),
                           cpus_per_job=table.get("cpus_per_job", 1), max_retries=table.get("max_retries", 2),
                           retries=retries, max_parallel=max_parallel)
    if name == "slurm":
        table = {**_engine_table(spec, "slurm", SLURM_KEYS), **{k: v for k, v in (slurm or {}).items() if v is not None}}
        return SlurmLauncher(spec.folder, partition=table.get("partition"),
                             time_limit=table.get("time", "24:00:00"),
                             gpus_per_job=table.get("gpus"), cpus_per_task=table.get("cpus_per_task"),
                             mem_gb=table.get("mem_gb"),
                             array_parallelism=given_parallel or table.get("array_parallelism", max_parallel),
                             retries=retries,
                             cluster=table.get("cluster", "slurm"), name=table.get("name"),
                             additional=table.get("additional"), setup=table.get("setup"),
                             poll_seconds=float(table.get("poll_seconds", 30.0)), detach=detach)
    raise UsageError(f"--launcher {name!r}: choose local, ray or slurm")


def _engine_table(spec: SweepSpec, name: str, keys: tuple[str, ...]) -> dict[str, Any]:
    table = spec.engines.get(name, {})
    bad = sorted(set(table) - set(keys))
    if bad:
        raise UsageError(f"{spec.source}: unknown keys in [{name}]: {', '.join(bad)}; known: {', '.join(keys)}")
    return table
