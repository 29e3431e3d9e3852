"""Built-in condensers: every module of this package registers its condenser when imported.

`get_condenser(name)` accepts a built-in name, an entry point of the group `clbench.condensers`, or
`module.path:ClassName`.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any

from clbench.condensers.base import CONDENSERS, Condenser, CondenseTask, SyntheticSet, register

__all__ = ["CONDENSERS", "Condenser", "CondenseTask", "SyntheticSet", "register", "get_condenser", "load_builtins",
           "canonical_name", "condenser_options", "condenser_source"]

_loaded = False


def load_builtins() -> None:
    """Import each module of this package once, so that its `@register` runs (adding a condenser = one file)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def get_condenser(name: str) -> type[Condenser]:
    from clbench.core.errors import UsageError
    from clbench.core.options import check_defaults

    load_builtins()
    cls = CONDENSERS.get(name)
    if not isinstance(cls, type) or not callable(getattr(cls, "condense", None)):
        raise UsageError(f"{name!r} is not a condenser class (it has no condense method)")
    if not issubclass(cls, Condenser):  # a run needs shrink, expansion, name and check_data: the base has them
        raise UsageError(f"{name!r} ({_path_of(cls)}) is not a Condenser: subclass "
                         f"clbench.condensers.base.Condenser, which gives it the rest of the interface")
    options_type = getattr(cls, "Options", None)
    if dataclasses.is_dataclass(options_type):
        check_defaults(options_type, f"condenser {name!r}")
    return cls


def _path_of(obj) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def canonical_name(name: str) -> str:
    """One name per condenser, however it was given: a `module.path:Class` that a registered entry (built-in or
    entry point) points to is that entry's name; any other name is itself. Decided from names only (no plugin
    is imported), so that `clbench compare` can key old records too."""
    load_builtins()
    if ":" not in name:
        return name
    for entry in CONDENSERS.entries():
        target = entry.target if isinstance(entry.target, str) else _path_of(entry.target)
        if target == name:
            return entry.name
    return name


def condenser_source(name: str) -> dict:
    """Where the code of condenser `name` comes from, for the record: its canonical name, how it was found,
    the distribution and version that provide it, and for a class outside clbench its file and a sha256 of it."""
    import hashlib
    import inspect
    from importlib import metadata

    load_builtins()
    source: dict = {"name": canonical_name(name), "given": name}
    entry = CONDENSERS.entry(source["name"])
    source["origin"] = entry.origin
    cls = entry.load()
    module = getattr(cls, "__module__", "") or ""
    source["class"] = _path_of(cls) if hasattr(cls, "__qualname__") else str(cls)
    if entry.origin.startswith("package "):
        dists = [entry.origin.removeprefix("package ")]
    elif module == "clbench" or module.startswith("clbench."):
        dists = ["clbench"]
    else:
        dists = [d for d in metadata.packages_distributions().get(module.split(".")[0], [])
                 if _provides(d, inspect.getfile(cls))]
    if dists:
        source["distribution"] = dists[0]
        try:
            source["version"] = metadata.version(dists[0])
        except metadata.PackageNotFoundError:
            source["version"] = None
    if source.get("distribution") != "clbench":
        try:
            file = inspect.getsourcefile(cls)
        except TypeError:
            file = None
        if file:
            with open(file, "rb") as handle:
                source["file"], source["sha256"] = file, hashlib.sha256(handle.read()).hexdigest()
    return source


def _provides(dist_name: str, file: str) -> bool:
    """Whether installed distribution `dist_name` holds `file` (in its file list, or, installed editable, under
    the folder its direct_url.json points to): a top-level module name alone can be shared (e.g. `tests`)."""
    import json
    from importlib import metadata
    from pathlib import Path

    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return False
    target = Path(file).resolve()
    for f in dist.files or []:
        if f.suffix == ".py" and Path(str(dist.locate_file(f))).resolve() == target:
            return True
    url = (json.loads(dist.read_text("direct_url.json") or "{}") or {}).get("url", "")
    return url.startswith("file://") and Path(url.removeprefix("file://")).resolve() in target.parents


def new_condenser(cls: type, options: Any) -> Any:
    """An instance of condenser class `cls` with its checked `options` (None: a condenser without options); a
    constructor that raises is named in one line (a plugin's bug, before any work)."""
    from clbench.core.errors import ClbenchError, UsageError

    try:
        return cls(options) if options is not None else cls()
    except ClbenchError:
        raise
    except Exception as exc:
        name = getattr(cls, "name", "") or cls.__name__
        raise UsageError(f"condenser {name!r} could not be built: {type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None


def condenser_options(cls: type, name: str, opt: dict[str, Any], profile: str, flag: str = "--opt") -> Any:
    """The options of condenser class `cls` for `profile` with the `opt` overrides, checked (None for a condenser
    without options); `name` and `flag` (where the overrides came from) are for the messages."""
    from clbench.core.errors import UsageError
    from clbench.core.options import build_options
    from clbench.matching.addons import ADDON_SWITCHES, AddOnOptions

    options_type = getattr(cls, "Options", None)
    addons = [key for key in opt if key in ADDON_SWITCHES]
    if addons and not (isinstance(options_type, type) and issubclass(options_type, AddOnOptions)):
        raise UsageError(f"condenser {name!r} cannot take the add-on {addons[0]!r}: the add-ons (sm, icd) apply to "
                         f"distribution-matching condensers (dm, ddm, datadam, idm, or a plugin built on "
                         f"clbench.condensers.dm.DM)")
    if options_type is None:
        if opt:
            raise UsageError(f"condenser {name!r} has no options; remove {flag}")
        return None
    return build_options(options_type, opt, profile, owner=f"condenser {name!r}")
