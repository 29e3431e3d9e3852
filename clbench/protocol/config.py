"""A run's configuration: flat named defaults, overridable from the CLI or a TOML file, saved in the record.

Profiles fix the protocol's cost (clbench.protocol.profiles). `paper` is the published protocol (20000
condensation iterations for DM/DDM, 1000 training epochs, 3 networks per step); `quick` is sized for a 2-core
CPU; `auto` is paper on CUDA and quick otherwise. Turning a configuration into the objects a run uses is
clbench.protocol.resolve's.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from clbench.core.errors import UsageError
from clbench.core.seeding import MAX_SEED, check_seed
from clbench.memory.store import MemoryBudget
from clbench.protocol.profiles import PROFILES


@dataclass
class RunConfig:
    condenser: str = "random"
    dataset: str = "fashion-mnist"
    memory: str = "20ipc"
    steps: int = 5
    orders: int = 5
    first_order: int = 0  # orders are first_order .. first_order + orders - 1
    profile: str = "auto"
    device: str = "auto"
    seed: int = 0
    network: str = "convnet"
    networks_per_step: int | None = None  # None: the profile's
    width: int | None = None  # ConvNet width; None: the profile's (128 paper, 32 quick)
    opt: dict[str, Any] = field(default_factory=dict)  # condenser options (key=value)
    train: dict[str, Any] = field(default_factory=dict)  # training recipe options (key=value)
    out: str = "results"
    data_dir: str | None = None
    jobs: int = 1
    learner: str = "retrain"  # the continual protocol (clbench.protocol.base.PROTOCOLS): retrain, replay, joint
    log: str = ""  # live logs beside the record: csv, tensorboard or both (clbench.protocol.logs); not in `config`

    def validate(self) -> None:
        if self.orders < 1:
            raise UsageError(f"--orders {self.orders}: give at least 1 class order")
        if self.first_order < 0:
            raise UsageError(f"--first-order {self.first_order}: orders are numbered from 0")
        if self.first_order + self.orders - 1 > MAX_SEED:  # order k's classes are drawn with numpy seed k
            raise UsageError(f"--first-order {self.first_order} with --orders {self.orders}: the last order must be "
                             f"at most {MAX_SEED} (an order's number seeds its class order)")
        if self.steps < 1:
            raise UsageError(f"--steps {self.steps}: give at least 1 step")
        check_shared(self.profile, self.width, self.data_dir, self.seed)
        if self.networks_per_step is not None and self.networks_per_step < 1:
            raise UsageError(f"--nets {self.networks_per_step}: train at least 1 network per step")
        if self.jobs < 1:
            raise UsageError(f"--jobs {self.jobs}: give at least 1")
        from clbench.protocol.base import PROTOCOLS

        PROTOCOLS.entry(self.learner, where="--learner")  # an unknown name: the closest known ones, then all
        MemoryBudget.parse(self.memory)
        from clbench.protocol.logs import parse_log

        parse_log(self.log)


def check_shared(profile: str, width: int | None, data_dir: str | None, seed: int) -> None:
    """The options every command's configuration has (run, condense): profile, ConvNet width, data folder, seed."""
    check_seed(seed)
    if profile not in PROFILES:
        raise UsageError(f"--profile {profile!r}: choose one of {', '.join(PROFILES)}")
    if width is not None and width < 1:
        raise UsageError(f"--width {width}: give a positive number of channels")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UsageError(f"--data-dir {data_dir}: no such folder; create it or point to your data")


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """A TOML file's contents; a missing or invalid file is a UsageError naming `what` it was meant to be."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{what} {path}: a folder, not a TOML file")
    if not path.is_file():
        raise UsageError(f"{what} {path}: no such file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # TOML is UTF-8; a byte-order mark some editors write is allowed
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path}: not valid TOML (not UTF-8 at byte {exc.start}); save it as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{what} {path}: not valid TOML ({exc})") from None


def load_toml(path: str | Path, config_type: type | None = None) -> dict[str, Any]:
    """A config file: top-level keys of the configuration (RunConfig, or the static protocol's StaticConfig),
    plus [opt] and [train] tables."""
    config_type = config_type or RunConfig
    data = read_toml(path, "--config")
    known = {f.name for f in dataclasses.fields(config_type)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"--config {path}: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    check_types(data, f"--config {path}", config_type)
    return data


def check_types(values: dict[str, Any], source: str, config_type: type | None = None) -> None:
    """Each value of the configuration's fields in `values` is of its field's type (TOML and records give typed
    values); else one UsageError: `<source>: orders must be an integer, got "two"`."""
    import typing

    from clbench.core.options import conforms, expected, show

    hints = typing.get_type_hints(config_type or RunConfig)
    for key, value in values.items():
        if key in hints and not conforms(value, hints[key]):
            raise UsageError(f"{source}: {key} must be {expected(hints[key])}, got {show(value)}")


def merge(base: Any, overrides: dict[str, Any]) -> Any:
    """`overrides` (only the keys set) on top of `base` (a RunConfig or StaticConfig, of which a new one is
    returned); opt/train tables merge key by key."""
    values = dataclasses.asdict(base)
    for key, value in overrides.items():
        if key in ("opt", "train"):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return type(base)(**values)
