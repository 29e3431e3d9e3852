"""Wall time of one small sweep on each engine, one after the other on this machine: `local` (a process pool),
the one-node Slurm of tests/engines/slurm (needs root; started if it is not running) and the 3-node Ray cluster
of tests/engines/ray_cluster.py (a head and two workers on 127.0.0.1). Prints seconds, the ratio local / engine
(above 1: the engine is faster) and whether each engine's gathered accuracies equal local's.

    .venv/bin/python benchmarks/sweep_engines.py [--engines local,slurm,ray] [--max-parallel 2]

The sweep: random and DM x class orders 0 and 1 on digits (5 steps, 3 ipc, quick profile, one network, one
epoch, DM 20 iterations), 4 jobs, `--max-parallel` at once on every engine. Cluster start-up is not timed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SPEC = """
condenser = ["random", "dm"]
dataset = "digits"
memory = "3ipc"
steps = 5
orders = 2
profile = "quick"
device = "cpu"
networks_per_step = 1
[train]
epochs = 1
dsa = false
[opt.dm]
iterations = 20
[slurm]
cpus_per_task = 1
poll_seconds = 1
"""


def accuracies(folder: Path) -> dict:
    found = {}
    for path in sorted((folder / "records").glob("*.json")):
        record = json.loads(path.read_text())
        for order in record["orders"]:
            found[(record["config"]["condenser"], order["order"])] = [s["accuracies"] for s in order["steps"]]
    return found


def sweep(engine: str, folder: Path, parallel: int, env: dict, *extra: str) -> float:
    spec = folder.with_suffix(".toml")
    spec.write_text(SPEC)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "clbench", "sweep", str(spec), "--launcher", engine, "--out",
                           str(folder), "--max-parallel", str(parallel), *extra], cwd=REPO, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{engine}: the sweep failed\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="local,slurm,ray")
    parser.add_argument("--max-parallel", type=int, default=2)
    args = parser.parse_args()
    from tests.engines.ray_cluster import RayCluster, cluster_env

    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}
    work = Path(tempfile.mkdtemp(prefix="clbs-", dir="/tmp"))
    print(f"load average before: {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs; folders in {work}")
    times, results = {}, {}
    for engine in args.engines.split(","):
        folder = work / engine
        if engine == "slurm":
            script = REPO / "tests/engines/slurm/cluster.sh"
            started = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True)
            if started.returncode != 0:
                print(f"slurm: skipped ({started.stderr.strip()[-300:]})")
                continue
            conf = subprocess.run(["bash", str(script), "env"], capture_output=True, text=True).stdout
            times[engine] = sweep(engine, folder, args.max_parallel, {**env, "SLURM_CONF": conf.split("=")[1].strip()})
        elif engine == "ray":
            cluster = RayCluster(work / "ray-cluster", cluster_env(REPO))
            cluster.folder.mkdir()
            try:
                begin = time.perf_counter()
                cluster.start(workers=2, cpus_per_worker=2)
                print(f"ray: 3-node cluster up in {time.perf_counter() - begin:.0f} s (not timed below)")
                times[engine] = sweep(engine, folder, args.max_parallel, env, "--ray-address", cluster.address)
            finally:
                cluster.stop()
        else:
            times[engine] = sweep(engine, folder, args.max_parallel, env)
        results[engine] = accuracies(folder)
    base = times.get("local")
    for engine, seconds in times.items():
        ratio = f"  local/{engine} {base / seconds:.2f}" if base else ""
        same = "yes" if results[engine] == results.get("local", results[engine]) else "NO"
        print(f"{engine:6s} {seconds:7.1f} s{ratio}  accuracies equal to local: {same}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
