"""The static condensation benchmark (the paper's Tables 1-4): condense every class, train from scratch, test.

One `clbench condense` makes `sets` synthetic sets of the whole training set (`ipc` images per class, one
CondenseTask over all classes each), trains every evaluation network `evals` times from scratch on each set
with the evaluation recipe, and tests it on the FULL test set. The record has the same header as a run record
(`"schema": "clbench.run"`, version 1) with `"kind": "static"`; it is written atomically after every set, and
each set's tensors and picture lie beside it.

Seeds follow the runner's scheme with the set index in the place of the class order and step 0:
condensation `derive_seed(seed, set, 0, "condense")`, network init `derive_seed(seed, set, 0, "network", e)`
and training draws `derive_seed(seed, set, 0, "train", e)` for evaluation `e` (the same `e` for every
evaluation network: common random numbers across architectures).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import Tensor, nn

from clbench.core.costs import measured
from clbench.core.errors import UsageError
from clbench.core.seeding import derive_seed, generator
from clbench.data.types import RealData, storage_facts
from clbench.memory.checks import OUT_OF_MEMORY
from clbench.protocol import config as cfg
from clbench.protocol.failures import out_of_memory, saving
from clbench.protocol.kinds import RecordKind, file_safe
from clbench.protocol.profiles import STATIC_EVALS, STATIC_SETS
from clbench.protocol.resolve import PreparedRun, Resolved, resolve
from clbench.protocol.session import Session, recorded_config
from clbench.records.record import RecordError, jsonable
from clbench.records.snapshots import save_synthetic
from clbench.records.summary import summarise_static
from clbench.training.recipe import TrainRecipe, evaluate, train_network

KIND = "static"
DEFAULT_EVAL_NETS = ("convnet",)


@dataclass
class StaticConfig:
    condenser: str = "random"
    dataset: str = "fashion-mnist"
    ipc: int = 10
    sets: int | None = None  # None: the profile's (profiles.STATIC_SETS)
    first_set: int = 0  # sets are first_set .. first_set + sets - 1 (to split the work over machines)
    evals: int | None = None  # trainings per set and evaluation network; None: the profile's (STATIC_EVALS)
    eval_nets: tuple[str, ...] = DEFAULT_EVAL_NETS
    network: str = "convnet"  # the architecture the condenser embeds with
    width: int | None = None  # ConvNet width (condensation and the convnet evaluation net); None: the profile's
    profile: str = "auto"
    device: str = "auto"
    seed: int = 0
    opt: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    out: str = "results"
    data_dir: str | None = None

    def validate(self) -> None:
        if self.ipc < 1:
            raise UsageError(f"--ipc {self.ipc}: give at least 1 image per class")
        if self.sets is not None and self.sets < 1:
            raise UsageError(f"--sets {self.sets}: make at least 1 synthetic set")
        if self.first_set < 0:
            raise UsageError(f"--first-set {self.first_set}: sets are numbered from 0")
        if self.evals is not None and self.evals < 1:
            raise UsageError(f"--evals {self.evals}: train at least 1 network per set and architecture")
        if not self.eval_nets:
            raise UsageError("--eval-nets: name at least one evaluation network")
        cfg.check_shared(self.profile, self.width, self.data_dir, self.seed)


def parse_eval_nets(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """`"convnet, alexnet"` -> ("convnet", "alexnet"): known names only, duplicates dropped, order kept."""
    from clbench.nets.networks import NETWORKS

    parts = text.split(",") if isinstance(text, str) else [p for item in text for p in item.split(",")]
    names = tuple(dict.fromkeys(p.strip().lower() for p in parts if p.strip()))
    for name in names:
        NETWORKS.check(name, where="--eval-nets")
    if not names:
        raise UsageError("--eval-nets: name at least one evaluation network")
    return names


class StaticReporter:
    """Progress callbacks; the library's default says nothing. The CLI passes a rich implementation."""

    def run_started(self, plan: dict[str, Any]) -> None: ...
    def set_started(self, index: int) -> None: ...
    def condense_progress(self, done: int, total: int, info: dict) -> None: ...
    def train_progress(self, network: str, evaluation: int, done: int, total: int) -> None: ...
    def evaluated(self, index: int, network: str, evaluation: int, accuracy: float) -> None: ...
    def set_finished(self, entry: dict[str, Any]) -> None: ...
    def run_finished(self, record: dict[str, Any], path: Path) -> None: ...


