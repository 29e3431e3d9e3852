"""A real Ray cluster on this machine for the sweep tests: a head (no CPUs, so it runs no job) and worker nodes,
each a `ray start --block` on the loopback address in its own process group, so that one node can be stopped
(SIGKILL to its group: raylet, object store and job processes) while the others go on.

Ports are set apart from Ray's defaults (6379, 10001, 52365 and the 10002-19999 worker range), so the cluster
lives beside a user's Ray; token authentication is off: it listens on 127.0.0.1 only.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
BASE_PORT = int(os.environ.get("CLBENCH_RAY_PORT", "6390"))


@dataclass
class RayCluster:
    folder: Path  # logs and Ray's temporary files
    env: dict[str, str]
    address: str = f"127.0.0.1:{BASE_PORT}"
    head: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)
    worker_ids: list[str] = field(default_factory=list)  # Ray node id of each worker

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")
        # a small object store: jobs return a path, and a container's /dev/shm may be tiny
        return subprocess.Popen([str(RAY), "start", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
                                 "--object-store-memory=100000000", "--block", *args],
                                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start(self, workers: int = 2, cpus_per_worker: int = 2, timeout: float = 120) -> "RayCluster":
        self.head = self._start("head", "--head", f"--port={BASE_PORT}", f"--ray-client-server-port={BASE_PORT + 1}",
                                "--num-cpus=0", "--include-dashboard=false", f"--temp-dir={self.folder / 'tmp'}",
                                f"--dashboard-agent-listen-port={BASE_PORT + 2}", *_worker_ports(0))
        self.wait_for_nodes(1, timeout)
        for i in range(1, workers + 1):  # one at a time: on a busy machine a raylet has 30 s to register
            for tries_left in (1, 0):
                self.workers.append(self._start(
                    f"worker{i}", f"--address={self.address}", f"--num-cpus={cpus_per_worker}",
                    f"--dashboard-agent-listen-port={BASE_PORT + 2 + i}", *_worker_ports(i)))
                try:
                    nodes = self.wait_for_nodes(1 + i, timeout)
                    self.worker_ids += [n["NodeID"] for n in nodes
                                        if n["Resources"].get("CPU") and n["NodeID"] not in self.worker_ids]
                    break
                except RuntimeError:
                    if not tries_left:
                        raise
                    _kill_group(self.workers.pop())
        return self

    def alive_nodes(self) -> list[dict]:
        """The live nodes as `ray list nodes` sees them (asked in a subprocess: this one stays Ray-free)."""
        code = ("import json, ray; ray.init(address=%r, logging_level='ERROR');"
                "print(json.dumps([n for n in ray.nodes() if n['Alive']]))" % self.address)
        done = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            return []
        import json

        return json.loads(done.stdout.strip().splitlines()[-1])

    def wait_for_nodes(self, count: int, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in [self.head, *self.workers]:
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"a Ray node exited ({proc.args}); logs in {self.folder}")
            nodes = self.alive_nodes()
            if len(nodes) >= count:
                return nodes
            time.sleep(3)
        raise RuntimeError(f"the Ray cluster did not reach {count} nodes in {timeout:.0f}s; logs in {self.folder}")

    def kill_worker(self, index: int) -> None:
        """Stop worker node `index` at once, as a machine that dies would."""
        _kill_group(self.workers[index])

    def stop(self) -> None:
        for proc in [*self.workers, self.head]:
            if proc is not None:
                _kill_group(proc)


def _worker_ports(node: int) -> list[str]:
    low = 20000 + 200 * node
    return [f"--min-worker-port={low}", f"--max-worker-port={low + 199}"]


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def cluster_env(repo: Path) -> dict[str, str]:
    """What the nodes (and the jobs they run) see: the repository importable, one thread, no auth token."""
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
