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


def run_parallel_and_sequential(folder, **config):
    """The same run with --jobs 2 and sequentially: (parallel, sequential), each `run`'s (path, record).

    CPU numbers depend on the intra-op thread count: --jobs 2 gives each order half of the threads, so the
    sequential reference runs with that many too."""
    from clbench.protocol.config import RunConfig
    from clbench.protocol.continual import run

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # --jobs 2 then gives each order one thread
    try:
        parallel = run(RunConfig(out=str(folder / "par"), jobs=2, **config))
        torch.set_num_threads(1)
        sequential = run(RunConfig(out=str(folder / "seq"), **config))
    finally:
        torch.set_num_threads(threads)
    return parallel, sequential