@dataclass
class PreparedStatic(PreparedRun):
    """A static run, resolved before the first condensation, so bad input fails at once."""

    config: StaticConfig
    resolved: Resolved
    sets: list[int]
    evals: int


def prepare(config: StaticConfig) -> PreparedStatic:
    config.validate()
    config = dataclasses.replace(config, eval_nets=parse_eval_nets(config.eval_nets))
    resolved = resolve(condenser=config.condenser, opt=config.opt, train=config.train, dataset=config.dataset,
                       data_dir=config.data_dir, device=config.device, profile=config.profile,
                       network=config.network, width=config.width, eval_networks=config.eval_nets)
    dataset = resolved.dataset
    smallest = dataset.smallest_class()
    if config.ipc > smallest:
        raise UsageError(f"--ipc {config.ipc}: the smallest class of {dataset.name} has only {smallest} training "
                         f"images; use at most {smallest}")
    sets = config.sets or STATIC_SETS[resolved.profile]
    evals = config.evals or STATIC_EVALS[resolved.profile]
    return PreparedStatic(config, resolved, list(range(config.first_set, config.first_set + sets)), evals)


def resolved_config(p: PreparedStatic) -> dict[str, Any]:
    """The record's `config`: every value the run uses, defaults included."""
    c = p.config
    return {
        "condenser": c.condenser,
        "condenser_options": p.resolved.condenser_options_dict(),
        "dataset": c.dataset,
        "ipc": c.ipc,
        "sets": p.sets,
        "evals": p.evals,
        "eval_nets": list(c.eval_nets),
        "network": c.network,
        "width": p.width,
        "profile": p.profile,
        "profile_requested": c.profile,
        "device": str(p.device),
        "seed": c.seed,
        "train": dataclasses.asdict(p.recipe),
    }


