"""The engines a sweep can run on, by name (`LAUNCHERS`: local, ray, slurm), and `make_launcher`, which builds
one from the spec's table for it ([local], [ray], [slurm], checked against the launcher's options dataclass)
with the command line's options on top.

The engines live in their own modules (`local_pool`, `ray_tasks`, `slurm_array`, sharing `engine`); Ray and
submitit are imported only when their launcher runs.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from clbench.core.errors import UsageError
from clbench.sweep.engine import Execute, Launcher, LaunchSettings
from clbench.sweep.local_pool import LocalLauncher, LocalOptions, visible_gpus
from clbench.sweep.ray_tasks import RayLauncher, RayOptions, short_temp_dir, start_local_ray, unmet_request
from clbench.sweep.slurm_array import SlurmLauncher, SlurmOptions, parse_minutes
from clbench.sweep.spec import LAUNCHERS, SweepSpec

__all__ = ["LAUNCHERS", "Execute", "LaunchSettings", "Launcher", "LocalLauncher", "LocalOptions", "RayLauncher",
           "RayOptions", "SlurmLauncher", "SlurmOptions", "engine_options", "make_launcher", "parse_minutes",
           "short_temp_dir", "start_local_ray", "unmet_request", "visible_gpus"]



def make_launcher(name: str, spec: SweepSpec, *, max_parallel: int | None = None, retries: int | None = None,
                  ray_address: str | None = None, slurm: dict[str, Any] | None = None,
                  detach: bool = False) -> Launcher:
    """The launcher `name`, from the spec's table for it, with the command line's options on top
    (`ray_address` for ray; `slurm`: partition, time, gpus for slurm; None values are not given)."""
    cls = LAUNCHERS.get(name, where="--launcher")
    retries = spec.retries if retries is None else retries
    if retries < 0:
        raise UsageError(f"--retries {retries}: give 0 or more")
    parallel = spec.max_parallel if max_parallel is None else max_parallel
    if parallel is not None and parallel < 1:
        raise UsageError(f"--max-parallel {parallel}: give at least 1")
    if detach and not cls.detaches:
        detachable = " or ".join(n for n in LAUNCHERS.names() if LAUNCHERS.get(n).detaches)
        raise UsageError(f"--detach is for --launcher {detachable}: {cls.name} jobs end with their driver")
    command_line = {"ray": {"address": ray_address}, "slurm": slurm or {}}.get(cls.name, {})
    options = engine_options(spec, cls, {k: v for k, v in command_line.items() if v is not None})
    settings = LaunchSettings(spec.folder, retries, parallel, command_line_parallel=max_parallel, detach=detach)
    return cls.from_options(options, settings)


def engine_options(spec: SweepSpec, cls: type[Launcher], overrides: dict[str, Any] | None = None) -> Any:
    """The launcher's options dataclass from the spec's table named after it, then `overrides`; a key the
    dataclass lacks is an error naming the table and the keys it takes."""
    table = {**spec.engines.get(cls.name, {}), **(overrides or {})}
    if cls.Options is None:
        if table:
            raise UsageError(f"{spec.source}: the {cls.name} launcher takes no options; remove [{cls.name}]")
        return None
    keys = [f.name for f in dataclasses.fields(cls.Options)]
    bad = sorted(set(table) - set(keys))
    if bad:
        raise UsageError(f"{spec.source}: unknown keys in [{cls.name}]: {', '.join(bad)}; known: {', '.join(keys)}")
    return cls.Options(**table)
