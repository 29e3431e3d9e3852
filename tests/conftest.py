from __future__ import annotations

import sys

import pytest
import torch

torch.set_num_threads(1)  # tests use tiny tensors: extra threads only add contention


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run the real `clbench` entry point in-process: returns (exit code, stdout, stderr)."""

    def invoke(*args: str) -> tuple[int, str, str]:
        from clbench.cli import main

        monkeypatch.setattr(sys, "argv", ["clbench", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke
