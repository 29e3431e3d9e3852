"""What the real-engine tests share: the sweep they run, the CLI in a subprocess, waiting on the sweep folder,
and what a sweep's gathered records must equal.

The jobs are tiny digits runs of `tests.faulty_condensers:Slow` (random selection that sleeps `delay` seconds per
step), so that a fault can land between two steps of a job: its selection and training draw on (seed, order,
step) only, so any fault-free sweep of the same grid gives the same accuracies to the bit.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
REQUIRE = "CLBENCH_REQUIRE_ENGINES"  # set by .ci/run: a real engine that cannot start fails instead of skipping

GRID = """
condenser = "tests.faulty_condensers:Slow"
dataset = "digits"
memory = "3ipc"
steps = {steps}
orders = {orders}
profile = "quick"
device = "cpu"
networks_per_step = 1
[train]
epochs = 1
dsa = false
[opt]
delay = {delay}
[sweep]
folder = "{folder}"
"""
STEPS = 5
DELAY = 1.0


def write_spec(folder: Path, *, orders: Any = 2, steps: int = STEPS, delay: float = DELAY, extra: str = "") -> Path:
    """The spec of a sweep into `folder` (written beside it); `extra` adds engine tables."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    spec = folder.parent / f"{folder.name}.toml"
    spec.write_text(GRID.format(steps=steps, orders=json.dumps(orders), delay=delay, folder=folder) + extra)
    return spec


def env(**more: str) -> dict[str, str]:
    """The CLI's and the jobs' environment: the repository importable (the Slow condenser), one thread (CPU
    numbers depend on the thread count); tables at whatever width the caller sets (COLUMNS), else rich's 80."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, **more}


def clbench(*args: str, timeout: float = 300, **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clbench", *args], cwd=REPO, env=env(**extra_env),
                          capture_output=True, text=True, timeout=timeout)


def start_clbench(*args: str, log: Path, **extra_env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "clbench", *args], cwd=REPO, env=env(**extra_env),
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_until(what: str, check: Callable[[], Any], timeout: float = 240, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


# -- the sweep folder --------------------------------------------------------------------------------------
def job_folders(folder: Path) -> list[Path]:
    return sorted(p for p in (folder / "jobs").iterdir() if p.is_dir()) if (folder / "jobs").is_dir() else []


def status(job: Path) -> dict[str, Any]:
    try:
        return json.loads((job / ".status.json").read_text())
    except (OSError, ValueError):
        return {}


def attempts(job: Path) -> list[dict[str, Any]]:
    """Every attempt of a job that started on a worker, oldest first."""
    current = status(job)
    return [a for a in [*current.get("history", []), current] if a.get("started")]


def run_records(job: Path) -> list[Path]:
    return [p for p in job.glob("*.json") if not p.name.startswith(".")]  # not .status.json, .job.json


def steps_done(job: Path) -> int:
    """Completed steps in the job's record (what a retry resumes from)."""
    best = 0
    for path in run_records(job):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        best = max(best, sum(len(o.get("steps", [])) for o in record.get("orders", [])))
    return best


def jobs_with_steps(folder: Path, count: int, at_least: int = 1) -> list[Path] | None:
    """`count` jobs that have at least one step saved and are not finished yet (a fault lands mid-run)."""
    found = [j for j in job_folders(folder) if at_least <= steps_done(j) < STEPS]
    return found[:count] if len(found) >= count else None


def job_record(job: Path) -> dict[str, Any]:
    (record,) = [json.loads(p.read_text()) for p in run_records(job)]  # one record per job: none left behind
    return record


# -- what must not change ----------------------------------------------------------------------------------
def outcome(folder: Path) -> dict[int, list]:
    """Per class order of the sweep's one run configuration: each step's accuracies, per-class accuracies and
    memory size. The gathered record must be complete, with no order missing."""
    records = sorted((folder / "records").glob("*.json"))
    assert len(records) == 1, f"{folder}: {len(records)} gathered records, expected one"
    record = json.loads(records[0].read_text())
    assert record["complete"] and not record["sweep"]["missing_orders"], records[0]
    assert all(o["complete"] for o in record["orders"]), records[0]
    return {o["order"]: [(s["step"], s["accuracies"], s["class_accuracy"], s["memory_size"]) for s in o["steps"]]
            for o in record["orders"]}


def assert_same_as(reference: dict[int, list], folder: Path) -> None:
    """Every order of the sweep equals the fault-free reference's, to the bit (Slow's delay only sleeps)."""
    got = outcome(folder)
    assert got and set(got) <= set(reference), (folder, sorted(got))
    for order, steps in got.items():
        assert steps == reference[order], f"{folder}: order {order} differs from the fault-free sweep"


def assert_resumed(job: Path) -> None:
    """The job's final record continued an earlier attempt's (it lists a resume after at least one step) and
    its steps were each computed once."""
    record = job_record(job)
    assert record["complete"]
    resumes = record.get("resumes", [])
    assert resumes and resumes[0]["steps_done"] >= 1, f"{job}: the retry started again instead of resuming"
    assert [s["step"] for s in record["orders"][0]["steps"]] == list(range(STEPS))
