"""examples/avalanche_condensed_replay.py, a user's own Avalanche script, runs as written (tiny sizes)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "avalanche_condensed_replay.py"


@pytest.mark.slow
def test_the_avalanche_example_runs_with_a_condensed_memory(tmp_path):
    env = {**os.environ, "DATASET": "digits", "STEPS": "2", "EPOCHS": "1", "ITERATIONS": "2", "IPC": "2"}
    done = subprocess.run([sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("experience ")]
    assert len(lines) == 2
    assert "memory 10 synthetic images" in lines[0] and "memory 20 synthetic images" in lines[1]
