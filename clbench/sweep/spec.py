"""Sweeps: a TOML grid of run configurations x class orders, expanded into independent jobs for an engine.

One job is one (run configuration, class order): a `clbench run` with `orders=1, first_order=o`, writing its
own record into its own folder. Its id is a hash of its resolved configuration, so the same job keeps the
same folder across invocations: a job whose record is complete is skipped, which makes re-running a sweep
resume it. The records of one run configuration are then gathered into one run record that `clbench compare`
reads like any other. Scheduling belongs to the engine (clbench.sweep.launchers): this module only plans, runs one
job, and gathers.

A spec (TOML): top-level keys are RunConfig's, as in `clbench run --config`; a list is a grid axis; optional
[[variants]] tables (partial configurations, e.g. `train = { epochs = 300 }`) are crossed with the grid.
    condenser = ["random", "herding", "dm", "ddm"]
    dataset = ["fashion-mnist", "cifar10"]
    memory = ["10ipc", "20ipc"]
    steps = 5
    orders = 5                  # orders 0..4 (or a list: [0, 3])
    profile = "paper"
    [train]                     # training recipe options, every run
    epochs = 1000
    [opt.dm]                    # condenser options, for that condenser ([opt] key = value: for all)
    iterations = 20000
    [sweep]                     # folder (default sweeps/<spec name>), launcher, retries, max_parallel
    folder = "sweeps/paper"
    [slurm]                     # partition, time, gpus, cpus_per_task, mem_gb, array_parallelism, additional, setup
    partition = "gpu"
    [ray]                       # address, num_cpus, num_gpus, gpus_per_job, cpus_per_job, max_retries

A sweep folder:
    .sweep.json                the resolved spec and the job list (what `--attach` reloads)
    jobs/<id>/.job.json        the job's RunConfig
    jobs/<id>/.status.json     written by the worker: queued, running, done or failed; host, GPU, times, error
    jobs/<id>/<run>.json       the job's run record and, beside it, its memory snapshots
    records/<name>.json        one run record per run configuration, gathered from its jobs
(The bookkeeping files are hidden so that `clbench compare` on the folder reads only run records.)
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from clbench.core.errors import ClbenchError, UsageError

ID_VERSION = "clbench.sweep.job/1"  # salt of every job id: bump it when the meaning of a field changes
ID_LENGTH = 16  # hex digits of sha256 kept: 64 bits, no collision in any realistic sweep
NOT_HASHED = ("out", "data_dir", "jobs")  # where and how fast a run goes, not what it computes
ORDER_KEYS = ("orders", "first_order")
LAUNCHERS = ("local", "ray", "slurm")
SWEEP_KEYS = ("folder", "launcher", "retries", "max_parallel")
ENGINE_TABLES = ("local", "ray", "slurm")  # settings checked by the launcher that uses them
SWEEP_FILE = ".sweep.json"
JOB_FILE = ".job.json"
STATUS_FILE = ".status.json"
STATES = ("pending", "running", "done", "failed")


# -- the spec --------------------------------------------------------------------------------------------
@dataclass
class SweepSpec:
    """A resolved spec: the run configurations (RunConfig fields, orders left out) and the class orders."""

    folder: Path
    runs: list[dict[str, Any]]
    orders: list[int]
    launcher: str = "local"
    retries: int = 0
    max_parallel: int | None = None
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)  # [local], [ray], [slurm] tables
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "folder": str(self.folder)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SweepSpec":
        return cls(**{**data, "folder": Path(data["folder"])})


def load_spec(path: str | Path, folder: str | Path | None = None) -> SweepSpec:
    """Read and check a spec file; `folder` overrides its [sweep] folder."""
    from clbench.protocol.config import read_toml

    path = Path(path)
    data = read_toml(path, "sweep spec")
    default_folder = Path("sweeps") / path.stem
    return parse_spec(data, source=str(path), folder=folder, default_folder=default_folder)


def parse_spec(data: dict[str, Any], source: str = "spec", folder: str | Path | None = None,
               default_folder: str | Path = "sweeps/sweep") -> SweepSpec:
    """Top-level RunConfig keys (a list is a grid axis), [opt] / [train] tables, [[variants]], [sweep] and
    the engines' tables. Errors name the key, so a typo fails here and not hours later on a cluster."""
    from clbench.protocol.config import RunConfig

    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    known = set(fields) | {"variants", "sweep", *ENGINE_TABLES}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"{source}: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if "out" in data:
        raise UsageError(f"{source}: `out` is chosen per job; set the sweep's folder with [sweep] folder = ...")

    sweep = _table(data, "sweep", source)
    bad = sorted(set(sweep) - set(SWEEP_KEYS))
    if bad:
        raise UsageError(f"{source}: unknown keys in [sweep]: {', '.join(bad)}; known: {', '.join(SWEEP_KEYS)}")
    orders = _orders(data, source)
    axes: dict[str, list[Any]] = {}
    for key, value in data.items():
        if key in fields and key not in ("opt", "train", *ORDER_KEYS):
            values = value if isinstance(value, list) else [value]
            if not values:
                raise UsageError(f"{source}: `{key} = []` is an empty grid axis; give at least one value")
            if any(isinstance(v, (list, dict)) for v in values):
                raise UsageError(f"{source}: `{key}` takes a value or a list of values")
            if len(set(map(repr, values))) != len(values):
                raise UsageError(f"{source}: `{key}` lists a value twice")
            axes[key] = values
    shared_opt, per_condenser_opt = _opt_tables(_table(data, "opt", source), source)
    train = _table(data, "train", source)
    variants = data.get("variants", [{}])
    if not isinstance(variants, list) or not variants or not all(isinstance(v, dict) for v in variants):
        raise UsageError(f"{source}: [[variants]] must be one or more tables")
    for v in variants:
        bad = sorted(set(v) - (set(fields) - {"out", *ORDER_KEYS}))
        if bad:
            raise UsageError(f"{source}: unknown or forbidden keys in [[variants]]: {', '.join(bad)}")

    defaults = {k: v for k, v in dataclasses.asdict(RunConfig()).items() if k not in ("out", *ORDER_KEYS)}
    condensers = set(axes.get("condenser", [defaults["condenser"]]))
    for name in per_condenser_opt:
        if name not in condensers:
            raise UsageError(f"{source}: [opt.{name}] but {name!r} is not among the condensers of the grid")
    runs: list[dict[str, Any]] = []
    seen: set[str] = set()
    names = list(axes)
    for combo in itertools.product(*(axes[k] for k in names)):
        for variant in variants:
            run = {**defaults, **dict(zip(names, combo))}
            run["train"] = {**train}
            run["opt"] = {**shared_opt, **per_condenser_opt.get(run["condenser"], {})}
            for key, value in variant.items():
                run[key] = {**run[key], **value} if key in ("opt", "train") else value
            key = run_key(run)
            if key not in seen:  # two variants may coincide: one run, not two
                seen.add(key)
                runs.append(run)

    launcher = sweep.get("launcher", "local")
    if launcher not in LAUNCHERS:
        raise UsageError(f"{source}: [sweep] launcher = {launcher!r}; choose one of {', '.join(LAUNCHERS)}")
    retries = _int(sweep.get("retries", 0), "[sweep] retries", source, minimum=0)
    max_parallel = sweep.get("max_parallel")
    if max_parallel is not None:
        max_parallel = _int(max_parallel, "[sweep] max_parallel", source, minimum=1)
    target = Path(folder if folder is not None else sweep.get("folder", default_folder)).absolute()
    engines = {name: _table(data, name, source) for name in ENGINE_TABLES if name in data}
    return SweepSpec(folder=target, runs=runs, orders=orders, launcher=launcher, retries=retries,
                     max_parallel=max_parallel, engines=engines, source=source)


