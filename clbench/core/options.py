"""Options dataclasses: defaults and help in one place, `key=value` overrides checked against them.

A condenser's options are a dataclass whose fields carry `help` and, where the CPU-sized `quick` profile
differs from the paper, a `quick` value. `option(default, help, quick=..., min=..., max=..., above=...)` builds
such a field; the bounds are the one place a value's range is stated. `build_options` checks every value
(typed values from a TOML file as well as `key=value` text) against the field's type and bounds, then calls the
dataclass's own `validate()` if it has one (checks across fields), and raises one UsageError naming the key,
what was expected and the value given.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import Any, Mapping

from clbench.core.errors import UsageError

_MISSING = object()


def option(default: Any, help: str, quick: Any = _MISSING, *, min: float | None = None, max: float | None = None,
           above: float | None = None) -> Any:
    """A dataclass field with help text, an optional value for the quick profile, and optional bounds:
    `min`/`max` inclusive, `above` exclusive (`above=0`: strictly positive)."""
    metadata: dict[str, Any] = {"help": help}
    if quick is not _MISSING:
        metadata["quick"] = quick
    bounds = {k: v for k, v in (("min", min), ("max", max), ("above", above)) if v is not None}
    if bounds:
        metadata["bounds"] = bounds
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def check_defaults(options_type: type, owner: str) -> None:
    """Every field of an options dataclass has a default: the harness builds options from defaults plus the
    user's key=value overrides, so a field without one cannot be built (one UsageError naming it)."""
    for f in dataclasses.fields(options_type):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            raise UsageError(f"{owner}: option {f.name!r} of {options_type.__qualname__} has no default; give it one "
                             f"(clbench.core.options.option(default, help))")


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
    """A type as a user reads it: `int`, `bool | auto`, `real|noise`, `tuple[int, ...]` (never `Union`)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return "|".join(map(str, args))
    if origin is not None:
        return str(tp).replace("typing.", "")
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def expected(tp: Any) -> str:
    """What a value of type `tp` is, in words, for error messages: "an integer", "true, false or auto"."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(expected(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (tuple, list):
        return f"a list of {expected(args[0]) if args else 'values'}"
    if origin is dict or tp is dict:
        return "a table"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            type(None): "none"}.get(tp, _type_name(tp))


def show(value: Any) -> str:
    """A value as the user wrote it: strings in double quotes, true/false, lists in brackets."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def conforms(value: Any, tp: Any) -> bool:
    """Whether a typed value (from a TOML file, a record) is of the field type `tp`; an int is a float, a bool
    is not an int, a float must be finite."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, a) for a in args)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin in (tuple, list):
        item = args[0] if args else Any
        return isinstance(value, (list, tuple)) and all(item is Any or conforms(v, item) for v in value)
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    return True


def check_bounds(value: Any, bounds: Mapping[str, float]) -> str | None:
    """The range a number breaks, in words ("> 0", ">= 1", "<= 1"), or None when it is within `bounds`."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    if "above" in bounds and not value > bounds["above"]:
        return f"> {bounds['above']}"
    if "min" in bounds and not value >= bounds["min"]:
        return f">= {bounds['min']}"
    if "max" in bounds and not value <= bounds["max"]:
        return f"<= {bounds['max']}"
    return None


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
            value = tp(text)
        except ValueError:
            raise UsageError(f"option {key}={text!r}: expected {tp.__name__}") from None
        if tp is float and not math.isfinite(value):
            raise UsageError(f"option {key}={text!r}: expected a finite number")
        return value
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

    Unknown keys are an error that lists the known ones; a value of the wrong type or out of its field's bounds
    is an error naming key, what was expected and the value; then the dataclass's `validate()` (if any) runs.
    """
    check_defaults(options_type, owner)
    hints = typing.get_type_hints(options_type)
    fields = {f.name: f for f in dataclasses.fields(options_type)}
    values: dict[str, Any] = {}
    if profile == "quick":
        values.update({n: f.metadata["quick"] for n, f in fields.items() if "quick" in f.metadata})
    for key, raw in overrides.items():
        if not fields:
            raise UsageError(f"{owner} has no options (got {key}={raw}); remove it")
        if key not in fields:
            raise UsageError(f"unknown option {key!r} for {owner}; known options: {', '.join(fields)}")
        if isinstance(raw, str) and hints[key] is not str:
            values[key] = parse_value(raw, hints[key], key)
        elif not conforms(raw, hints[key]):
            raise UsageError(f"{owner}: option {key} must be {expected(hints[key])}, got {show(raw)}")
        else:
            values[key] = float(raw) if hints[key] is float else raw
    options = options_type(**values)
    check_options(options, owner)
    return options


def check_options(options: Any, owner: str = "options") -> None:
    """Every field of an options dataclass within its declared bounds and of its declared type, then its
    `validate()` (checks across fields): a UsageError naming the field, the rule and the value. build_options
    calls it; so does the code that receives options made in Python (`DMOptions(iterations=-1)`), so that each
    bound is written once, in its `option(...)`."""
    hints = typing.get_type_hints(type(options))
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if not conforms(value, hints[f.name]):
            raise UsageError(f"{owner}: option {f.name} must be {expected(hints[f.name])}, got {show(value)}")
        broken = check_bounds(value, f.metadata.get("bounds", {}))
        if broken:
            raise UsageError(f"{owner}: option {f.name} must be {broken}, got {show(value)}")
    validate = getattr(options, "validate", None)
    if callable(validate):
        validate()  # raises UsageError
