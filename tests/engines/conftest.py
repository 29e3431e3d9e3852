"""Fixtures of the real-engine tests: the one-node Slurm cluster (tests/engines/slurm/cluster.sh), the
3-node Ray cluster (tests/engines/ray_cluster.py) and the fault-free reference sweep.

Where an engine cannot start (not root, no Debian packages), its tests skip saying why; with
CLBENCH_REQUIRE_ENGINES=1 (CI sets it in .ci/run) they fail instead, so CI cannot silently skip them.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.engines.ray_cluster import RayCluster, cluster_env
from tests.engines.sweeps import REPO, REQUIRE, clbench, outcome, write_spec

SLURM = Path(__file__).parent / "slurm" / "cluster.sh"


def unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{reason} ({REQUIRE}=1: the real-engine tests must run here)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")  # only test_slurm.py: its daemons stop when it ends
def slurm_cluster():
    """The one-node Slurm cluster, started unless it runs already (then it is left running afterwards);
    SLURM_CONF points this process and the CLI subprocesses at it."""
    if os.name != "posix" or os.geteuid() != 0:
        unavailable("the Slurm test cluster runs its daemons as root; run the tests as root (CI does)")
    if not shutil.which("slurmctld") and not Path("/usr/sbin/slurmctld").exists():
        unavailable(f"Slurm is not installed; `make test` installs it as root with apt ({SLURM} install)")
    running = subprocess.run(["bash", str(SLURM), "status"], capture_output=True).returncode == 0
    if not running:
        started = subprocess.run(["bash", str(SLURM), "start"], capture_output=True, text=True, timeout=300)
        if started.returncode != 0:
            unavailable(f"the Slurm test cluster did not start: {started.stderr.strip()[-500:]}")
    conf = subprocess.run(["bash", str(SLURM), "env"], capture_output=True, text=True).stdout.split("=", 1)[1]
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf.strip()
    yield conf.strip()
    if before is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = before
    if not running:
        subprocess.run(["bash", str(SLURM), "stop"], capture_output=True, timeout=120)


@pytest.fixture(scope="module")  # only test_ray.py: the nodes stop when it ends
def ray_cluster():
    """A head (no CPUs) and two worker nodes of 2 CPUs each, on 127.0.0.1."""
    pytest.importorskip("ray")
    folder = Path(tempfile.mkdtemp(prefix="clbr-", dir="/tmp"))  # Ray's socket paths must stay short
    cluster = RayCluster(folder, cluster_env(REPO))
    try:
        cluster.start(workers=2, cpus_per_worker=2)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        cluster.stop()
        unavailable(f"the Ray test cluster did not start: {exc}")
    yield cluster
    cluster.stop()
    shutil.rmtree(folder, ignore_errors=True)


_REFERENCE: dict[str, dict] = {}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The fault-free sweep (local process pool): what every faulty sweep must gather, order by order. Run once
    per session; module-scoped so that it comes after the cluster fixture (a test that skips costs nothing)."""
    if "outcome" not in _REFERENCE:
        folder = tmp_path_factory.mktemp("reference") / "sweep"
        done = clbench("sweep", str(write_spec(folder)), "--launcher", "local", "--max-parallel", "2")
        assert done.returncode == 0, done.stdout + done.stderr
        _REFERENCE["outcome"] = outcome(folder)
    return _REFERENCE["outcome"]
