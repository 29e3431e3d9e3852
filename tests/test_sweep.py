"""`clbench sweep`: spec expansion and stable ids, resuming, gathering, and each engine on this CPU machine
(a local process pool, a local Ray instance with fake GPUs, submitit's mocked Slurm).

Most jobs here are fakes that write a run record of the right shape in a fraction of a second, so that the
engines' behaviour (parallelism, GPUs, retries, failures) is tested without training; one end-to-end test
runs real jobs on digits.
"""
from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clbench.core.errors import UsageError
from clbench.sweep import driver, slurm_array
from clbench.sweep import jobs as jobfiles
from clbench.sweep import spec as sw
from clbench.sweep.launchers import LocalLauncher, RayLauncher, make_launcher, parse_minutes, unmet_request

FAKE_SPEC = """
condenser = "random"
dataset = "digits"
memory = "3ipc"
steps = 2
profile = "quick"
device = "{device}"
seed = {seeds}
orders = 1
"""


# -- fakes -----------------------------------------------------------------------------------------------
def write_fake_record(job: sw.Job, accuracy: float = 50.0) -> Path:
    """A complete one-order record shaped like runner.run's."""
    from clbench.core.atomic import atomic_write_json
    from clbench.records.schema import SCHEMA, SCHEMA_VERSION
    from clbench.records.summary import summarise

    order = job.order
    steps = [
        {"step": t, "classes": [2 * t, 2 * t + 1], "seen_classes": list(range(2 * t + 2)), "ipc": 3,
         "memory_size": 6 * (t + 1), "accuracies": [accuracy + order - 10 * t],
         "accuracy_mean": accuracy + order - 10 * t,
         "class_accuracy": {str(c): accuracy - 5 * t for c in range(2 * t + 2)},
         "condense_seconds": 0.5, "train_seconds": 1.0, "condenser_facts": {}}
        for t in range(2)
    ]
    entry = {"order": order, "class_order": list(range(4)), "complete": True, "steps": steps}
    c = job.config
    record = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "kind": "continual",
        "run_id": f"fake-{job.id}", "complete": True, "created": "2026-01-01T00:00:00",
        "config": {"condenser": c["condenser"], "dataset": c["dataset"], "memory": c["memory"],
                   "steps": c["steps"], "orders": [order], "profile": "quick", "seed": c["seed"],
                   "device": "cpu", "network": "convnet", "networks_per_step": 1, "train": {"epochs": 1},
                   "condenser_options": {}},
        "environment": {"host": "test", "device": "cpu"},
        "orders": [entry], "summary": summarise([entry]),
    }
    path = job.folder / f"fake-{job.id}.json"
    atomic_write_json(path, record)
    return path


def fake_work(job: sw.Job, sleep: float = 0.0, fail_once: tuple = (), fail_always: tuple = (),
              crash: tuple = ()) -> Path:
    """Behaviour chosen by the job's seed: fine, failing the first time, failing every time, or crashing."""
    seed = job.config["seed"]
    if seed in crash:
        os._exit(3)  # no exception, no status: the process just dies
    if seed in fail_always:
        raise ValueError(f"boom {seed}")
    marker = job.folder / "failed-once"
    if seed in fail_once and not marker.exists():
        marker.touch()
        raise RuntimeError("flaky")
    time.sleep(sleep)
    return write_fake_record(job, accuracy=40.0 + seed)


def run_fake(job: sw.Job, **behaviour) -> str:
    return jobfiles.execute_job(job, work=functools.partial(fake_work, **behaviour))


def fake_execute(**behaviour):
    """The real worker entry point around a fake job (picklable by reference, for spawn and Ray)."""
    return functools.partial(run_fake, **behaviour)


def fake_spec(tmp_path: Path, seeds: list[int], device: str = "cpu", extra: str = "") -> sw.SweepSpec:
    text = FAKE_SPEC.format(device=device, seeds=json.dumps(seeds)) + extra
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return sw.load_spec(path, folder=tmp_path / "sweep")


def by_seed(result: driver.SweepResult) -> dict[int, jobfiles.JobState]:
    return {result.board.jobs[j].config["seed"]: s for j, s in result.board.states.items()}


def attempts_intervals(jobs: list[sw.Job]) -> list[tuple[float, float, str | None]]:
    """(start, end, CUDA_VISIBLE_DEVICES) of every attempt of every job, from the workers' status files."""
    out = []
    for job in jobs:
        status = jobfiles.read_status(job.folder)
        for attempt in [*status.get("history", []), status]:
            if attempt.get("started") and attempt.get("ended"):
                out.append((attempt["started"], attempt["ended"], attempt.get("cuda_visible_devices")))
    return out


