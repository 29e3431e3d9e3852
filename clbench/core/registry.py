"""One generic registry: names to objects, with lazy `module:attr` entries and entry-point discovery.

Collisions raise (a silently replaced condenser would make two records with one name mean different
things); an unknown name answers with the closest known names.
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, TypeVar

from clbench.core.errors import UsageError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object, or a placeholder `module:attr` imported on first use."""

    name: str
    origin: str  # "built-in", "package <dist>", or "command line"
    target: T | str

    def load(self) -> T:
        if isinstance(self.target, str):
            return load_object(self.target)
        return self.target


def load_object(path: str):
    """Import `module.path:Attr`; a bad path is a UsageError naming what failed."""
    if ":" not in path:
        raise UsageError(f"{path!r} is not of the form module.path:ClassName")
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import module {module_name!r} for {path!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UsageError(f"module {module_name!r} has no attribute {attr!r} (from {path!r})") from None


class Registry(Generic[T]):
    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, Entry[T]] = {}
        self._scanned = entry_point_group is None

    def add(self, name: str, target: T | str, origin: str = "built-in") -> None:
        if name in self._entries:
            raise ValueError(
                f"{self.kind} {name!r} is already registered (from {self._entries[name].origin}); "
                f"choose another name"
            )
        self._entries[name] = Entry(name, origin, target)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@CONDENSERS.register("dm")`."""

        def decorate(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorate

    def _scan_entry_points(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.entry_point_group):
            if ep.name in self._entries:
                raise ValueError(
                    f"{self.kind} {ep.name!r} from package {ep.dist.name if ep.dist else '?'} collides with "
                    f"the one from {self._entries[ep.name].origin}; rename one of them"
                )
            dist = ep.dist.name if ep.dist else "unknown package"
            self._entries[ep.name] = Entry(ep.name, f"package {dist}", ep.value)

    def entries(self) -> list[Entry[T]]:
        self._scan_entry_points()
        return sorted(self._entries.values(), key=lambda e: e.name)

    def names(self) -> list[str]:
        return [e.name for e in self.entries()]

    def entry(self, name: str) -> Entry[T]:
        """Look a name up; `module:Class` is accepted as a name not registered anywhere."""
        self._scan_entry_points()
        if name in self._entries:
            return self._entries[name]
        if ":" in name:
            return Entry(name, "command line", name)
        close = difflib.get_close_matches(name, list(self._entries), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UsageError(
            f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(sorted(self._entries))} "
            f"(or give module.path:ClassName)"
        )

    def get(self, name: str) -> T:
        return self.entry(name).load()

    def __contains__(self, name: str) -> bool:
        self._scan_entry_points()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
