"""The `ray` engine: Ray core tasks, one per job, on a local Ray instance or a cluster it joins.

Ray is imported only when a sweep runs on it.
"""
from __future__ import annotations

import hashlib
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clbench.core.errors import UsageError
from clbench.core.options import option
from clbench.sweep.engine import Execute, Launcher, LaunchSettings, first_line
from clbench.sweep.jobs import NODE_VARIABLE, JobBoard, execute_job
from clbench.sweep.spec import STATUS_FILE, Job


@dataclass(frozen=True)
class RayOptions:
    """The spec's [ray] table."""

    address: str | None = option(None, "the Ray cluster to join (default: start one on this machine)")
    num_cpus: int | None = option(None, "CPUs of the local instance (default: --max-parallel, else all)")
    num_gpus: int | None = option(None, "GPUs of the local instance (default: all)")
    gpus_per_job: float | None = option(None, "GPUs per job (default: 1 when the job uses a GPU)")
    cpus_per_job: float = option(1, "CPUs per job")
    max_retries: int = option(2, "times Ray reruns a job whose worker or node died")
    spread: bool = option(False, "spread the jobs over the nodes (Ray's SPREAD) instead of filling one first")


def _ray_entry(execute: Execute, job: Job) -> str:
    import ray

    os.environ[NODE_VARIABLE] = ray.get_runtime_context().get_node_id()  # the status file names the node
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
    Options = RayOptions

    def __init__(self, folder: Path, address: str | None = None, num_cpus: int | None = None,
                 num_gpus: int | None = None, gpus_per_job: float | None = None, cpus_per_job: float = 1,
                 max_retries: int = 2, retries: int = 0, max_parallel: int | None = None,
                 poll_seconds: float = 0.5, spread: bool = False):
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
        self.spread = spread

    @classmethod
    def from_options(cls, options: RayOptions, settings: LaunchSettings) -> RayLauncher:
        return cls(settings.folder, address=options.address, num_cpus=options.num_cpus, num_gpus=options.num_gpus,
                   gpus_per_job=options.gpus_per_job, cpus_per_job=options.cpus_per_job,
                   max_retries=options.max_retries, retries=settings.retries, max_parallel=settings.max_parallel,
                   spread=options.spread)

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
                placement = {"scheduling_strategy": "SPREAD"} if self.spread else {}
                ref = task.options(num_cpus=request["CPU"], num_gpus=request["GPU"], **placement).remote(execute, job)
                in_flight[ref] = (job, attempt)
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=self.poll_seconds)
            for ref in ready:
                job, attempt = in_flight.pop(ref)
                error, retryable, log = None, True, None
                try:
                    ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # the job raised: ours to retry
                    error = board.failed_detail(job.id, first_line(exc))
                    log = f"{job.folder / STATUS_FILE} (traceback)"
                except ray.exceptions.RayError as exc:  # the worker died, and Ray's max_retries are spent
                    error, retryable = f"worker crashed ({type(exc).__name__}): {first_line(exc)}", False
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
