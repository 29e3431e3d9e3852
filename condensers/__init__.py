"""Built-in condensers: every module of this package registers its condenser when imported.

`get_condenser(name)` accepts a built-in name, an entry point of the group `clbench.condensers`, or
`module.path:ClassName`.
"""
from __future__ import annotations

import importlib
import pkgutil

from clbench.condensers.base import CONDENSERS, Condenser, CondenseTask, SyntheticSet, register

__all__ = ["CONDENSERS", "Condenser", "CondenseTask", "SyntheticSet", "register", "get_condenser", "load_builtins"]

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

    load_builtins()
    cls = CONDENSERS.get(name)
    if not (isinstance(cls, type) and issubclass(cls, Condenser)) and not callable(getattr(cls, "condense", None)):
        raise UsageError(f"{name!r} is not a condenser class (it has no condense method)")
    return cls