def max_overlap(intervals: list[tuple[float, float, str | None]]) -> int:
    events = sorted([(s, 1) for s, _, _ in intervals] + [(e, -1) for _, e, _ in intervals])
    best = now = 0
    for _, delta in events:  # an end sorts before a start at the same instant
        now += delta
        best = max(best, now)
    return best


def assert_distinct_gpus_when_overlapping(intervals) -> None:
    for i, (s1, e1, g1) in enumerate(intervals):
        for s2, e2, g2 in intervals[i + 1:]:
            if s1 < e2 and s2 < e1:
                assert g1 != g2, "two jobs ran on the same GPU at once"


# -- spec and ids ----------------------------------------------------------------------------------------
GRID = """
condenser = ["random", "herding"]
dataset = "digits"
memory = ["3ipc", "5ipc"]
steps = 2
orders = 2
profile = "quick"
device = "cpu"

[train]
epochs = 1
dsa = false

[opt.herding]
embed_seed = 3

[sweep]
folder = "{folder}"
retries = 2
"""


def test_spec_expands_to_one_job_per_configuration_and_order(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(GRID.format(folder=tmp_path / "s"))
    spec = sw.load_spec(path)
    jobs = sw.expand(spec)
    assert len(spec.runs) == 4 and spec.orders == [0, 1] and len(jobs) == 8 and spec.retries == 2
    assert len({j.id for j in jobs}) == 8 and len({j.run_key for j in jobs}) == 4
    assert all(j.config["orders"] == 1 and j.config["first_order"] == j.order for j in jobs)
    assert all(j.folder == tmp_path / "s" / "jobs" / j.id for j in jobs)
    herding = [j for j in jobs if j.config["condenser"] == "herding"]
    assert all(j.config["opt"] == {"embed_seed": 3} for j in herding)
    assert all(j.config["opt"] == {} for j in jobs if j.config["condenser"] == "random")
    assert all(j.config["train"] == {"epochs": 1, "dsa": False} for j in jobs)


def test_job_ids_are_stable_and_follow_the_configuration(tmp_path):
    def ids(text: str, folder: str = "a") -> list[str]:
        path = tmp_path / "spec.toml"
        path.write_text(text)
        return [j.id for j in sw.expand(sw.load_spec(path, folder=tmp_path / folder))]

    base = ids(GRID.format(folder="x"))
    assert ids(GRID.format(folder="x")) == base  # same configuration -> same ids
    assert ids(GRID.format(folder="x"), folder="elsewhere") == base  # where it is written is not hashed
    reordered = GRID.format(folder="x").replace("epochs = 1\ndsa = false", "dsa = false\nepochs = 1")
    assert ids(reordered) == base  # canonical JSON: key order does not matter
    changed = ids(GRID.format(folder="x").replace("epochs = 1", "epochs = 2"))
    assert not set(changed) & set(base)  # a different configuration -> different ids
    assert ids("data_dir = '/tmp'\n" + GRID.format(folder="x")) == base  # where the data lives is not hashed
    # The id is a contract (completed jobs are found by it): pinned for one configuration.
    config = {"condenser": "dm", "dataset": "cifar10", "memory": "10ipc", "steps": 5, "orders": 1,
              "first_order": 3, "seed": 0, "opt": {}, "train": {}, "out": "anywhere"}
    assert sw.job_id(config) == sw.job_id({**config, "out": "elsewhere", "jobs": 4})
    assert sw.job_id(config) == "b1d30f736dd1e6f6"  # ID_VERSION 2 (was 8be00ee4438f3ac1 under version 1)
    assert sw.canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'


def test_orders_list_variants_and_duplicates(tmp_path):
    spec = sw.parse_spec({"dataset": "digits", "orders": [0, 3], "variants": [{"train": {"epochs": 1}},
                                                                            {"train": {"epochs": 2}},
                                                                            {"train": {"epochs": 2}}]},
                         folder=tmp_path)
    jobs = sw.expand(spec)
    assert spec.orders == [0, 3] and len(spec.runs) == 2  # the repeated variant is one run, not two
    assert sorted({j.order for j in jobs}) == [0, 3] and len(jobs) == 4
    spec = sw.parse_spec({"orders": 2, "first_order": 5}, folder=tmp_path)
    assert spec.orders == [5, 6]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"condenser": ["random"], "colour": 1}, "unknown keys colour"),
        ({"out": "x"}, "[sweep] folder"),
        ({"memory": []}, "empty grid axis"),
        ({"seed": [1, 1]}, "lists a value twice"),
        ({"orders": 0}, "orders = 0"),
        ({"orders": [0, 0]}, "lists an order twice"),
        ({"condenser": "random", "opt": {"dm": {"iterations": 1}}}, "[opt.dm] but 'dm' is not among"),
        ({"sweep": {"launcher": "kubernetes"}}, "launcher = 'kubernetes'"),
        ({"sweep": {"parallel": 2}}, "unknown keys in [sweep]: parallel"),
        ({"variants": [{"orders": 2}]}, "[[variants]]"),
    ],
)
def test_bad_spec_is_a_usage_error(tmp_path, data, message):
    with pytest.raises(UsageError) as info:
        sw.parse_spec(data, folder=tmp_path)
    assert message in str(info.value)


