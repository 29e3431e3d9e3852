"""`clbench sweep --status FOLDER` reads each job's state, host, attempts, progress and last error from the sweep
folder alone; the sweep's folder option is spelled like run's (--out/-o, --folder kept); flags read as flags."""
from __future__ import annotations

import json
import os
import re
import socket

import pytest

from clbench.sweep import driver
from clbench.sweep.launchers import make_launcher
from clbench.sweep.status import sweep_status
from tests.test_sweep import fake_execute, fake_spec


def job_block(lines: list[str], job_id: str) -> list[str]:
    """The lines of one job in the rendered table: its row (the short id opens it, once), then the lines under
    it (a wrapped run name, the last error) up to the next job's row or the caption."""
    (start,) = [n for n, line in enumerate(lines) if line.startswith(job_id[:8])]
    end = start + 1
    while end < len(lines) and lines[end].startswith(" "):
        end += 1
    return lines[start:end]


def test_status_shows_state_host_attempts_and_last_error(cli, tmp_path, monkeypatch):
    spec = fake_spec(tmp_path, [0, 1, 2, 3])
    result = driver.run_sweep(spec, make_launcher("local", spec, retries=1),
                              execute=fake_execute(fail_once=(1,), fail_always=(2,)))
    by_seed = {j.config["seed"]: j for j in result.jobs}
    # seed 3: pretend its worker was killed without a word while running (its pid is gone)
    status_file = by_seed[3].folder / ".status.json"
    for path in by_seed[3].folder.glob("fake-*.json"):
        path.unlink()
    status = json.loads(status_file.read_text())
    dead = max(os.getpid() + 100000, 4194000)
    status_file.write_text(json.dumps({**status, "state": "running", "pid": dead, "host": socket.gethostname()}))

    reports = {r.job.config["seed"]: r for r in sweep_status(spec.folder)}
    assert [reports[s].state for s in range(4)] == ["done", "done", "failed", "lost"]
    assert [reports[s].attempts for s in range(3)] == [1, 2, 2]
    assert reports[0].error == "" and reports[1].error == "RuntimeError: flaky"
    assert reports[2].error == "ValueError: boom 2" and reports[0].host == socket.gethostname()
    assert reports[0].steps_done == reports[0].steps_total == 2 and reports[3].steps_done == 0

    code, out, err = cli("sweep", "--status", str(spec.folder), "--format", "json")  # what scripts read
    assert code == 0, err
    shown = {j["job"]: j for j in json.loads(out)}
    assert set(shown) == {j.id for j in result.jobs}
    assert [shown[by_seed[s].id]["state"] for s in range(4)] == ["done", "done", "failed", "lost"]
    assert shown[by_seed[1].id]["error"] == "RuntimeError: flaky" and shown[by_seed[1].id]["attempts"] == 2
    assert [a["state"] for a in shown[by_seed[1].id]["history"]] == ["failed", "done"]

    for width in (80, 200):  # the table as a person sees it, at a terminal's width fixed here
        monkeypatch.setenv("COLUMNS", str(width))
        code, out, err = cli("sweep", "--status", str(spec.folder))
        assert code == 0, err
        lines = out.splitlines()
        assert max(len(line) for line in lines) <= width, out
        for seed, (state, error) in enumerate([("done", ""), ("done", "RuntimeError: flaky"),
                                               ("failed", "ValueError: boom 2"), ("lost", "")]):
            row, *under = job_block(lines, by_seed[seed].id)
            assert state in row and error in row + "".join(under), out
        words = " ".join(out.split())
        assert "2 done" in words and "1 failed" in words and "1 lost" in words


