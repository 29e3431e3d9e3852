"""Sweeps: a TOML grid of run configurations x class orders (or synthetic sets), expanded into independent jobs.

One job is one (run configuration, class order): a `clbench run` with `orders=1, first_order=o`, writing its own
record into its own folder. A spec with `kind = "static"` is a grid of `clbench condense` configurations
(StaticConfig's keys: ipc, eval_nets, ...) and one job is one synthetic set (`sets=1, first_set=s`; `sets = 5` or a
list chooses them, as `orders` does). The kinds are clbench.protocol.kinds'. Its id is a hash
of its resolved configuration, so the same job keeps the same folder across invocations: a job whose record is
complete is skipped, which makes re-running a sweep resume it. The records of one run configuration are then
gathered into one run record that `clbench compare` reads like any other. This module parses the spec and expands it
into jobs; clbench.sweep.jobs runs one job and gathers, clbench.sweep.driver drives a sweep, and scheduling belongs
to the engine (clbench.sweep.launchers).

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
    [slurm]                     # partition, time, gpus, cpus_per_task, mem_gb, array_parallelism, additional, setup,
    partition = "gpu"           #   signal_delay_s (warned this long before its time limit, a job requeues itself)
    [ray]                       # address, num_cpus, num_gpus, gpus_per_job, cpus_per_job, max_retries, spread

A sweep folder:
    .sweep.json                the resolved spec and the job list (what `--attach` reloads)
    jobs/<id>/.job.json        the job's RunConfig
    jobs/<id>/.status.json     pending (written on submission), then by the worker running, done or failed; host,
                               engine node, GPU, times, error; earlier attempts in `history` (what `clbench sweep
                               --status` shows). Folders of older versions may say "queued" for pending.
    jobs/<id>/<run>.json       the job's run record and, beside it, its memory snapshots
    records/<name>.json        one run record per run configuration, gathered from its jobs
(The bookkeeping files are hidden so that `clbench compare` on the folder reads only run records.)
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clbench.core.errors import UsageError
from clbench.core.registry import Registry

# Salt of every job id: bump it when the meaning of a field changes. 2: the paper profile's training schedule,
# DSA grid and random draw became the reference code's (December 2026), so old jobs are not "already complete".
ID_VERSION = "clbench.sweep.job/2"
ID_LENGTH = 16  # hex digits of sha256 kept: 64 bits, no collision in any realistic sweep
NOT_HASHED = ("out", "data_dir", "jobs", "log")  # where and how fast a run goes, and what it logs: not what it computes
UNIT_KEYS = ("orders", "first_order", "sets", "first_set")  # what chooses a job's order or set: not in a run key
# The engines, by name: the one registry (each class is imported only when a sweep runs on it; make_launcher in
# clbench.sweep.launchers builds them). Each has a table of its settings in the spec, checked by that launcher.
LAUNCHERS: Registry[Any] = Registry("launcher", paths=False)
LAUNCHERS.add("local", "clbench.sweep.local_pool:LocalLauncher")
LAUNCHERS.add("ray", "clbench.sweep.ray_tasks:RayLauncher")
LAUNCHERS.add("slurm", "clbench.sweep.slurm_array:SlurmLauncher")
ENGINE_TABLES = tuple(LAUNCHERS.names())
SWEEP_KEYS = ("folder", "launcher", "retries", "max_parallel")
SWEEP_FILE = ".sweep.json"
JOB_FILE = ".job.json"
STATUS_FILE = ".status.json"
STATES = ("pending", "running", "done", "failed")  # the live table and .status.json alike


# -- the spec --------------------------------------------------------------------------------------------
@dataclass
class SweepSpec:
    """A resolved spec: the run configurations (the kind's configuration fields, its units left out) and the
    units (class orders, or synthetic sets)."""

    folder: Path
    runs: list[dict[str, Any]]
    orders: list[int]  # the units: class orders (continual) or set indices (static)
    launcher: str = "local"
    retries: int = 0
    max_parallel: int | None = None
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)  # [local], [ray], [slurm] tables
    source: str | None = None
    kind: str = "continual"  # clbench.protocol.kinds (plans written before the field are continual)

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
    from clbench.protocol.kinds import get_kind

    kind_name = data.get("kind", "continual")
    if not isinstance(kind_name, str):
        raise UsageError(f"{source}: kind = {kind_name!r}; give a name, e.g. kind = \"static\"")
    kind = get_kind(kind_name, where=f"{source}: kind")
    unit_keys = (kind.count_key, kind.first_key)
    fields = {f.name: f for f in dataclasses.fields(kind.config_type)}
    known = set(fields) | {"kind", "variants", "sweep", *ENGINE_TABLES}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"{source}: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if "out" in data:
        raise UsageError(f"{source}: `out` is chosen per job; set the sweep's folder with [sweep] folder = ...")

    sweep = _table(data, "sweep", source)
    bad = sorted(set(sweep) - set(SWEEP_KEYS))
    if bad:
        raise UsageError(f"{source}: unknown keys in [sweep]: {', '.join(bad)}; known: {', '.join(SWEEP_KEYS)}")
    orders = _units(data, source, kind)
    axes: dict[str, list[Any]] = {}
    blank = dataclasses.asdict(kind.config_type())  # every field's default
    listed = {name for name, value in blank.items() if isinstance(value, (list, tuple))}
    for key, value in data.items():
        if key in fields and key not in ("opt", "train", *unit_keys):
            if key in listed:  # a field whose value is a list (eval_nets): a list is one value, lists an axis
                values = value if isinstance(value, list) and value and all(isinstance(v, list) for v in value) \
                    else [value]
            else:
                values = value if isinstance(value, list) else [value]
            if not values:
                raise UsageError(f"{source}: `{key} = []` is an empty grid axis; give at least one value")
            if any(isinstance(v, dict) or (isinstance(v, list) and key not in listed) for v in values):
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
        bad = sorted(set(v) - (set(fields) - {"out", *unit_keys}))
        if bad:
            raise UsageError(f"{source}: unknown or forbidden keys in [[variants]]: {', '.join(bad)}")
        for table in ("opt", "train"):
            if table in v and not isinstance(v[table], dict):
                raise UsageError(f"{source}: [[variants]] {table} must be a table ({table} = {{ key = value }})")

    defaults = {k: list(v) if isinstance(v, tuple) else v for k, v in blank.items() if k not in ("out", *unit_keys)}
    # [opt.NAME] goes to each run by its final condenser, the one a variant may set
    condensers = set(axes.get("condenser", [defaults["condenser"]])) | {v["condenser"] for v in variants
                                                                         if "condenser" in v}
    for name in per_condenser_opt:
        if name not in condensers:
            raise UsageError(f"{source}: [opt.{name}] but {name!r} is not among the condensers of the grid")
    runs: list[dict[str, Any]] = []
    seen: set[str] = set()
    names = list(axes)
    for combo in itertools.product(*(axes[k] for k in names)):
        for variant in variants:
            run = {**defaults, **dict(zip(names, combo)), **{k: v for k, v in variant.items()
                                                              if k not in ("opt", "train")}}
            run["train"] = {**train, **variant.get("train", {})}
            run["opt"] = {**shared_opt, **per_condenser_opt.get(run["condenser"], {}), **variant.get("opt", {})}
            key = run_key(run, kind.name)
            if key not in seen:  # two variants may coincide: one run, not two
                seen.add(key)
                runs.append(run)

    launcher = sweep.get("launcher", "local")
    if launcher not in LAUNCHERS.names():
        raise UsageError(f"{source}: [sweep] launcher = {launcher!r}; choose one of {', '.join(LAUNCHERS.names())}")
    retries = _int(sweep.get("retries", 0), "[sweep] retries", source, minimum=0)
    max_parallel = sweep.get("max_parallel")
    if max_parallel is not None:
        max_parallel = _int(max_parallel, "[sweep] max_parallel", source, minimum=1)
    if folder is None and not isinstance(sweep.get("folder", ""), str):
        raise UsageError(f"{source}: [sweep] folder = {sweep['folder']!r}; give a path, e.g. folder = \"sweeps/mine\"")
    target = Path(folder if folder is not None else sweep.get("folder", default_folder)).absolute()
    engines = {name: _table(data, name, source) for name in ENGINE_TABLES if name in data}
    return SweepSpec(folder=target, runs=runs, orders=orders, launcher=launcher, retries=retries,
                     max_parallel=max_parallel, engines=engines, source=source, kind=kind.name)


def _table(data: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise UsageError(f"{source}: `{name}` must be a table ([{name}])")
    return dict(value)


def _int(value: Any, what: str, source: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{source}: {what} = {value!r}; give an integer >= {minimum}")
    return value


def _units(data: dict[str, Any], source: str, kind: Any) -> list[int]:
    """`orders = 5` means orders first_order .. first_order + 4; `orders = [0, 3]` names them (for a static
    sweep: `sets` and `first_set`)."""
    count_key, first_key, unit = kind.count_key, kind.first_key, kind.unit
    value = data[count_key] if count_key in data else kind.default_count(data, source)
    if isinstance(value, list):
        if first_key in data:
            raise UsageError(f"{source}: give either `{count_key} = [list]` or `{first_key}`, not both")
        if not value or any(isinstance(o, bool) or not isinstance(o, int) or o < 0 for o in value):
            raise UsageError(f"{source}: `{count_key}` lists {unit}s as integers >= 0")
        if len(set(value)) != len(value):
            raise UsageError(f"{source}: `{count_key}` lists {'an' if unit[0] in 'aeiou' else 'a'} {unit} twice")
        return list(value)
    count = _int(value, count_key, source, minimum=1)
    first = _int(data.get(first_key, 0), first_key, source, minimum=0)
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


def _kinded(kind: str) -> dict[str, str]:
    return {} if kind == "continual" else {"kind": kind}  # continual ids stay those of sweeps made before kinds


def job_id(config: dict[str, Any], kind: str = "continual") -> str:
    """sha256 of the job's configuration (one order or set), less where it is written and how fast."""
    return _digest({"job": {k: v for k, v in config.items() if k not in NOT_HASHED}, **_kinded(kind)})


def run_key(config: dict[str, Any], kind: str = "continual") -> str:
    """The id of a run configuration: the job id's input without the order (or set)."""
    return _digest({"run": {k: v for k, v in config.items() if k not in (*NOT_HASHED, *UNIT_KEYS)},
                    **_kinded(kind)})


@dataclass(frozen=True)
class Job:
    """One order (or set) of one run configuration; picklable, so every engine can ship it to a worker."""

    id: str
    run_key: str
    order: int  # the unit: a class order, or a synthetic set of a static sweep
    config: dict[str, Any] = field(hash=False, compare=False)  # the kind's config fields, out = the job's folder
    kind: str = "continual"

    @property
    def folder(self) -> Path:
        return Path(self.config["out"])

    @property
    def experiment(self):
        """The job's kind (clbench.protocol.kinds): how it runs, resumes and is gathered."""
        from clbench.protocol.kinds import get_kind

        return get_kind(self.kind)

    @property
    def run_label(self) -> str:
        """The run configuration in a few words (sweep tables)."""
        return self.experiment.label(self.config)

    @property
    def label(self) -> str:
        return f"{self.run_label} {self.experiment.unit} {self.order}"

    def uses_gpu(self) -> bool | None:
        """True for cuda, False for cpu, None for auto (the engine decides from what it has)."""
        device = str(self.config.get("device", "auto"))
        return None if device == "auto" else device.startswith("cuda")

    def run_config(self):
        return self.experiment.config_type(**self.config)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "run_key": self.run_key, "order": self.order, "config": self.config,
                "kind": self.kind}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Job":
        return cls(data["id"], data["run_key"], int(data["order"]), data["config"], data.get("kind", "continual"))


def expand(spec: SweepSpec) -> list[Job]:
    """One job per (run configuration, order or set), in spec order; the id fixes the job's folder."""
    from clbench.protocol.kinds import get_kind

    kind = get_kind(spec.kind)
    jobs = []
    for run in spec.runs:
        key = run_key(run, spec.kind)
        for unit in spec.orders:
            config = {**run, kind.count_key: 1, kind.first_key: unit}
            jid = job_id(config, spec.kind)
            config["out"] = str(spec.folder / "jobs" / jid)
            jobs.append(Job(jid, key, unit, config, spec.kind))
    return jobs


def check_runs(spec: SweepSpec) -> None:
    """What `prepare` would reject, without loading a dataset: fail on the driver, not in a queued job."""
    from clbench.protocol.kinds import get_kind

    kind = get_kind(spec.kind)
    for run in spec.runs:
        kind.check({**run, "out": str(spec.folder)}, f"sweep spec {spec.source or ''}".rstrip())