def test_bad_run_configuration_fails_before_anything_runs(tmp_path):
    spec = sw.parse_spec({"dataset": "digits", "condenser": ["random", "herding"],
                          "opt": {"herding": {"nope": 1}}}, folder=tmp_path / "s")
    with pytest.raises(UsageError, match="unknown option 'nope'"):
        driver.plan(spec, "local")
    assert not (tmp_path / "s" / "jobs").exists()
    with pytest.raises(UsageError, match="unknown keys in \\[ray\\]: gpu"):
        make_launcher("ray", sw.parse_spec({"ray": {"gpu": 1}}, folder=tmp_path))
    # a step count that does not divide the dataset's classes is refused on the driver, not in each job
    spec = sw.parse_spec({"dataset": "digits", "steps": 3}, folder=tmp_path / "t")
    with pytest.raises(UsageError, match="--steps 3 does not divide the 10 classes"):
        driver.plan(spec, "local")
    assert not (tmp_path / "t" / "jobs").exists()
    # so are condenser options that cannot work on the dataset's images (IDM's parts of 8 px digits)
    spec = sw.parse_spec({"dataset": "digits", "condenser": "idm", "opt": {"idm": {"factor": 3}}},
                         folder=tmp_path / "u")
    with pytest.raises(UsageError, match="condenser 'idm' on digits: factor=3 does not divide"):
        driver.plan(spec, "local")
    assert not (tmp_path / "u" / "jobs").exists()


def test_engines_are_not_imported_by_clbench_or_the_cli():
    import subprocess

    code = ("import sys, clbench, clbench.cli, clbench.sweep.spec, clbench.sweep.launchers, clbench.cli.sweep; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'submitit')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_parse_minutes():
    assert parse_minutes(90) == 90
    assert parse_minutes("01:30:00") == 90
    assert parse_minutes("2-00:00:00") == 2880
    assert parse_minutes("45") == 45
    with pytest.raises(UsageError):
        parse_minutes("soon")


# -- local process pool ----------------------------------------------------------------------------------
def test_local_pool_gpus_retries_failures_and_resume(tmp_path):
    spec = fake_spec(tmp_path, [0, 1, 2, 3], device="auto", extra='[local]\ngpus = ["0", "1"]\n')
    launcher = make_launcher("local", spec, retries=1)
    assert isinstance(launcher, LocalLauncher)
    result = driver.run_sweep(spec, launcher, execute=fake_execute(sleep=0.3, fail_once=(2,), fail_always=(3,)))
    states = by_seed(result)
    assert [states[s].state for s in range(4)] == ["done", "done", "done", "failed"]
    assert [states[s].attempts for s in range(4)] == [1, 1, 2, 2]  # flaky: retried once; broken: 1 + 1 retry
    assert states[3].error == "ValueError: boom 3"
    log = Path(states[3].log)
    assert log.is_file() and "ValueError: boom 3" in log.read_text()  # the traceback lands in the job's log
    intervals = attempts_intervals(result.jobs)
    assert len(intervals) == 6 and max_overlap(intervals) <= 2
    assert {g for _, _, g in intervals} <= {"0", "1"}
    assert_distinct_gpus_when_overlapping(intervals)

    # Gathered: one run record per configuration (here one per seed); the failed seed has none.
    assert len(result.records) == 3
    gathered = json.loads(result.records[0].read_text())
    assert gathered["complete"] and gathered["orders"][0]["order"] == 0
    from clbench.records.record import load_record
    from clbench.records.summary import summarise

    assert load_record(result.records[0])["summary"] == summarise(gathered["orders"])

    # Fixed: a re-run runs the failed job only; the others are skipped.
    again = driver.run_sweep(spec, make_launcher("local", spec), execute=fake_execute())
    states = by_seed(again)
    assert [states[s].skipped for s in range(4)] == [True, True, True, False]
    assert all(s.state == "done" for s in states.values()) and len(again.records) == 4

    # One record deleted: that job alone runs again.
    victim = next(j for j in spec_jobs(spec) if j.config["seed"] == 1)
    jobfiles.complete_record(victim.folder).unlink()
    third = driver.run_sweep(spec, make_launcher("local", spec), execute=fake_execute())
    ran = [seed for seed, s in by_seed(third).items() if not s.skipped]
    assert ran == [1] and by_seed(third)[1].state == "done"


def test_local_job_whose_process_dies_is_reported(tmp_path):
    spec = fake_spec(tmp_path, [0, 1])
    result = driver.run_sweep(spec, make_launcher("local", spec, max_parallel=2), execute=fake_execute(crash=(1,)))
    states = by_seed(result)
    assert states[0].state == "done" and states[1].state == "failed"
    assert states[1].error == "the job's process ended with exit code 3"


def _lost_attempt(job: sw.Job, record: Path, seconds: float) -> subprocess.Popen:
    """An earlier attempt the engine gave up on (its node lost) whose process still holds `record`'s lock and
    ends after `seconds`: its status says 'running' with its pid on this host. A thread reaps it, so that it
    does not linger as a zombie (which would count as alive)."""
    from clbench.core.atomic import atomic_write_json
    from clbench.protocol.checkpoint import lock_path

    lost = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])
    threading.Thread(target=lost.wait, daemon=True).start()
    atomic_write_json(lock_path(record), {"pid": lost.pid, "host": socket.gethostname()})
    jobfiles.mark(job.folder, "running", pid=lost.pid, host=socket.gethostname())
    return lost


