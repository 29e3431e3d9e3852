"""Sweeps on a real one-node Slurm (slurmctld, slurmd, slurmdbd; tests/engines/slurm/cluster.sh) through
submitit, with the faults a cluster deals out: a job cancelled mid-run, a job that hits its time limit, a driver
that dies. Each sweep must gather every order, equal to the fault-free sweep's to the bit.
"""
from __future__ import annotations

import json
import subprocess

import pytest

from clbench.sweep.status import sweep_status
from tests.engines.sweeps import (
    assert_resumed,
    assert_same_as,
    attempts,
    clbench,
    job_folders,
    jobs_with_steps,
    start_clbench,
    status,
    wait_until,
    write_spec,
)
from tests.test_sweep_status import job_block

pytestmark = pytest.mark.slow

SLURM_TABLE = """
[slurm]
time = {minutes}
cpus_per_task = 1
poll_seconds = 1
signal_delay_s = {warn}
"""


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


def test_cancelled_job_is_retried_and_resumes_from_its_checkpoint(slurm_cluster, reference, tmp_path):
    folder = tmp_path / "sweep"
    spec = write_spec(folder, extra=SLURM_TABLE.format(minutes=10, warn=90))
    log = tmp_path / "driver.log"
    driver = start_clbench("sweep", str(spec), "--launcher", "slurm", "--retries", "1", log=log)
    try:
        (victim,) = wait_until("a job with a saved step", lambda: jobs_with_steps(folder, 1))
        subprocess.run(["scancel", status(victim)["engine_id"]], check=True)
        assert driver.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        stop(driver)
    assert_same_as(reference, folder)
    assert len(attempts(victim)) == 2
    assert_resumed(victim)
    for job in job_folders(folder):
        if job != victim:
            assert len(attempts(job)) == 1

    reports = {r.job.id: r for r in sweep_status(folder)}  # what --status shows, from the files alone
    cancelled = reports[victim.name]
    assert cancelled.state == "done" and cancelled.attempts == 2 and cancelled.resumed == 1
    assert cancelled.error and cancelled.host and cancelled.engine_id
    shown = clbench("sweep", "--status", str(folder), "--format", "json")  # what a script reads
    assert shown.returncode == 0, shown.stderr
    (job,) = [j for j in json.loads(shown.stdout) if j["job"] == victim.name]
    assert job["state"] == "done" and job["resumed"] == 1 and job["error"] == cancelled.error
    assert [a["engine_id"] for a in job["history"] if a.get("started")] == [a["engine_id"] for a in attempts(victim)]
    table = clbench("sweep", "--status", str(folder), COLUMNS="80")  # and what a person sees at 80 columns
    assert table.returncode == 0 and max(map(len, table.stdout.splitlines())) <= 80, table.stdout
    row, *under = job_block(table.stdout.splitlines(), victim.name)
    assert "done" in row and cancelled.error[:20] in "".join(under), table.stdout
    assert "(1" in row and "resumed" in " ".join([row, *under]), table.stdout  # steps "5/5 (1 resumed)", wrapped


def test_time_limit_requeues_the_job_which_resumes_from_its_checkpoint(slurm_cluster, reference, tmp_path):
    """A 3-minute limit and a job of over 2 minutes: Slurm warns it (USR2) 60 s before the limit, the job asks
    submitit to requeue it, and the next attempt continues the record; no --retries involved.

    Slurm checks time limits every 30 s and may send the warning up to 60 s early (its --signal docs), so the
    warning lands 60 to 120 s into the job: after its first step (24 s of sleep plus start-up and training) and
    before its end (5 x 24 s of sleep alone). A 2-minute limit put that window at 0 to 60 s, and a warning
    before the first step left nothing to resume (a CI run failed so)."""
    folder = tmp_path / "sweep"
    spec = write_spec(folder, orders=[0], delay=24.0, extra=SLURM_TABLE.format(minutes=3, warn=60))
    done = clbench("sweep", str(spec), "--launcher", "slurm", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    (job,) = job_folders(folder)
    assert_same_as(reference, folder)
    assert_resumed(job)
    history = attempts(job)
    assert len(history) >= 2 and any("requeued by Slurm" in a.get("note", "") for a in history)
    assert len({a["engine_id"] for a in history}) == 1  # the same Slurm job, requeued, not a new submission


def test_killed_driver_then_attach_follows_the_jobs_to_the_end(slurm_cluster, reference, tmp_path):
    folder = tmp_path / "sweep"
    spec = write_spec(folder, extra=SLURM_TABLE.format(minutes=10, warn=90))
    driver = start_clbench("sweep", str(spec), "--launcher", "slurm", log=tmp_path / "driver.log")
    try:
        wait_until("a job with a saved step", lambda: jobs_with_steps(folder, 1))
    finally:
        stop(driver)  # SIGKILL: no goodbye, the jobs stay queued and running on Slurm
    done = clbench("sweep", "--attach", str(folder))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 job(s): 2 done" in done.stdout
    assert_same_as(reference, folder)
    assert all(len(attempts(job)) == 1 for job in job_folders(folder))  # followed, not resubmitted
