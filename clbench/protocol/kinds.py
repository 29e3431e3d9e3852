"""The kinds of experiment clbench runs, as the shared machinery sees them: one interface, one registry.

A record's `kind` says which experiment wrote it: `continual` (`clbench run`: class orders of steps, by any
continual protocol of clbench.protocol.base) or `static` (`clbench condense`: synthetic sets of all classes).
Resume and sweeps serve both through `RecordKind` without knowing which they serve:

    config_type            the configuration dataclass (RunConfig, StaticConfig): --config files, sweep specs
    unit, units_key        one independent piece of work ("order", "set") and the record's list of them
    count_key, first_key   the configuration's fields that choose the units (orders/first_order, sets/first_set)
    default_count(spec)    how many units a sweep spec that does not say runs
    run(config, reporter, resume=PATH)   run it (or continue that record); returns (path, record)
    resume(path, reporter)               continue a record with the options it was started with
    check(values, source)  what `prepare` would refuse, without loading a dataset (a sweep's driver checks)
    label(config)          a few words naming one configuration (sweep tables)
    work(record), work_name   the work done in a record (steps, sets), what a sweep's status shows
    summarise(entries, config)   the summary of a record's unit entries (a sweep gathers units into one record)
"""
from __future__ import annotations

from typing import Any

from clbench.core.registry import Registry


class RecordKind:
    name = ""
    config_type: type = object
    unit = ""
    work_name = ""  # what `work` counts: "steps", "sets"
    units_key = ""
    count_key = ""
    first_key = ""
    def default_count(self, spec: dict[str, Any], source: str) -> int:
        """The units of a sweep spec that does not give them."""
        return 1

    def run(self, config: Any, reporter: Any = None, *, resume: Any = None) -> tuple[Any, dict[str, Any]]:
        raise NotImplementedError

    def resume(self, path: Any, reporter: Any = None, **options: Any) -> tuple[Any, dict[str, Any]]:
        raise NotImplementedError

    def check(self, values: dict[str, Any], source: str) -> None:
        raise NotImplementedError

    def label(self, config: dict[str, Any]) -> str:
        raise NotImplementedError

    def work(self, record: dict[str, Any]) -> int:
        raise NotImplementedError

    def work_per_unit(self, config: dict[str, Any]) -> int:
        return 1

    def summarise(self, entries: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def record_name(self, config: dict[str, Any], key: str) -> str:
        raise NotImplementedError


KINDS: Registry[RecordKind] = Registry("experiment kind", paths=False)
KINDS.add("continual", "clbench.protocol.continual:CONTINUAL")
KINDS.add("static", "clbench.protocol.static:STATIC")


def file_safe(name: Any) -> str:
    """`name` with what a file name should not hold replaced by '-' (record names built from a condenser's)."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in str(name))


def get_kind(name: str, where: str = "kind") -> RecordKind:
    """The kind registered as `name`; an unknown name is one UsageError naming `where`."""
    return KINDS.get(name, where=where)


def kind_of(record: dict[str, Any]) -> RecordKind:
    """The kind of a record (records older than the field are continual)."""
    return get_kind(str(record.get("kind", "continual")), where="the record's kind")