def test_a_rerun_waits_for_the_lost_attempt_s_process_before_taking_its_record(tmp_path):
    from clbench.protocol.checkpoint import acquire_lock

    (job,) = driver.plan(fake_spec(tmp_path, [0]), "local")
    record = job.folder / "unfinished.json"
    lost = _lost_attempt(job, record, seconds=1.5)

    def work(job):
        acquire_lock(record)  # what run_job does first; refused while the lost attempt lives
        return write_fake_record(job)

    jobfiles.execute_job(job, work=work)
    assert lost.poll() is not None
    status = jobfiles.read_status(job.folder)
    assert status["state"] == "done" and status["history"][-1]["pid"] == lost.pid


def test_a_lost_attempt_that_outlives_the_grace_is_refused_as_a_live_writer(tmp_path):
    from clbench.protocol.checkpoint import acquire_lock

    (job,) = driver.plan(fake_spec(tmp_path, [0]), "local")
    record = job.folder / "unfinished.json"
    lost = _lost_attempt(job, record, seconds=60)
    try:
        jobfiles.wait_for_earlier_attempt(job.folder, grace_s=0.3)
        with pytest.raises(UsageError, match=f"being written by process {lost.pid}"):
            acquire_lock(record)
    finally:
        lost.kill()


def spec_jobs(spec: sw.SweepSpec) -> list[sw.Job]:
    return sw.expand(spec)


def test_gathered_record_is_incomplete_while_an_order_is_missing(tmp_path):
    spec = sw.parse_spec({"dataset": "digits", "orders": 3, "device": "cpu"}, folder=tmp_path / "s")
    jobs = driver.plan(spec, "local")
    for job in jobs[:2]:
        write_fake_record(job)
    (path,) = jobfiles.gather(spec.folder, jobs)
    record = json.loads(path.read_text())
    assert not record["complete"] and record["sweep"]["missing_orders"] == [2]
    assert [o["order"] for o in record["orders"]] == [0, 1] and record["config"]["orders"] == [0, 1, 2]
    assert record["summary"]["orders_complete"] == 2


def test_second_driver_of_the_same_folder_is_refused(tmp_path):
    with driver.driver_lock(tmp_path):
        with pytest.raises(UsageError, match="another clbench sweep drives this folder"):
            with driver.driver_lock(tmp_path):
                pass


