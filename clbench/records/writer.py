"""The one record writer: every command's record starts with the same header and is written the same way.

`new_record` builds the header (schema, version, kind, id, time, the resolved configuration, the environment);
`RecordWriter.write` replaces the file atomically (a reader never sees half a record) and turns a full disk or
a missing permission into one error that says what is kept and how to continue.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from clbench.core.atomic import atomic_write_json
from clbench.core.errors import OutputError
from clbench.records.record import environment
from clbench.records.schema import SCHEMA, SCHEMA_VERSION, RunRecord


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def document_header(schema: str, version: int, config: dict[str, Any], device: str,
                    env: dict[str, Any] | None = None) -> dict[str, Any]:
    """The header of any clbench document (records, diagnoses): what it is, when, with what, where (`env`:
    the environment it was made in, when that is not this process's, as for a gathered sweep)."""
    return {"schema": schema, "schema_version": version, "created": now(), "config": config,
            "environment": environment(device) if env is None else env}


def new_record(kind: str, run_id: str, config: dict[str, Any], device: str, *, env: dict[str, Any] | None = None,
               **body: Any) -> RunRecord:
    """A run record's header, marked incomplete, followed by `body` (orders, sets, summary, ...)."""
    header = document_header(SCHEMA, SCHEMA_VERSION, config, device, env)
    record: dict[str, Any] = {"schema": header["schema"], "schema_version": header["schema_version"], "kind": kind,
                              "run_id": run_id, "complete": False, "created": header["created"],
                              "config": config, "environment": header["environment"], **body}
    if isinstance(config.get("condenser"), str) and "condenser_source" not in body:
        record["condenser_source"] = _condenser_source(config["condenser"])
    return record  # type: ignore[return-value]


def _condenser_source(name: str) -> dict[str, Any]:
    """clbench.condensers.condenser_source, or what is known when the name no longer resolves (a sweep gathering
    records of a plugin since uninstalled)."""
    from clbench.condensers import condenser_source
    from clbench.core.errors import ClbenchError

    try:
        return condenser_source(name)
    except (ClbenchError, OSError) as exc:
        return {"name": name, "given": name, "error": str(exc)}


class RecordWriter:
    """Writes one record file, whole and atomically, every time it is asked to."""

    def __init__(self, path: str | Path, resume_hint: str | None = None):
        self.path = Path(path)
        self.resume_hint = resume_hint  # the command that continues from what is on disk, if there is one

    def write(self, record: dict[str, Any]) -> None:
        try:
            atomic_write_json(self.path, record)
        except OSError as exc:
            then = f" Free space, then: {self.resume_hint}" if self.resume_hint else " Free space and run it again."
            raise OutputError(f"cannot write the record {self.path} ({exc.strerror or exc}); the copy on disk "
                              f"keeps what was saved before.{then}") from None