def test_a_long_error_is_cut_in_the_table_and_whole_in_the_job_view(cli, tmp_path, monkeypatch):
    """An error holding a record path and a traceback: the table shows its first line, the path relative to the
    sweep folder, cut to the terminal; `--job ID` (a prefix will do) shows every attempt and the whole error."""
    from clbench.sweep.jobs import mark

    spec = fake_spec(tmp_path, [0, 1])
    result = driver.run_sweep(spec, make_launcher("local", spec), execute=fake_execute())
    victim = result.jobs[0]
    record = victim.folder / "records" / ("x" * 60 + ".json")
    error = f"RecordError: {record}: cannot be resumed, it was written by another run " + "word " * 30
    mark(victim.folder, "failed", error=error + "\nTraceback (most recent call last):\n  line 2")
    for width in (80, 120):
        monkeypatch.setenv("COLUMNS", str(width))
        code, out, err = cli("sweep", "--status", str(spec.folder))
        assert code == 0, err
        shown = job_block(out.splitlines(), victim.id)[-1]  # the error: its column, or a line under the row
        assert len(shown) <= width and shown.rstrip().endswith("…") and str(tmp_path) not in shown, out
        assert "Traceback" not in out and "RecordError: jobs/" in shown
    code, out, err = cli("sweep", "--status", str(spec.folder), "--job", victim.id[:6])
    assert code == 0, err
    assert error in out and "Traceback (most recent call last):" in out and "attempt 1" in out
    assert victim.id in out and str(victim.folder) in out
    code, out, err = cli("sweep", "--status", str(spec.folder), "--job", "zz")
    assert code == 2 and "--job zz: no job" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--status", "NOWHERE"], "not a sweep folder"),
    (["SPEC", "--status", "FOLDER"], "--status FOLDER only reads a sweep folder"),
    (["SPEC", "--out", "a", "--folder", "b"], "give the sweep folder once"),
    (["SPEC", "--job", "abc"], "--job and --format go with --status FOLDER"),
])
def test_status_and_folder_misuse_is_one_line_exit_2(cli, tmp_path, args, message):
    spec = fake_spec(tmp_path, [0])
    args = [str(spec.source) if a == "SPEC" else str(tmp_path / a) if a in ("NOWHERE", "FOLDER") else a
            for a in args]
    code, out, err = cli("sweep", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("spelling", ["--out", "-o", "--folder"])
def test_sweep_folder_is_spelled_like_run_and_the_old_spelling_still_works(cli, tmp_path, spelling):
    spec = fake_spec(tmp_path, [0, 1])
    target = tmp_path / f"elsewhere{spelling}"
    code, out, err = cli("sweep", str(spec.source), spelling, str(target), "--dry-run")
    assert code == 0, err
    assert str(target) in out and not target.exists()  # a dry run writes nothing


def test_help_shows_flags_as_flags(cli, monkeypatch):
    """typer would list `--dry-run <bool>` as if it took a value; flags (and --help) are shown bare."""
    monkeypatch.setenv("COLUMNS", "200")
    for command in (["sweep"], ["run"], ["diagnose"], []):
        code, out, _ = cli(*command, "--help")
        assert code == 0 and "<bool>" not in out, command
    code, out, _ = cli("sweep", "--help")
    assert re.search(r"--dry-run\s+list the jobs", out) and re.search(r"--out\s+-o\s+FOLDER", out)
    assert "--folder" not in out  # the old spelling works but is not advertised
    code, out, _ = cli("run", "--help")
    assert re.search(r"--out\s+-o\s+<str>", out)


def test_a_submitted_job_is_pending_in_the_board_and_its_status_file_and_old_folders_read_the_same(tmp_path):
    from clbench.sweep import spec as sw
    from clbench.sweep.jobs import JobBoard, mark, read_status
    from clbench.sweep.status import job_report

    job, old = sw.expand(fake_spec(tmp_path, [0, 1]))
    board = JobBoard([job, old])
    board.submitted(job.id)
    assert board.states[job.id].state == read_status(job.folder)["state"] == job_report(job).state == "pending"
    assert job_report(old).state == "not started"
    mark(old.folder, "queued", queued=1.0, attempt=1)  # what a sweep folder of an older clbench holds
    assert job_report(old).state == "pending"
    mark(old.folder, "running", started=2.0, host="h")
    assert job_report(old).state == "running"