@pytest.mark.slow
def test_end_to_end_local_sweep_on_digits_is_read_by_compare(cli, tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(
        'condenser = "random"\ndataset = "digits"\nmemory = "3ipc"\nsteps = 2\norders = 2\nprofile = "quick"\n'
        'device = "cpu"\nnetworks_per_step = 1\n[train]\nepochs = 1\ndsa = false\n'
        f'[sweep]\nfolder = "{tmp_path / "sweep"}"\nmax_parallel = 2\n'
    )
    code, out, err = cli("sweep", str(spec))
    assert code == 0, err
    assert "2 job(s): 2 done (0 already complete before), 0 failed" in out
    records = list((tmp_path / "sweep" / "records").glob("*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["complete"] and [o["order"] for o in record["orders"]] == [0, 1]
    for order in record["orders"]:
        assert (records[0].parent / order["memory_file"]).is_file()
    code, out, err = cli("compare", str(tmp_path / "sweep" / "records"), "--format", "csv")
    assert code == 0, err
    import csv
    import io

    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert row["condenser"] == "random" and row["orders"] == "2"
    assert float(row["final_accuracy_mean"]) == pytest.approx(record["summary"]["final_accuracy_mean"])

    code, out, err = cli("sweep", str(spec))  # resumes: nothing left to run
    assert code == 0 and "2 done (2 already complete before)" in out


def test_cli_reports_failures_and_how_to_retry(cli, tmp_path, monkeypatch):
    spec = tmp_path / "spec.toml"
    spec.write_text(FAKE_SPEC.format(device="cpu", seeds="[0, 7]") + f'[sweep]\nfolder = "{tmp_path / "s"}"\n')
    monkeypatch.setattr(driver, "execute_job", fake_execute(fail_always=(7,)))  # run_sweep's default
    code, out, err = cli("sweep", str(spec), "--dry-run")
    assert code == 0 and out.count("random") == 2
    code, out, err = cli("sweep", str(spec))
    assert code == 1
    assert "1 done" in out and "1 failed" in out
    assert "ValueError: boom 7" in err and "log:" in err and "job.log" in err
    assert f"clbench sweep {spec} --launcher local" in err and "finished jobs are skipped" in err


# -- Ray -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory):
    """One local Ray instance for the module (starting one takes seconds): 3 CPUs, 2 fake GPUs."""
    ray = pytest.importorskip("ray")
    from clbench.sweep.launchers import start_local_ray

    folder = tmp_path_factory.mktemp("ray-sweep")
    start_local_ray(folder, num_cpus=3, num_gpus=2)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the fakes travel to Ray's workers
    yield folder
    ray.shutdown()


def test_ray_runs_jobs_two_at_a_time_on_fake_gpus(ray_instance, tmp_path):
    spec = fake_spec(tmp_path, [0, 1, 2, 3, 4], extra="[ray]\ngpus_per_job = 1\n")
    launcher = make_launcher("ray", spec, retries=1)
    assert isinstance(launcher, RayLauncher)
    result = driver.run_sweep(spec, launcher, execute=fake_execute(sleep=1.0, fail_once=(3,), fail_always=(4,)))
    states = by_seed(result)
    assert [states[s].state for s in range(5)] == ["done"] * 4 + ["failed"]
    assert states[3].attempts == 2 and states[4].attempts == 2
    assert states[4].error == "ValueError: boom 4"
    intervals = attempts_intervals(result.jobs)
    assert len(intervals) == 7
    assert max_overlap(intervals) <= 2  # 3 CPUs, but only 2 GPUs
    assert {g for _, _, g in intervals} <= {"0", "1"}  # Ray set one GPU per job
    assert_distinct_gpus_when_overlapping(intervals)
    assert len(result.records) == 4
    assert list((ray_instance / "ray").glob("session_*"))  # Ray's temporary files under the sweep's folder


def test_ray_refuses_at_once_a_job_the_cluster_cannot_hold(ray_instance, tmp_path):
    spec = fake_spec(tmp_path, [0], extra="[ray]\ngpus_per_job = 3\n")
    start = time.monotonic()
    with pytest.raises(UsageError, match="asks for 3 GPU\\(s\\).*largest: 2 GPU"):
        driver.run_sweep(spec, make_launcher("ray", spec), execute=fake_execute())
    assert time.monotonic() - start < 10
    assert not jobfiles.read_status(sw.expand(spec)[0].folder)  # nothing was submitted


def test_ray_crashed_worker_is_retried_by_ray_then_reported(ray_instance, tmp_path):
    spec = fake_spec(tmp_path, [0], extra="[ray]\nmax_retries = 1\n")
    result = driver.run_sweep(spec, make_launcher("ray", spec, retries=3), execute=fake_execute(crash=(0,)))
    (state,) = result.board.states.values()
    assert state.state == "failed" and state.error.startswith("worker crashed")
    assert str(ray_instance / "ray") in state.log and "python-core-worker" in state.log  # where to look
    assert state.attempts == 1  # a crash is Ray's to retry (max_retries), not resubmitted by --retries
    status = jobfiles.read_status(result.jobs[0].folder)
    assert status["state"] == "running" and len(status["history"]) == 1  # Ray ran it twice


def test_ray_request_on_a_cluster_without_gpus(tmp_path):
    """device = cuda asks for a GPU; device = auto takes one only where the cluster has some."""
    cpu_only = [{"CPU": 8.0}]
    cuda = sw.expand(sw.parse_spec({"device": "cuda"}, folder=tmp_path))[0]
    auto = sw.expand(sw.parse_spec({"device": "auto"}, folder=tmp_path))[0]
    launcher = RayLauncher(tmp_path)
    assert launcher.request(cuda, cluster_gpus=0) == {"CPU": 1.0, "GPU": 1.0}
    assert unmet_request(launcher.request(cuda, 0), cpu_only)
    assert not unmet_request(launcher.request(auto, 0), cpu_only)
    assert launcher.request(auto, cluster_gpus=4)["GPU"] == 1.0
    assert not unmet_request({"CPU": 1.0, "GPU": 2.0}, [{"CPU": 1.0, "GPU": 1.0}, {"CPU": 4.0, "GPU": 2.0}])
    assert unmet_request({"CPU": 2.0, "GPU": 2.0}, [{"CPU": 1.0, "GPU": 2.0}, {"CPU": 4.0, "GPU": 1.0}])


# -- Slurm (submitit's mocked sbatch/sacct) --------------------------------------------------------------
@pytest.fixture
def mocked_slurm():
    pytest.importorskip("submitit")
    test_slurm = pytest.importorskip("submitit.slurm.test_slurm")
    with test_slurm.mocked_slurm() as mock:
        yield mock


def run_on_mock(mock, handles) -> None:
    """What the cluster would do: run each array task (in-process, in the task's Slurm environment)."""
    from submitit.core import submission

    for handle in handles:
        with mock.job_context(handle.job_id):
            try:
                submission.process_job(handle.paths.folder)
            except Exception:  # the failure is in the task's result file, as on a cluster
                pass


def array_line(handle, option: str) -> str:
    import submitit

    script = submitit.SlurmJob(handle.paths.folder, handle.job_id.split("_")[0]).paths.submission_file.read_text()
    (line,) = [text for text in script.splitlines() if text.startswith(f"#SBATCH --{option}=")]
    return line.split("=", 1)[1]


SLURM = '[slurm]\npartition = "gpu"\ntime = "02:00:00"\narray_parallelism = 2\npoll_seconds = 0.01\n'


def test_slurm_array_script_retries_and_failure_report(mocked_slurm, tmp_path, monkeypatch):
    monkeypatch.setattr(slurm_array, "partition_has_gpus", lambda partition: True)  # a GPU partition
    spec = fake_spec(tmp_path, [0, 1, 2, 3], device="auto", extra=SLURM)
    launcher = make_launcher("slurm", spec, retries=1)
    arrays = []
    submit = launcher.submit

    def submit_and_run(jobs, board, execute):  # a cluster that runs each array as soon as it is submitted
        handles = submit(jobs, board, execute)
        arrays.append(handles)
        run_on_mock(mocked_slurm, handles)
        return handles

    launcher.submit = submit_and_run
    result = driver.run_sweep(spec, launcher, execute=fake_execute(fail_once=(1,), fail_always=(3,)))
    first, second = arrays[0][0], arrays[1][0]
    assert array_line(first, "array") == "0-3%2"  # 4 jobs, at most 2 at once
    assert array_line(first, "partition") == "gpu"
    assert array_line(first, "gpus-per-node") == "1"
    assert array_line(first, "time") == "120"
    assert array_line(second, "array") == "0-1%2"  # the two failures, resubmitted as one array
    assert len(arrays) == 2  # retries = 1: no third array
    states = by_seed(result)
    assert [states[s].state for s in range(4)] == ["done", "done", "done", "failed"]
    assert states[3].attempts == 2 and states[3].error == "ValueError: boom 3"
    assert states[3].log.startswith(str(arrays[1][1].paths.stderr))  # its last attempt's log
    assert len(result.records) == 3
    plan = jobfiles.read_plan(spec.folder)
    assert set(plan["engine_state"]["tasks"]) == {j.id for j in result.jobs}


def test_slurm_device_auto_asks_for_a_gpu_only_where_the_partition_has_some(mocked_slurm, tmp_path, monkeypatch):
    """Issue 30, S1: device = auto on a cluster without GPUs used to ask for one, which sbatch refuses."""
    asked = []
    monkeypatch.setattr(slurm_array, "partition_has_gpus", lambda partition: asked.append(partition) or False)
    spec = fake_spec(tmp_path, [0], device="auto", extra=SLURM)
    launcher = make_launcher("slurm", spec, detach=True)
    driver.run_sweep(spec, launcher, execute=fake_execute())
    assert asked == ["gpu"] and array_line(next(iter(_handles(spec))), "gpus-per-node") == "0"
    assert launcher.notes and "no GPUs" in launcher.notes[0] and "gpus = 1" in launcher.notes[0]


def test_slurm_gpus_per_job_rules(tmp_path):
    auto = sw.expand(sw.parse_spec({"device": "auto"}, folder=tmp_path))[0]
    cuda = sw.expand(sw.parse_spec({"device": "cuda"}, folder=tmp_path))[0]
    cpu = sw.expand(sw.parse_spec({"device": "cpu"}, folder=tmp_path))[0]

    def never():
        raise AssertionError("the cluster is asked only for device = auto")

    assert slurm_array.gpus_per_job(2, [auto], never) == (2, None)  # the spec's gpus win
    assert slurm_array.gpus_per_job(None, [cuda, auto], never) == (1, None)
    assert slurm_array.gpus_per_job(None, [cpu], never) == (0, None)
    assert slurm_array.gpus_per_job(None, [auto], lambda: True) == (1, None)
    assert slurm_array.gpus_per_job(None, [auto], lambda: False)[0] == 0
    gpus, note = slurm_array.gpus_per_job(None, [auto], lambda: None)
    assert gpus == 1 and "could not say" in note


def test_partition_has_gpus_reads_sinfo(tmp_path, monkeypatch):
    """A fake sinfo on the PATH: GPU resources, none, and a sinfo that fails."""
    def fake_sinfo(body: str) -> None:
        script = tmp_path / "sinfo"
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")

    fake_sinfo('echo "(null)"; echo "(null)"')
    assert slurm_array.partition_has_gpus("cpu") is False
    fake_sinfo('echo "(null)"; echo "gpu:a100:4(S:0-1)"')
    assert slurm_array.partition_has_gpus(None) is True
    fake_sinfo('echo "sinfo: error: Unable to contact slurm controller" >&2; exit 1')
    assert slurm_array.partition_has_gpus("gpu") is None


def test_slurm_detach_refuse_resubmit_and_attach(mocked_slurm, tmp_path):
    spec = fake_spec(tmp_path, [0, 1], device="cpu", extra=SLURM)
    execute = fake_execute()
    detached = make_launcher("slurm", spec, detach=True)
    result = driver.run_sweep(spec, detached, execute=execute)
    assert result.board.counts()["pending"] == 2 and not result.records
    assert array_line(next(iter(_handles(spec))), "gpus-per-node") == "0"  # device = cpu: no GPU asked
    with pytest.raises(UsageError, match="still queued or running.*--attach"):
        driver.run_sweep(spec, make_launcher("slurm", spec), execute=execute)
    run_on_mock(mocked_slurm, _handles(spec))  # the cluster runs them while no driver watches
    attached = driver.attach_sweep(spec.folder, make_launcher("slurm", spec), execute=execute)
    assert all(s.state == "done" for s in attached.board.states.values()) and len(attached.records) == 2


def _handles(spec: sw.SweepSpec) -> list:
    import submitit

    tasks = jobfiles.read_plan(spec.folder)["engine_state"]["tasks"]
    return [submitit.SlurmJob(spec.folder / "slurm", t["engine_id"]) for t in tasks.values()]


def test_per_condenser_options_follow_each_run_s_final_condenser():
    """[opt.NAME] reaches a run by the condenser it ends with, a variant's included; a variant's own opt wins."""
    from clbench.sweep.spec import parse_spec

    data = {"dataset": "digits", "condenser": "dm", "variants": [{}, {"condenser": "ddm"},
                                                                 {"condenser": "ddm", "opt": {"iterations": 3}}],
            "opt": {"lr": 2.0, "dm": {"iterations": 7}, "ddm": {"iterations": 9}}}
    runs = [(r["condenser"], r["opt"]) for r in parse_spec(data).runs]
    assert runs == [("dm", {"lr": 2.0, "iterations": 7}), ("ddm", {"lr": 2.0, "iterations": 9}),
                    ("ddm", {"lr": 2.0, "iterations": 3})]


def test_a_byte_order_mark_is_read_as_utf8(tmp_path):
    from clbench.protocol.config import read_toml

    path = tmp_path / "c.toml"
    path.write_bytes("\ufeffseed = 3\n".encode())
    assert read_toml(path, "--config") == {"seed": 3}


def test_static_sweep_gives_the_sets_of_one_condense_and_compare_reads_it(cli, tmp_path):
    """`kind = "static"`: a grid of `clbench condense` configurations, one job per synthetic set; the gathered
    record of each configuration holds the very sets (same seeds, same accuracies) that one `clbench condense
    --sets 2` makes, and compare and resume read it as a static record."""
    from clbench.protocol.static import StaticConfig, run_static

    spec = tmp_path / "static.toml"
    spec.write_text(
        'kind = "static"\ncondenser = ["random", "herding"]\ndataset = "digits"\nipc = 2\nsets = 2\nevals = 1\n'
        'width = 8\nprofile = "quick"\ndevice = "cpu"\n[train]\nepochs = 2\n'
        f'[sweep]\nfolder = "{tmp_path / "sweep"}"\nmax_parallel = 2\n')
    code, out, err = cli("sweep", str(spec), "--dry-run")
    assert code == 0, err
    assert "random digits ipc 2 static" in out and "set" in out
    code, out, err = cli("sweep", str(spec))
    assert code == 0, err
    assert "4 job(s): 4 done" in out
    records = {json.loads(p.read_text())["config"]["condenser"]: (p, json.loads(p.read_text()))
               for p in (tmp_path / "sweep" / "records").glob("*.json")}
    assert set(records) == {"random", "herding"}
    for condenser, (path, record) in records.items():
        assert record["kind"] == "static" and record["complete"] and record["config"]["sets"] == [0, 1]
        assert all((path.parent / s["synthetic_file"]).is_file() for s in record["sets"])
        _, alone = run_static(StaticConfig(condenser=condenser, dataset="digits", ipc=2, sets=2, evals=1, width=8,
                                           profile="quick", device="cpu", train={"epochs": 2},
                                           out=str(tmp_path / "alone" / condenser)))
        assert [s["accuracies"] for s in record["sets"]] == [s["accuracies"] for s in alone["sets"]]
        assert record["summary"]["accuracy"] == alone["summary"]["accuracy"]
    code, out, err = cli("compare", str(tmp_path / "sweep" / "records"), "--format", "csv")
    assert code == 0, err
    assert "herding" in out and "random" in out
    code, out, err = cli("sweep", "--status", str(tmp_path / "sweep"))
    assert code == 0 and "herding digits ipc 2 static" in out and "1/1" in out


def test_static_spec_names_its_own_keys(tmp_path):
    spec = sw.parse_spec({"kind": "static", "ipc": [1, 10], "sets": [0, 3]}, folder=tmp_path)
    jobs = sw.expand(spec)
    assert [(j.config["ipc"], j.config["first_set"], j.config["sets"]) for j in jobs] == [
        (1, 0, 1), (1, 3, 1), (10, 0, 1), (10, 3, 1)]
    assert all(j.kind == "static" and j.run_config().ipc in (1, 10) for j in jobs)
    assert sw.Job.from_dict(jobs[0].to_dict()) == jobs[0] and sw.Job.from_dict(jobs[0].to_dict()).kind == "static"
    # a continual job's id does not depend on there being kinds (sweeps made before resume as they were)
    continual = sw.expand(sw.parse_spec({"dataset": "digits"}, folder=tmp_path))[0]
    assert continual.id == sw._digest({"job": {k: v for k, v in continual.config.items() if k not in sw.NOT_HASHED}})
    # eval_nets is itself a list: a list is one value (every run tests on both), a list of lists an axis
    one = sw.parse_spec({"kind": "static", "sets": 1, "eval_nets": ["convnet", "alexnet"]}, folder=tmp_path)
    assert [r["eval_nets"] for r in one.runs] == [["convnet", "alexnet"]]
    sw.check_runs(one)
    axis = sw.parse_spec({"kind": "static", "sets": 1, "eval_nets": [["convnet"], ["vgg11", "alexnet"]]},
                         folder=tmp_path)
    assert [r["eval_nets"] for r in axis.runs] == [["convnet"], ["vgg11", "alexnet"]]
    text = sw.parse_spec({"kind": "static", "sets": 1, "eval_nets": "convnet, resnet18"}, folder=tmp_path)
    sw.check_runs(text)  # as --eval-nets takes it
    # without `sets`, the profile's count, as clbench condense makes them; a spec that leaves the profile open
    # must say
    assert sw.parse_spec({"kind": "static", "profile": "quick"}, folder=tmp_path).orders == [0, 1]
    assert sw.parse_spec({"kind": "static", "profile": "paper"}, folder=tmp_path).orders == [0, 1, 2, 3, 4]
    for data, message in [({"kind": "static"}, "give `sets`"),
                          ({"kind": "static", "profile": ["paper", "quick"]}, "give `sets`"),
                          ({"kind": "static", "sets": 1, "eval_nets": ["convnet", "alexnot"]}, "alexnot"),
                          ({"kind": "static", "memory": "10ipc"}, "unknown keys memory"),
                          ({"kind": "static", "orders": 2}, "unknown keys orders"),
                          ({"kind": "static", "sets": [1, 1]}, "lists a set twice"),
                          ({"kind": "nope"}, "nope"),
                          ({"kind": "static", "sets": 1, "ipc": 0}, "--ipc 0")]:
        with pytest.raises(UsageError, match=message):
            sw.check_runs(sw.parse_spec(data, folder=tmp_path))