def run_static(config: StaticConfig, reporter: StaticReporter | None = None, *,
               resume: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Condense, train and test every set (with `resume`, those that record lacks); returns the record's path and
    the record. The record is written after every set; a SIGINT/SIGTERM stops at the next safe point and raises
    Interrupted, a failing set records its error beside the completed sets and raises."""
    reporter = reporter or StaticReporter()
    p = prepare(config)
    if resume is not None:
        return StaticSession.reopen(p, Path(resume), reporter).execute()
    return StaticSession.create(p, reporter).execute()


def resume(record_path: str | Path, reporter: StaticReporter | None = None) -> tuple[Path, dict[str, Any]]:
    """Make the sets a static record still lacks, with the options it was started with."""
    path = Path(record_path)
    return run_static(recorded_config(path, StaticConfig, "condense"), reporter, resume=path)


class StaticSession(Session):
    """A static record being written (clbench.protocol.session): its sets, one after the other."""

    kind, work_name = KIND, "sets"

    @classmethod
    def resolved_config(cls, p: PreparedStatic) -> dict[str, Any]:
        return resolved_config(p)

    @classmethod
    def start(cls, p: PreparedStatic) -> tuple[str, dict[str, Any]]:
        # a static record has no class orders; `orders` is kept so that readers of run records accept it
        return p.config.condenser, {"orders": [], "sets": [],
                                    "summary": summarise_static([], list(p.config.eval_nets))}

    def load_units(self, resuming: bool) -> None:
        sets = self.record.get("sets")
        if not isinstance(sets, list) or not all(isinstance(e, dict) and e.get("set") in self.p.sets for e in sets):
            raise RecordError(f"{self.path} is damaged: \"sets\" is not a list of this run's sets; it cannot be "
                              f"resumed")

    def run_config(self) -> dict[str, Any]:
        return run_config(self.p.config)

    def resumed(self) -> dict[str, Any]:
        return {"sets_done": self.done()}

    def done(self) -> int:
        return len(self.record["sets"])

    def total(self) -> int:
        return len(self.p.sets)

    def plan(self) -> dict[str, Any]:
        return {"completed_sets": self.done()}

    def run_units(self) -> None:
        p, record = self.p, self.record
        done = {entry["set"] for entry in record["sets"]}
        data = p.dataset.resident(p.device)
        record["environment"]["real_data"] = storage_facts(p.dataset, p.device, data)
        for index in [i for i in p.sets if i not in done]:
            self.signals.check()
            self.reporter.set_started(index)
            try:
                entry = run_set(p, index, data, self.reporter, self.path, self.signals.check)
            except OUT_OF_MEMORY as exc:
                raise out_of_memory(f"set {index}", p.device, exc, "lower --ipc or --width, then resume") from exc
            record["sets"] = sorted([*record["sets"], entry], key=lambda e: e["set"])
            record["summary"] = summarise_static(record["sets"], record["config"]["eval_nets"])
            self.write()
            self.reporter.set_finished(entry)


def run_config(config: StaticConfig) -> dict[str, Any]:
    """The options a static run was started with, as the record keeps them for `clbench resume`."""
    return {**dataclasses.asdict(config), "eval_nets": list(config.eval_nets)}


def run_set(p: PreparedStatic, index: int, data: RealData, reporter: StaticReporter, record_path: Path,
            check_stop: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """One synthetic set: condense all classes, save it, then every (network, evaluation) from scratch."""

    def condense_progress(done: int, total: int, info: dict) -> None:
        check_stop()
        reporter.condense_progress(done, total, info)
    ds, c = p.dataset, p.config
    augment = p.recipe.augment()
    with measured(p.device) as condensed:
        # every class at once: the whole training split normalised, for this condensation only
        synthetic = condense_all(p, index, data.train(), data.train_labels, condense_progress)
    images, labels = synthetic.images.detach().to(p.device), synthetic.labels.to(p.device)
    files = saving(lambda: save_synthetic(record_path, index, images, labels, ds), record_path)

    test_x, test_y = data.test(), data.test_labels
    accuracies: dict[str, list[float]] = {}
    class_accuracy: dict[str, dict[str, float]] = {}
    train_seconds: dict[str, float] = {}
    train_peaks: list[int] = []
    for name in c.eval_nets:
        per_class: list[dict[int, float]] = []
        accuracies[name] = []
        with measured(p.device) as trained:
            for e in range(p.evals):
                def progress(done: int, total: int, n: str = name, e: int = e) -> None:
                    check_stop()
                    reporter.train_progress(n, e, done, total)

                acc, class_acc = train_and_test(
                    name, images, labels, test_x, test_y, p.recipe, augment, ds.num_classes,
                    network_seed=derive_seed(c.seed, index, 0, "network", e),
                    train_seed=derive_seed(c.seed, index, 0, "train", e), progress=progress,
                    width=p.width)
                accuracies[name].append(acc)
                per_class.append(class_acc)
                reporter.evaluated(index, name, e, acc)
        class_accuracy[name] = {str(k): float(np.mean([pc[k] for pc in per_class])) for k in per_class[0]}
        train_seconds[name] = trained.seconds
        if trained.peak_bytes is not None:
            train_peaks.append(trained.peak_bytes)
    return {
        "set": index,
        "complete": True,
        "ipc": c.ipc,
        "size": int(labels.numel()),
        "accuracies": accuracies,
        "accuracy_mean": {n: float(np.mean(a)) for n, a in accuracies.items()},
        "class_accuracy": class_accuracy,
        "condense_seconds": condensed.seconds,
        "train_seconds": train_seconds,
        **({} if condensed.peak_bytes is None else {"condense_peak_bytes": condensed.peak_bytes}),
        **({"train_peak_bytes": max(train_peaks)} if train_peaks else {}),
        "condenser_facts": jsonable(getattr(synthetic, "facts", {}) or {}),
        **files,
    }


def condense_all(p: PreparedStatic, index: int, images: Tensor, labels: Tensor,
                 progress: Callable[[int, int, dict], None]):
    """Set `index`: one condensation over every class of the training set (the seeds of unit `index`, step 0)."""
    from clbench.nets.networks import build_network
    from clbench.strategies.memory_step import condense

    ds, c = p.dataset, p.config

    def build(seed: int) -> nn.Module:
        return build_network(c.network, ds.channels, ds.num_classes, ds.image_size, seed=seed, device=p.device,
                             width=p.width)

    return condense(p.resolved.new_condenser(), images, labels, tuple(range(ds.num_classes)), c.ipc, seed=c.seed,
                    unit=index, step=0, make_network=build, device=p.device, num_classes=ds.num_classes,
                    progress=progress, extras={"dataset": c.dataset, "profile": p.profile, "static": True,
                                                "set": index})


def train_and_test(name: str, images: Tensor, labels: Tensor, test_images: Tensor, test_labels: Tensor,
                   recipe: TrainRecipe, augment: Any, num_classes: int, *, network_seed: int, train_seed: int,
                   progress: Callable[[int, int], None] | None = None,
                   width: int | None = None) -> tuple[float, dict[int, float]]:
    """A fresh `name` network trained from scratch on (images, labels); its accuracy (percent) on the test set,
    overall and per class."""
    from clbench.nets.networks import build_network

    device = images.device
    net = build_network(name, images.shape[1], num_classes, images.shape[-1], seed=network_seed, device=device,
                        width=width)
    train_network(net, images, labels, recipe, augment, generator(train_seed, device), progress)
    return evaluate(net, test_images, test_labels, recipe)


# -- the static kind, as resume and sweeps see it (clbench.protocol.kinds) -----------------------------------
class Static(RecordKind):
    name = KIND
    config_type = StaticConfig
    unit, units_key, count_key, first_key = "set", "sets", "sets", "first_set"
    work_name = "sets"
    def default_count(self, spec: dict[str, Any], source: str) -> int:
        """The profile's sets, as `clbench condense` makes them: only a spec with one profile fixes that."""
        profile = spec.get("profile", "auto")
        if not isinstance(profile, str) or profile not in STATIC_SETS:
            raise UsageError(f"{source}: give `sets` (a number, or a list of set indices): without it the profile "
                             f"decides, and profile = {profile!r} does not fix one")
        return STATIC_SETS[profile]

    def run(self, config: StaticConfig, reporter: StaticReporter | None = None, *,
            resume: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
        return run_static(config, reporter, resume=resume)

    def resume(self, path: str | Path, reporter: StaticReporter | None = None,
               **options: Any) -> tuple[Path, dict[str, Any]]:
        return resume(path, reporter)

    def check(self, values: dict[str, Any], source: str) -> None:
        from clbench.protocol.resolve import check_unloaded

        if "eval_nets" in values:  # "convnet,alexnet" or a list, as --eval-nets takes them
            values = {**values, "eval_nets": list(parse_eval_nets(values["eval_nets"]))}
        cfg.check_types(values, source, StaticConfig)
        config = StaticConfig(**values)
        config.validate()
        check_unloaded(config)

    def label(self, config: dict[str, Any]) -> str:
        return f"{config['condenser']} {config['dataset']} ipc {config['ipc']} static"

    def work(self, record: dict[str, Any]) -> int:
        return len(record.get("sets") or [])

    def summarise(self, entries: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
        return summarise_static(entries, list(config["eval_nets"]))

    def record_name(self, config: dict[str, Any], key: str) -> str:
        return f"{config['dataset']}-{file_safe(config['condenser'])}-ipc{config['ipc']}-static-{key[:8]}"


STATIC = Static()
