"""One generic registry: names to objects, with lazy `module:attr` entries and entry-point discovery.

Every named thing of clbench is looked up here (condensers, networks, datasets, sweep launchers), so an unknown
name gets one kind of answer, computed in one place (`Registry.unknown`): the closest known names and the
whole list, on one line. Collisions raise (a silently replaced condenser would make two records with one name
mean different things). Two installed packages registering one name are not an error until that name is used:
`collisions()` lists them (so `clbench condensers` can show them and everything else), and looking the name up
raises one UsageError naming both packages.
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
    """Names of one `kind` to objects.

    `paths`: whether a `module.path:Attr` not registered anywhere is accepted as a name (condensers: yes;
    networks, datasets and launchers: no, their callers need a registered entry). `normalise`: how a name given
    by a user is turned into a key before the lookup (datasets accept `Fashion_MNIST` for `fashion-mnist`).
    """

    def __init__(self, kind: str, entry_point_group: str | None = None, *, paths: bool = True,
                 normalise: Callable[[str], str] | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.paths = paths
        self.normalise = normalise or (lambda name: name)
        self._entries: dict[str, Entry[T]] = {}
        self._collisions: dict[str, list[Entry[T]]] = {}  # a name -> every entry that claims it
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
            dist = ep.dist.name if ep.dist else "unknown package"
            entry = Entry(ep.name, f"package {dist}", ep.value)
            if ep.name in self._entries:
                if self._entries[ep.name] == entry:  # the same package seen twice on the path
                    continue
                self._collisions.setdefault(ep.name, [self._entries[ep.name]]).append(entry)
                continue
            self._entries[ep.name] = entry

    def collisions(self) -> dict[str, list[Entry[T]]]:
        """Names claimed by more than one package (or a package and a built-in): name -> every claimant."""
        self._scan_entry_points()
        return dict(self._collisions)

    def collision_error(self, name: str, where: str | None = None) -> UsageError:
        claims = " and ".join(e.origin + (f" ({e.target})" if isinstance(e.target, str) else "")
                              for e in self._collisions[name])
        start = f"{where}: " if where else ""
        return UsageError(f"{start}{self.kind} {name!r} is registered twice: by {claims}; uninstall or rename one "
                          f"of them, or give the class as module.path:ClassName")

    def entries(self) -> list[Entry[T]]:
        self._scan_entry_points()
        return sorted(self._entries.values(), key=lambda e: e.name)

    def names(self) -> list[str]:
        return [e.name for e in self.entries()]

    def entry(self, name: str, where: str | None = None) -> Entry[T]:
        """Look a name up; `module:Class` is accepted as a name not registered anywhere (where `paths`).

        `where` (e.g. "--network") starts the error message of an unknown name, to say which input was wrong.
        """
        self._scan_entry_points()
        key = self.normalise(name)
        if key in self._collisions:
            raise self.collision_error(key, where)
        if key in self._entries:
            return self._entries[key]
        if self.paths and ":" in name:
            return Entry(name, "command line", name)
        raise self.unknown(name, where)

    def unknown(self, name: str, where: str | None = None) -> UsageError:
        """The one-line error for a name not registered: the closest known names (the only place clbench
        computes such suggestions), then all of them."""
        self._scan_entry_points()
        close = difflib.get_close_matches(self.normalise(name), list(self._entries), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        also = " (or give module.path:ClassName)" if self.paths else ""
        start = f"{where}: " if where else ""
        known = ", ".join(sorted(self._entries))
        return UsageError(f"{start}unknown {self.kind} {name!r}.{hint} Known: {known}{also}")

    def get(self, name: str, where: str | None = None) -> T:
        return self.entry(name, where).load()

    def check(self, name: str, where: str | None = None) -> str:
        """The registered key for `name` (normalised), or the unknown-name error."""
        return self.entry(name, where).name

    def __contains__(self, name: str) -> bool:
        self._scan_entry_points()
        return self.normalise(name) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
