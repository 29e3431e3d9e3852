"""The record schema, typed: what the writer puts in a record and what every reader may rely on.

A record is one JSON object per run (`clbench run`, `clbench condense`, a sweep's gathered run). Its header is
the same for every kind; `kind` says which body follows: `continual` records hold `orders` (class orders,
each with its steps), `static` records hold `sets` (synthetic sets, each with its evaluations) and an empty
`orders` list, so that readers of version 1 accept both. Readers use `.get` for the optional fields: they
appeared over time and old records lack them.
"""
from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypedDict

SCHEMA = "clbench.run"
SCHEMA_VERSION = 1
KINDS = ("continual", "static")


class StepEntry(TypedDict, total=False):
    """One experience of one class order: what was condensed, and how the retrained networks scored."""

    step: int
    classes: list[int]  # the classes new at this step, in stream order
    seen_classes: list[int]
    ipc: int  # images per class in the memory after this step
    memory_size: int
    accuracies: list[float]  # one per network trained from scratch on the memory, percent
    accuracy_mean: float
    class_accuracy: dict[str, float]  # class id -> accuracy (mean over networks), percent
    condense_seconds: float
    train_seconds: float
    condenser_facts: dict[str, Any]  # whatever the condenser reported (iterations, losses, weights, ...)
    memory_bytes: int  # the memory after this step as stored: images at their dtype (uint8 real), labels
    condense_peak_bytes: int  # peak memory while condensing (clbench.core.costs: CUDA allocated, or CPU RSS)
    train_peak_bytes: int  # peak memory while training the step's networks


@dataclass
class StepResult:
    """A finished step as a learner hands it to the recorder; `step_entry` turns it into the record's entry."""

    step: int
    classes: list[int]
    seen_classes: list[int]
    ipc: int
    memory_sizes: dict[int, int]
    accuracies: list[float] = field(default_factory=list)  # one per network, percent
    class_accuracy: dict[int, float] = field(default_factory=dict)  # mean over networks, percent
    condense_seconds: float = 0.0
    train_seconds: float = 0.0
    condenser_facts: dict[str, Any] = field(default_factory=dict)
    memory_bytes: int | None = None  # the memory as stored (clbench.memory.store.stored_bytes); None: not known
    condense_peak_bytes: int | None = None  # clbench.core.costs.measured; None: not measurable there
    train_peak_bytes: int | None = None


def step_entry(result: StepResult) -> StepEntry:
    """The record's entry for one step."""
    return {
        "step": result.step,
        "classes": result.classes,
        "seen_classes": result.seen_classes,
        "ipc": result.ipc,
        "memory_size": sum(result.memory_sizes.values()),
        "accuracies": result.accuracies,
        "accuracy_mean": sum(result.accuracies) / len(result.accuracies),
        "class_accuracy": {str(c): a for c, a in result.class_accuracy.items()},
        "condense_seconds": result.condense_seconds,
        "train_seconds": result.train_seconds,
        "condenser_facts": result.condenser_facts,
        **{key: value for key in ("memory_bytes", "condense_peak_bytes", "train_peak_bytes")
           if (value := getattr(result, key)) is not None},
    }


class OrderEntry(TypedDict, total=False):
    order: int
    class_order: list[int]
    complete: bool
    steps: list[StepEntry]
    memory_file: str | None  # the final memory's tensors, relative to the record's folder


class SetEntry(TypedDict, total=False):
    """One synthetic set of a static record: condensed once, evaluated `evals` times per network."""

    set: int
    complete: bool
    ipc: int
    size: int  # images in the set
    accuracies: dict[str, list[float]]  # evaluation network -> one accuracy per evaluation, percent
    accuracy_mean: dict[str, float]
    class_accuracy: dict[str, dict[str, float]]  # evaluation network -> class id -> accuracy, percent
    condense_seconds: float
    train_seconds: dict[str, float]  # evaluation network -> seconds
    condense_peak_bytes: int  # as in StepEntry, where measurable
    train_peak_bytes: int  # the highest over the evaluation trainings
    condenser_facts: dict[str, Any]
    # plus the set's files beside the record (tensors, picture), as written by clbench.records.snapshots


class ConfigEntry(TypedDict, total=False):
    """The fields of a record's `config` that readers rely on (the writers put many more)."""

    condenser: str
    dataset: str
    memory: str
    steps: int
    orders: list[int]
    profile: str
    seed: int
    network: str
    networks_per_step: int
    condenser_options: dict[str, Any]
    train: dict[str, Any]


