"""Reading a JSON file someone else wrote (records, sweep plans and job states, diagnoses): only a regular file,
only up to a size, and every way it can fail as one `UnreadableJson` whose text says why in a few words.

A FIFO named `*.json` would block the reader, a link to a device would be read until memory runs out, bytes that
are not UTF-8 and arrays nested a hundred thousand deep raise exceptions that are not JSON errors.
"""
from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any


class UnreadableJson(ValueError):
    """The file cannot be read as JSON; str() is the reason, without the path."""


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a plain file"


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n} bytes"


def read_json_file(path: str | Path, max_bytes: int) -> Any:
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise UnreadableJson(f"cannot read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableJson(f"is not a regular file ({file_kind(st.st_mode)})")
    if st.st_size > max_bytes:
        raise UnreadableJson(f"is {_size(st.st_size)}, more than the {_size(max_bytes)} such a file can be")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise UnreadableJson(f"cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise UnreadableJson(f"is not valid JSON (not UTF-8 at byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnreadableJson(f"is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise UnreadableJson("is not valid JSON (nested too deeply to read)") from None