def _table(data: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise UsageError(f"{source}: `{name}` must be a table ([{name}])")
    return dict(value)


def _int(value: Any, what: str, source: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{source}: {what} = {value!r}; give an integer >= {minimum}")
    return value


def _orders(data: dict[str, Any], source: str) -> list[int]:
    """`orders = 5` means orders first_order .. first_order + 4; `orders = [0, 3]` names them."""
    value = data.get("orders", 5)
    if isinstance(value, list):
        if "first_order" in data:
            raise UsageError(f"{source}: give either `orders = [list]` or `first_order`, not both")
        if not value or any(isinstance(o, bool) or not isinstance(o, int) or o < 0 for o in value):
            raise UsageError(f"{source}: `orders` lists class orders as integers >= 0")
        if len(set(value)) != len(value):
            raise UsageError(f"{source}: `orders` lists an order twice")
        return list(value)
    count = _int(value, "orders", source, minimum=1)
    first = _int(data.get("first_order", 0), "first_order", source, minimum=0)
    return list(range(first, first + count))


def _opt_tables(opt: dict[str, Any], source: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """[opt] key = value applies to every condenser; [opt.NAME] to condenser NAME only."""
    shared = {k: v for k, v in opt.items() if not isinstance(v, dict)}
    per_condenser = {k: dict(v) for k, v in opt.items() if isinstance(v, dict)}
    for name, table in per_condenser.items():
        if any(isinstance(v, dict) for v in table.values()):
            raise UsageError(f"{source}: [opt.{name}] holds key = value pairs, not tables")
    return shared, per_condenser


# -- jobs and their ids ----------------------------------------------------------------------------------
def canonical_json(obj: Any) -> str:
    """One text per value: sorted keys, no spaces, ASCII; the input of every id."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _digest(obj: Any) -> str:
    return hashlib.sha256(canonical_json({"v": ID_VERSION, **obj}).encode()).hexdigest()[:ID_LENGTH]


def job_id(config: dict[str, Any]) -> str:
    """sha256 of the job's RunConfig (orders=1, first_order=o), less where it is written and how fast."""
    return _digest({"job": {k: v for k, v in config.items() if k not in NOT_HASHED}})


def run_key(config: dict[str, Any]) -> str:
    """The id of a run configuration: the job id's input without the order."""
    return _digest({"run": {k: v for k, v in config.items() if k not in (*NOT_HASHED, *ORDER_KEYS)}})


@dataclass(frozen=True)
class Job:
    """One order of one run configuration; picklable, so every engine can ship it to a worker."""

    id: str
    run_key: str
    order: int
    config: dict[str, Any] = field(hash=False, compare=False)  # RunConfig fields, out = the job's folder

    @property
    def folder(self) -> Path:
        return Path(self.config["out"])

    @property
    def label(self) -> str:
        c = self.config
        return f"{c['condenser']} {c['dataset']} {c['memory']} {c['steps']} steps order {self.order}"

    def uses_gpu(self) -> bool | None:
        """True for cuda, False for cpu, None for auto (the engine decides from what it has)."""
        device = str(self.config.get("device", "auto"))
        return None if device == "auto" else device.startswith("cuda")

    def run_config(self):
        from clbench.protocol.config import RunConfig

        return RunConfig(**self.config)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "run_key": self.run_key, "order": self.order, "config": self.config}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Job":
        return cls(data["id"], data["run_key"], int(data["order"]), data["config"])


def expand(spec: SweepSpec) -> list[Job]:
    """One job per (run configuration, order), in spec order; the id fixes the job's folder."""
    jobs = []
    for run in spec.runs:
        key = run_key(run)
        for order in spec.orders:
            config = {**run, "orders": 1, "first_order": order}
            jid = job_id(config)
            config["out"] = str(spec.folder / "jobs" / jid)
            jobs.append(Job(jid, key, order, config))
    return jobs


def check_runs(spec: SweepSpec) -> None:
    """What `prepare` would reject, without loading a dataset: fail on the driver, not in a queued job."""
    from clbench.nets.networks import NETWORKS
    from clbench.protocol import config as cfg
    from clbench.protocol.resolve import condenser_and_options, train_recipe

    for run in spec.runs:
        config = cfg.RunConfig(**{**run, "out": str(spec.folder)})
        config.validate()
        for profile in ["paper", "quick"] if config.profile == "auto" else [config.profile]:
            condenser_and_options(config.condenser, config.opt, profile)
            train_recipe(config.train, profile)
        NETWORKS.check(config.network, where="network")


# -- the sweep folder ------------------------------------------------------------------------------------
def write_plan(spec: SweepSpec, jobs: list[Job], launcher: str) -> None:
    """The spec and job list on disk: what a re-attached driver and a curious user read."""
    from clbench.records.record import atomic_write_json

    plan_path = spec.folder / SWEEP_FILE
    previous = _read_json(plan_path) or {}
    atomic_write_json(plan_path, {
        "schema": "clbench.sweep", "spec": spec.to_dict(), "launcher": launcher,
        "jobs": [j.to_dict() for j in jobs], "engine_state": previous.get("engine_state", {}),
    })
    for job in jobs:
        if not (job.folder / JOB_FILE).is_file():
            atomic_write_json(job.folder / JOB_FILE, job.to_dict())


def read_plan(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / SWEEP_FILE
    plan = _read_json(path)
    if plan is None or plan.get("schema") != "clbench.sweep":
        raise UsageError(f"{folder}: not a sweep folder (no readable {SWEEP_FILE})")
    return plan


def save_engine_state(folder: Path, state: dict[str, Any]) -> None:
    """Launcher bookkeeping (e.g. Slurm job ids) kept in .sweep.json, so that a driver can re-attach."""
    from clbench.records.record import atomic_write_json

    plan = read_plan(folder)
    plan["engine_state"] = state
    atomic_write_json(folder / SWEEP_FILE, plan)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _records_in(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    from clbench.records.record import RecordError, load_record

    found = []
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            found.append((path, load_record(path)))
        except RecordError:
            continue
    return found


def complete_record(folder: Path) -> Path | None:
    """The job's finished record, if it has one: the test that makes a re-run skip the job."""
    for path, record in _records_in(folder):
        if record.get("complete"):
            return path
    return None


def best_record(folder: Path) -> tuple[Path, dict[str, Any]] | None:
    """The complete record, else the one that got furthest (its partial order still feeds the curve)."""
    records = _records_in(folder)
    done = [(p, r) for p, r in records if r.get("complete")]
    if done:
        return done[0]
    partial = [(p, r) for p, r in records if r.get("orders")]
    return max(partial, key=lambda pr: len(pr[1]["orders"][0].get("steps", []))) if partial else None


def read_status(folder: Path) -> dict[str, Any]:
    return _read_json(folder / STATUS_FILE) or {}


def mark(folder: Path, state: str, **info: Any) -> dict[str, Any]:
    """Replace the job's status atomically; the previous attempts are kept in `history`."""
    from clbench.records.record import atomic_write_json

    previous = read_status(folder)
    history = list(previous.pop("history", []))
    before = previous.pop("state", None)
    starts_attempt = {"queued": ("running", "done", "failed"), "running": ("running", "done", "failed")}
    if before in starts_attempt.get(state, ()):  # a new attempt: the last one goes to the history
        history.append({"state": before, **previous})
        previous = {}
    elif state == "queued":
        previous = {}
    status = {**previous, "state": state, **info, "history": history}
    atomic_write_json(folder / STATUS_FILE, status)
    return status


# -- one job, on a worker --------------------------------------------------------------------------------
def execute_job(job: Job, work: Callable[[Job], Any] | None = None) -> str:
    """The entry point every engine calls on a worker. Idempotent: a job already done returns at once, so a
    requeued or duplicated job costs nothing. Marks its status, runs, and re-raises any error for the engine."""
    folder = job.folder
    done = complete_record(folder)
    if done is not None:
        mark(folder, "done", record=str(done), note="already complete")
        return str(done)
    mark(folder, "running", started=time.time(), host=socket.gethostname(), pid=os.getpid(),
         cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
    try:
        result = (work or run_job)(job)
    except BaseException as exc:
        mark(folder, "failed", ended=time.time(), error=_one_line(exc), traceback=traceback.format_exc())
        raise
    mark(folder, "done", ended=time.time(), record=str(result))
    return str(result)


def run_job(job: Job) -> Path:
    """One order through the ordinary runner; an unfinished record of an earlier attempt is cleared first."""
    import shutil

    from clbench.protocol.continual import run

    for path, record in _records_in(job.folder):
        if not record.get("complete"):
            path.unlink(missing_ok=True)
            shutil.rmtree(path.with_suffix(""), ignore_errors=True)
    path, _ = run(job.run_config())
    return path


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# -- gathering -------------------------------------------------------------------------------------------
def record_name(run: dict[str, Any], key: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in str(run["condenser"]))
    return f"{run['dataset']}-{safe}-{run['memory']}-{run['steps']}steps-{key[:8]}"


def gather(folder: Path, jobs: list[Job]) -> list[Path]:
    """One run record per run configuration in <folder>/records: its jobs' orders concatenated, the summary
    recomputed over them, complete only when every order is. Written atomically; re-gathering overwrites."""
    from clbench.records.summary import summarise
    from clbench.records.writer import RecordWriter, new_record

    out = folder / "records"
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.run_key, []).append(job)
    written = []
    for key, group in groups.items():
        group = sorted(group, key=lambda j: j.order)
        entries, sources, first = [], [], None
        for job in group:
            found = best_record(job.folder)
            if found is None or not found[1]["orders"]:
                continue
            path, record = found
            first = first or record
            entry = dict(record["orders"][0])
            if entry.get("memory_file"):
                entry["memory_file"] = os.path.relpath(path.parent / entry["memory_file"], out)
            entries.append(entry)
            sources.append({"order": job.order, "job": job.id, "record": os.path.relpath(path, out),
                            "host": record.get("environment", {}).get("host")})
        if first is None:
            continue
        name = record_name(group[0].config, key)
        complete = len(entries) == len(group) and all(e.get("complete") for e in entries)
        gathered = new_record(first.get("kind", "continual"), name,
                              {**first["config"], "orders": [j.order for j in group]},
                              str(first["config"].get("device", "cpu")),
                              env=first.get("environment", {}),  # where the orders ran, not where they were gathered
                              orders=entries, summary=summarise(entries),
                              sweep={"folder": str(folder), "run_key": key, "jobs": sources,
                                     "missing_orders": [j.order for j in group
                                                        if j.order not in {s["order"] for s in sources}]})
        gathered["complete"] = complete
        path = out / f"{name}.json"
        RecordWriter(path).write(gathered)
        written.append(path)
    return written


# -- progress --------------------------------------------------------------------------------------------
@dataclass
class JobState:
    state: str = "pending"
    attempts: int = 0
    detail: str = ""
    error: str | None = None
    log: str | None = None
    started: float | None = None
    ended: float | None = None
    skipped: bool = False


class JobBoard:
    """Where each job stands, for the live table and the closing summary. Launchers set what they know
    (submitted, finished, failed); `refresh` adds what only the workers know (started, host, GPU)."""

    def __init__(self, jobs: Iterable[Job], listener: Callable[["JobBoard"], None] | None = None):
        self.jobs = {j.id: j for j in jobs}
        self.states = {j: JobState() for j in self.jobs}
        self.listener = listener
        self.started = time.time()
        self._last_refresh = float("-inf")

    def set(self, job_id: str, state: str, **info: Any) -> None:
        if state not in STATES:
            raise ValueError(f"unknown job state {state!r}")
        entry = self.states[job_id]
        entry.state = state
        for key, value in info.items():
            setattr(entry, key, value)
        if state == "running" and entry.started is None:
            entry.started = time.time()
        if state in ("done", "failed") and entry.ended is None:
            entry.ended = time.time()
        self.tick()

    def submitted(self, job_id: str) -> int:
        """A new attempt handed to the engine: pending until a worker says it started."""
        entry = self.states[job_id]
        entry.attempts += 1
        entry.started = entry.ended = None
        entry.error = entry.log = None
        entry.state, entry.detail = "pending", "queued" if entry.attempts == 1 else f"retry {entry.attempts - 1}"
        mark(self.jobs[job_id].folder, "queued", queued=time.time(), attempt=entry.attempts)
        self.tick()
        return entry.attempts

    def refresh(self) -> None:
        """Pick up workers that started since the last look (their status file says running). At most once a
        second (less often for big sweeps): the files may sit on a shared file system."""
        now = time.monotonic()
        if now - self._last_refresh < max(1.0, len(self.states) / 500):
            return
        self._last_refresh = now
        changed = False
        for job_id, entry in self.states.items():
            if entry.state != "pending" or entry.attempts == 0:
                continue
            status = read_status(self.jobs[job_id].folder)
            if status.get("state") == "running":
                entry.state = "running"
                entry.started = status.get("started") or time.time()
                gpu = status.get("cuda_visible_devices")
                entry.detail = f"{status.get('host', '')}" + (f" GPU {gpu}" if gpu else "")
                changed = True
        if changed:
            self.tick()

    def failed_detail(self, job_id: str, fallback: str) -> str:
        """The worker's own one-line error when it wrote one, else what the engine said."""
        status = read_status(self.jobs[job_id].folder)
        return status.get("error") if status.get("state") == "failed" and status.get("error") else fallback

    def tick(self) -> None:
        if self.listener is not None:
            self.listener(self)

    def counts(self) -> dict[str, int]:
        counts = {s: 0 for s in STATES}
        for entry in self.states.values():
            counts[entry.state] += 1
        return counts

    def failures(self) -> list[tuple[Job, JobState]]:
        return [(self.jobs[j], s) for j, s in self.states.items() if s.state == "failed"]


# -- the whole sweep -------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    folder: Path
    jobs: list[Job]
    board: JobBoard
    records: list[Path]
    launcher: str

    @property
    def failed(self) -> list[tuple[Job, JobState]]:
        return self.board.failures()


class SweepFailed(ClbenchError):
    """Some jobs failed after their retries; the others finished and were gathered."""


def plan(spec: SweepSpec, launcher: str, write: bool = True) -> list[Job]:
    """Check every run configuration and (with `write`) lay out the folder; nothing runs yet."""
    check_runs(spec)
    jobs = expand(spec)
    if write:
        spec.folder.mkdir(parents=True, exist_ok=True)
        write_plan(spec, jobs, launcher)
    return jobs


def run_sweep(spec: SweepSpec, launcher: Any, listener: Callable[[JobBoard], None] | None = None,
              execute: Callable[[Job], Any] | None = None) -> SweepResult:
    """Plan, skip the jobs already complete, hand the rest to `launcher`, gather. Holding the folder's lock
    means two drivers never run the same jobs twice at once."""
    jobs = plan(spec, launcher.name, write=False)
    board = JobBoard(jobs, listener)
    with driver_lock(spec.folder):
        write_plan(spec, jobs, launcher.name)
        todo = _pending(jobs, board)
        if todo:
            launcher.run(todo, board, execute or execute_job)
        records = gather(spec.folder, jobs)
    return SweepResult(spec.folder, jobs, board, records, launcher.name)


def _pending(jobs: list[Job], board: JobBoard) -> list[Job]:
    """The jobs still to run; those with a complete record are marked done (skipped) on the board."""
    todo = []
    for job in jobs:
        if complete_record(job.folder) is not None:
            board.set(job.id, "done", skipped=True, detail="already complete")
        else:
            todo.append(job)
    return todo


def attached_spec(folder: str | Path) -> tuple[SweepSpec, list[Job], str]:
    """The spec, jobs and launcher of a sweep already planned in `folder` (for `--attach`)."""
    plan_data = read_plan(folder)
    return (SweepSpec.from_dict(plan_data["spec"]), [Job.from_dict(j) for j in plan_data["jobs"]],
            plan_data.get("launcher", "local"))


def attach_sweep(folder: str | Path, launcher: Any, listener: Callable[[JobBoard], None] | None = None,
                 execute: Callable[[Job], Any] | None = None) -> SweepResult:
    """Follow a sweep whose jobs an earlier driver submitted (Slurm), resubmit what failed, then gather."""
    spec, jobs, _ = attached_spec(folder)
    board = JobBoard(jobs, listener)
    with driver_lock(spec.folder):
        todo = _pending(jobs, board)
        if todo:
            launcher.attach(todo, board, execute or execute_job)
        records = gather(spec.folder, jobs)
    return SweepResult(spec.folder, jobs, board, records, launcher.name)


class driver_lock:
    """An exclusive lock on <folder>/.driver.lock (flock): a second driver of the same sweep fails at once."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / ".driver.lock"
        self.handle = None

    def __enter__(self) -> "driver_lock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "another process"
            self.handle.close()
            raise UsageError(f"{self.path.parent}: another clbench sweep drives this folder ({holder}); "
                             f"wait for it or stop it first") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        self.handle.flush()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.handle is not None:
            self.handle.close()