class RunRecord(TypedDict, total=False):
    schema: str  # SCHEMA
    schema_version: int  # SCHEMA_VERSION
    kind: str  # one of KINDS
    run_id: str
    complete: bool
    created: str  # local time, ISO 8601
    config: ConfigEntry  # the resolved configuration: every value the run used, defaults included
    run_config: dict[str, Any]  # the options as given (what `clbench resume` restarts with)
    environment: dict[str, Any]  # versions, host, device, threads
    condenser_source: dict[str, Any]  # clbench.condensers.condenser_source: canonical name, distribution, version,
    # and for a class outside clbench its file and sha256
    orders: list[OrderEntry]
    sets: list[SetEntry]
    summary: dict[str, Any]  # clbench.records.summary: derived from orders or sets, never edited by hand
    error: dict[str, str]  # the last failure, while the record is incomplete
    resumes: list[dict[str, Any]]
    sweep: dict[str, Any]  # a gathered sweep record: where its orders came from


# What a reader cannot do without (the other fields are optional: they appeared over time), and the lists that
# must not be empty.
REQUIRED: dict[Any, tuple[str, ...]] = {
    RunRecord: ("run_id", "config", "orders", "summary"), ConfigEntry: ("condenser", "dataset"),
    OrderEntry: ("order", "steps"), StepEntry: ("step", "seen_classes", "accuracies", "class_accuracy"),
}
NON_EMPTY = frozenset({"accuracies", "seen_classes"})


def schema_problem(value: Any, tp: Any = RunRecord, where: str = "") -> str | None:
    """The first place where `value` (a record read back from JSON) breaks the types above, in words
    (`"orders" must be a list, got null`), or None. Keys the schema does not name are left alone (newer writers),
    and so are missing keys (older ones): readers `.get` the optional fields."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    name = f'"{where}"' if where else "the record"
    if origin in (typing.Union, types.UnionType):
        problems = [schema_problem(value, a, where) for a in args]
        return None if None in problems else problems[0]
    if tp is type(None):
        return None if value is None else f"{name} must be null, got {_json_type(value)}"
    if typing.is_typeddict(tp):
        if not isinstance(value, dict):
            return f"{name} must be an object, got {_json_type(value)}"
        hints = typing.get_type_hints(tp)
        for key in REQUIRED.get(tp, ()):
            if key not in value:
                return f"the field \"{where + '.' if where else ''}{key}\" is missing"
        for key, sub in hints.items():
            if key in value:
                path = f"{where}.{key}" if where else key
                problem = schema_problem(value[key], sub, path)
                if problem:
                    return problem
                if key in NON_EMPTY and value[key] == []:
                    return f'"{path}" must not be empty'
        return _consistency_problem(value, tp, where)
    if origin is list:
        if not isinstance(value, list):
            return f"{name} must be a list, got {_json_type(value)}"
        for i, item in enumerate(value):
            problem = schema_problem(item, args[0], f"{where}[{i}]")
            if problem:
                return problem
        return None
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            return f"{name} must be an object, got {_json_type(value)}"
        if len(args) == 2 and args[1] is not Any:
            for key, item in value.items():
                problem = schema_problem(item, args[1], f"{where}.{key}")
                if problem:
                    return problem
        return None
    checks = {int: lambda v: isinstance(v, int) and not isinstance(v, bool),
              float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              str: lambda v: isinstance(v, str), bool: lambda v: isinstance(v, bool)}
    if tp in checks and not checks[tp](value):
        return f"{name} must be {_WORDS[tp]}, got {_json_type(value)}"
    return None


_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return {dict: "an object", list: "a list", str: "a string", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)


def _consistency_problem(value: dict[str, Any], tp: Any, where: str) -> str | None:
    """What the types cannot say: the steps of an order score the same number of networks; class ids are ints."""
    if tp is OrderEntry:
        counts = {len(step["accuracies"]) for step in value.get("steps", [])}
        if len(counts) > 1:
            return f'"{where}.steps" score different numbers of networks ({sorted(counts)})'
    if tp is StepEntry:
        for key in ("class_accuracy",):
            bad = [k for k in value.get(key, {}) if not k.lstrip("-").isdigit()]
            if bad:
                return f'"{where}.{key}" has a key that is not a class id: {bad[0]!r}'
    return None
