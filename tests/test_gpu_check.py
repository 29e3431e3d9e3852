"""benchmarks/gpu_check.sh, the first GPU run, rehearsed here under the GPU machine's conditions: clbench not
installed (the repository on the path only), only the packages that machine holds (tests/gpu_machine), the
carried wheels of benchmarks/gpu_wheels.txt in a folder of their own, and `--device cpu --quick`. A missing
module, a wheel left off the list or a CLI command that fails would fail here rather than on the GPU."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gpu_check(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "tests" / "gpu_machine"))
    try:
        import sitecustomize as gpu_machine  # the file, imported as a module (it does nothing on import here)
    finally:
        sys.path.pop(0)
    if Path(gpu_machine.__file__).resolve().parent != ROOT / "tests" / "gpu_machine":
        pytest.fail(f"another sitecustomize was imported: {gpu_machine.__file__}")
    base = tmp_path_factory.mktemp("gpu_check")
    site, carried, out = gpu_machine.build(base / "site"), gpu_machine.carry(base / "carried", ROOT / "benchmarks"
                                                                               / "gpu_wheels.txt"), base / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLBENCH_", "PYTHON"))}
    env.update(CLBENCH_GPU_SITE=str(site), CLBENCH_CARRIED=str(carried), PYTHON=sys.executable,
               PYTHONPATH=str(ROOT / "tests" / "gpu_machine"))
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(out), "--device", "cpu", "--quick"],
                          cwd=base, env=env, capture_output=True, text=True, timeout=900)
    return done, out


def test_every_step_passes_without_clbench_installed(gpu_check):
    done, out = gpu_check
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:] + (out / "smoke.log").read_text()[-4000:]
    preflight = (out / "preflight.txt").read_text()
    for name, where in [("clbench", ROOT / "clbench"), ("clbench.condensers", ROOT / "condensers"),
                        ("clbench.strategies", ROOT / "strategies")]:
        assert f"{name}:  {where}/__init__.py" in preflight, preflight  # from the checkout, not an install
    assert "avalanche: 0.6.0" in preflight and "/carried/avalanche/" in preflight  # from the carried wheels
    assert "gpu_stubs/wandb" in preflight


def test_the_smoke_run_covers_every_command_and_leaves_records(gpu_check):
    _, out = gpu_check
    rows = list(csv.DictReader((out / "smoke.tsv").open(), delimiter="\t"))
    assert [r["command"].split()[1] for r in rows] == ["run"] * 2 + ["condense", "compare"]
    assert all(r["exit"] == "0" for r in rows), rows
    assert "--jobs 2" in rows[0]["command"]  # two orders side by side on one device
    compared = json.loads((out / "smoke.log").read_text().split("== clbench compare")[-1].split("\n", 1)[1])
    assert {row["condenser"] for row in compared} == {"dm", "herding"}


def test_the_device_check_ran_after_it(gpu_check):
    _, out = gpu_check
    result = json.loads((out / "device_check.json").read_text())
    assert result["facts"]["device"] == "cpu" and result["condense"]["dm"]["fp32"]["s_per_it"] > 0
    assert (out / "device_check.md").read_text().startswith("# Device check")
