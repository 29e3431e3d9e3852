"""Sweeps on a real 3-node Ray cluster (a head without CPUs and two worker nodes, `ray start` on 127.0.0.1;
tests/engines/ray_cluster.py) joined with --ray-address, with the faults a cluster deals out: a job's worker
process killed, the driver killed, a worker node stopped. Each sweep must gather every order, equal to the
fault-free sweep's to the bit. The node test stops a node for good, so it runs last.
"""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.engines.sweeps import (
    assert_resumed,
    assert_same_as,
    attempts,
    clbench,
    job_folders,
    jobs_with_steps,
    start_clbench,
    status,
    steps_done,
    wait_until,
    write_spec,
)

pytestmark = pytest.mark.slow

RAY_TABLE = """
[ray]
spread = true
"""
RAY_ENV = {"RAY_AUTH_MODE": "disabled"}  # the test cluster runs without tokens (loopback only)


def sweep_args(spec, cluster, *more: str) -> list[str]:
    return ["sweep", str(spec), "--launcher", "ray", "--ray-address", cluster.address, *more]


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_worker_process_killed_mid_job_is_rerun_and_resumes(ray_cluster, reference, tmp_path):
    folder = tmp_path / "sweep"
    spec = write_spec(folder, extra=RAY_TABLE)
    log = tmp_path / "driver.log"
    driver = start_clbench(*sweep_args(spec, ray_cluster), log=log, **RAY_ENV)
    try:
        (victim,) = wait_until("a job with a saved step", lambda: jobs_with_steps(folder, 1))
        os.kill(status(victim)["pid"], signal.SIGKILL)  # the job's process dies; Ray reruns its task
        assert driver.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        stop(driver)
    assert_same_as(reference, folder)
    assert len(attempts(victim)) == 2
    assert_resumed(victim)
    first = [attempts(job)[0]["node"] for job in job_folders(folder)]  # spread: one job per worker node
    assert sorted(first) == sorted(ray_cluster.worker_ids)


def test_killed_driver_then_rerun_skips_finished_jobs_and_resumes_the_other(ray_cluster, reference, tmp_path):
    """One job at a time: the first finishes, the driver dies during the second (Ray ends its tasks with it);
    running the sweep again skips the first and continues the second from its record."""
    folder = tmp_path / "sweep"
    spec = write_spec(folder, extra=RAY_TABLE)
    driver = start_clbench(*sweep_args(spec, ray_cluster, "--max-parallel", "1"), log=tmp_path / "driver.log",
                           **RAY_ENV)
    try:
        def second_job_mid_run():
            jobs = job_folders(folder)
            states = [status(job).get("state") for job in jobs]
            running = [job for job, state in zip(jobs, states) if state == "running" and steps_done(job) >= 1]
            return running[0] if "done" in states and running else None

        victim = wait_until("the second job with a saved step", second_job_mid_run)
    finally:
        stop(driver)
    wait_until("the orphaned job's process to end", lambda: gone(status(victim)["pid"]), timeout=120)
    done = clbench(*sweep_args(spec, ray_cluster), **RAY_ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 job(s): 2 done (1 already complete before)" in done.stdout
    assert_same_as(reference, folder)
    assert_resumed(victim)
    (finished,) = [job for job in job_folders(folder) if job != victim]
    assert len(attempts(finished)) == 1


def test_worker_node_stopped_mid_sweep_its_job_moves_and_resumes(ray_cluster, reference, tmp_path):
    folder = tmp_path / "sweep"
    spec = write_spec(folder, extra=RAY_TABLE)
    log = tmp_path / "driver.log"
    driver = start_clbench(*sweep_args(spec, ray_cluster), log=log, **RAY_ENV)
    try:
        jobs = wait_until("both jobs with a saved step", lambda: jobs_with_steps(folder, 2))
        victim = jobs[0]
        node = status(victim)["node"]
        ray_cluster.kill_worker(ray_cluster.worker_ids.index(node))
        assert driver.wait(timeout=400) == 0, log.read_text()[-3000:]
    finally:
        stop(driver)
    assert_same_as(reference, folder)
    assert_resumed(victim)
    nodes = [a["node"] for a in attempts(victim)]
    assert nodes[0] == node and nodes[-1] != node  # it finished on the node that survived
