"""One writer per record: acquirers of a record take turns (a kernel lock on its folder), so of two resumes
started together one is refused, and a lock whose process is gone is taken over, by one of several contenders
only."""
from __future__ import annotations

import json
import multiprocessing
import os
import socket
import sys
from pathlib import Path

import pytest

from clbench.core.errors import UsageError
from clbench.protocol.checkpoint import acquire_lock, lock_path, release_lock

NO_SUCH_PID = 2**22 + 12345  # above Linux's largest pid


def holder(record: Path) -> dict:
    return json.loads(lock_path(record).read_text())


def test_a_lock_taken_while_acquiring_refuses_the_second(tmp_path, monkeypatch):
    """Another resume (a live process on this machine) takes the lock between this one's look and its write."""
    record = tmp_path / "r.json"
    lock_path(record).parent.mkdir(parents=True)
    real, calls = socket.gethostname, []

    def meanwhile() -> str:
        if not calls:
            lock_path(record).write_text(json.dumps({"pid": os.getppid(), "host": real()}))
        calls.append(1)
        return real()

    monkeypatch.setattr(socket, "gethostname", meanwhile)
    with pytest.raises(UsageError, match=f"being written by process {os.getppid()}"):
        acquire_lock(record)
    assert holder(record)["pid"] == os.getppid()


def test_a_stale_lock_is_taken_over_and_released(tmp_path):
    record = tmp_path / "r.json"
    lock_path(record).parent.mkdir(parents=True)
    for stale in ({"pid": NO_SUCH_PID, "host": socket.gethostname()}, {"pid": os.getppid(), "host": "elsewhere"},
                  {"pid": os.getpid(), "host": socket.gethostname()}, "not json"):
        lock_path(record).write_text(stale if isinstance(stale, str) else json.dumps(stale))
        acquire_lock(record)
        assert holder(record) == {"pid": os.getpid(), "host": socket.gethostname()}
        release_lock(record)
        assert not lock_path(record).exists()
    assert sorted(p.name for p in lock_path(record).parent.iterdir()) == []  # no temporary files left


def _contend(record: Path, start, end, results) -> None:
    start.wait()
    try:
        acquire_lock(record)
        results.put("took")
    except UsageError:
        results.put("refused")
    end.wait()  # alive until every contender has tried: the winner's lock is a live process's throughout


@pytest.mark.skipif(sys.platform != "linux", reason="forks the test process")
@pytest.mark.parametrize("stale", [False, True])
def test_of_processes_acquiring_at_once_exactly_one_takes_the_lock(tmp_path, stale):
    record, n = tmp_path / "r.json", 6
    lock_path(record).parent.mkdir(parents=True)
    if stale:
        lock_path(record).write_text(json.dumps({"pid": NO_SUCH_PID, "host": socket.gethostname()}))
    context = multiprocessing.get_context("fork")
    start, end, results = context.Barrier(n), context.Barrier(n), context.Queue()
    workers = [context.Process(target=_contend, args=(record, start, end, results)) for _ in range(n)]
    for w in workers:
        w.start()
    outcomes = sorted(results.get(timeout=60) for _ in workers)
    for w in workers:
        w.join(timeout=60)
    assert outcomes == ["refused"] * (n - 1) + ["took"]
    assert holder(record)["pid"] in {w.pid for w in workers}
    assert [p.name for p in lock_path(record).parent.iterdir()] == ["running.lock"]

