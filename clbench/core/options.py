"""Options dataclasses: defaults and help in one place, `key=value` overrides checked against them.

A condenser's options are a dataclass whose fields carry `help` and, where the CPU-sized `quick` profile
differs from the paper, a `quick` value. `option(default, help, quick=...)` builds such a field.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping

from clbench.core.errors import UsageError

_MISSING = object()


def option(default: Any, help: str, quick: Any = _MISSING) -> Any:
    """A dataclass field with help text and an optional value for the quick profile."""
    metadata = {"help": help}
    if quick is not _MISSING:
        metadata["quick"] = quick
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def describe(options_type: type) -> list[dict[str, Any]]:
    """name, type, default, quick and help of each field, for `clbench condensers` and docs."""
    rows = []
    hints = typing.get_type_hints(options_type)
    for f in dataclasses.fields(options_type):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        rows.append(
            {
                "name": f.name,
                "type": _type_name(hints[f.name]),
                "default": default,
                "quick": f.metadata.get("quick", default),
                "help": f.metadata.get("help", ""),
            }
        )
    return rows


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def parse_value(text: str, tp: Any, key: str) -> Any:
    """Convert `text` to the field type `tp`; a wrong type is a UsageError naming key and type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.lower() in ("none", "null"):
            return None
        members = [a for a in args if a is not type(None)]
        for member in members:  # the first member the text parses as (e.g. bool | Literal["auto"])
            try:
                return parse_value(text, member, key)
            except UsageError:
                continue
        raise UsageError(f"option {key}={text!r}: expected {' or '.join(_type_name(m) for m in members)}")
    if origin is typing.Literal:
        if text not in args:
            raise UsageError(f"option {key}={text!r}: expected one of {', '.join(map(str, args))}")
        return text
    if origin in (tuple, list):
        (item,) = args[:1] or (str,)
        parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
        return origin(parse_value(p.strip(), item, key) for p in parts)
    if tp is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"option {key}={text!r}: expected a boolean (true/false)")
    if tp in (int, float, str):
        try:
            return tp(text)
        except ValueError:
            raise UsageError(f"option {key}={text!r}: expected {tp.__name__}") from None
    raise UsageError(f"option {key}: cannot parse values of type {_type_name(tp)}")


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """`["lr=1.0", "k=3"]` -> {"lr": "1.0", "k": "3"}; a pair without `=` is an error."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--opt {pair!r} is not of the form key=value")
        out[key.strip()] = value.strip()
    return out


def build_options(options_type: type, overrides: Mapping[str, Any], profile: str = "paper",
                  owner: str = "options") -> Any:
    """Defaults (paper, or quick values for the quick profile), then `overrides` (strings or values).

    Unknown keys are an error that lists the known ones.
    """
    hints = typing.get_type_hints(options_type)
    fields = {f.name: f for f in dataclasses.fields(options_type)}
    values: dict[str, Any] = {}
    if profile == "quick":
        values.update({n: f.metadata["quick"] for n, f in fields.items() if "quick" in f.metadata})
    for key, raw in overrides.items():
        if key not in fields:
            raise UsageError(f"unknown option {key!r} for {owner}; known options: {', '.join(fields)}")
        values[key] = parse_value(raw, hints[key], key) if isinstance(raw, str) and hints[key] is not str \
            else raw
    return options_type(**values)


def as_dict(options: Any) -> dict[str, Any]:
    return dataclasses.asdict(options)
