"""The record schema, typed: what the writer puts in a record and what every reader may rely on.

A record is one JSON object per run (`clbench run`, `clbench condense`, a sweep's gathered run). Its header is
the same for every kind; `kind` says which body follows: `continual` records hold `orders` (class orders,
each with its steps), `static` records hold `sets` (synthetic sets, each with its evaluations) and an empty
`orders` list, so that readers of version 1 accept both. Readers use `.get` for the optional fields: they
appeared over time and old records lack them.
"""
from __future__ import annotations

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


class OrderEntry(TypedDict, total=False):
    order: int
    class_order: list[int]
    complete: bool
    steps: list[StepEntry]
    memory_file: str  # the final memory's tensors, relative to the record's folder


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
    condenser_facts: dict[str, Any]
    # plus the set's files beside the record (tensors, picture), as written by clbench.records.snapshots


class RunRecord(TypedDict, total=False):
    schema: str  # SCHEMA
    schema_version: int  # SCHEMA_VERSION
    kind: str  # one of KINDS
    run_id: str
    complete: bool
    created: str  # local time, ISO 8601
    config: dict[str, Any]  # the resolved configuration: every value the run used, defaults included
    run_config: dict[str, Any]  # the options as given (what `clbench resume` restarts with)
    environment: dict[str, Any]  # versions, host, device, threads
    orders: list[OrderEntry]
    sets: list[SetEntry]
    summary: dict[str, Any]  # clbench.records.summary: derived from orders or sets, never edited by hand
    error: dict[str, str]  # the last failure, while the record is incomplete
    resumes: list[dict[str, Any]]
    sweep: dict[str, Any]  # a gathered sweep record: where its orders came from
