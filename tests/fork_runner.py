"""Many `clbench` command lines, each in its own process, without paying Python's and torch's start-up for each.

Run as a script (`python -m tests.fork_runner WORKERS`), it reads a JSON list of cases from stdin
(`{"id", "argv", "cwd", "env", "stdout", "stderr"}`), imports clbench's heavy dependencies once, then forks one
child per case (at most WORKERS at a time): the child is a fresh copy of a process that has imported but never
computed, so no thread pool or library state crosses from one case to the next. Each child runs the real
`clbench.cli.main` with the case's argv, working folder and environment, its stdout and stderr in files, and
exits with main's exit code. The script prints one JSON object: each case's id and exit code.

A case that needs a different import path (installed plugin distributions) runs as a plain subprocess instead.
"""
from __future__ import annotations

import json
import os
import sys
import traceback


def _child(case: dict) -> None:
    """In the forked child: become the case's `clbench` process; never returns."""
    code = 1
    try:
        out = os.open(case["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(case["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1)
        os.dup2(err, 2)
        sys.stdout = open(1, "w", closefd=False, buffering=1)
        sys.stderr = open(2, "w", closefd=False, buffering=1)
        os.environ.update(case["env"])
        os.chdir(case["cwd"])
        sys.argv = ["clbench", *case["argv"]]
        from clbench.cli import main

        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # what a real process would print for an uncaught exception
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def run_all(cases: list[dict], workers: int) -> dict[str, int]:
    """Fork one child per case, `workers` at a time, from this (single-threaded) process; their exit codes."""
    import avalanche.benchmarks  # noqa: F401
    import torch  # noqa: F401  the imports every case pays for, paid once

    import clbench.cli  # noqa: F401

    running: dict[int, str] = {}
    codes: dict[str, int] = {}
    pending = list(cases)
    while pending or running:
        while pending and len(running) < workers:
            case = pending.pop(0)
            pid = os.fork()
            if pid == 0:
                _child(case)
            running[pid] = case["id"]
        pid, status = os.wait()
        codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
    return codes


if __name__ == "__main__":
    print(json.dumps(run_all(json.load(sys.stdin), int(sys.argv[1]))))
