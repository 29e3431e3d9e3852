"""Run record files: run ids, the environment a run records, and reading records back (the
schema is clbench.records.schema, the writer clbench.records.writer, the summaries clbench.records.summary).

A record holds the resolved configuration, the environment, per order and step the classes, the accuracy of
each network, the per-class accuracy, the condensation and training seconds; and its summary (final accuracy,
average incremental accuracy, forgetting, the accuracy curve), computed by clbench.records.summary.
Accuracies are percentages.
"""
from __future__ import annotations

import math
import os
import platform
import re
import socket
import subprocess
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from clbench.core.errors import UsageError
from clbench.core.jsonfile import UnreadableJson, read_json_file
from clbench.records.schema import KINDS, SCHEMA, SCHEMA_VERSION, schema_problem  # SCHEMA*: re-exported

RECORD_SUFFIX = ".json"
MAX_RECORD_BYTES = 256 << 20  # the largest record a reader opens (results/ holds none over 70 KB)


def run_folder(record_path: Path) -> Path:
    """The folder beside a record for its snapshots and checkpoints (`<record-stem>/`)."""
    return record_path.with_suffix("")


def _slug(text: str) -> str:
    """A name as a file name's part: letters, digits, '_' and '-' only (a dataset `folder:/data/pets@64` is named
    by its last folder and size: `folder-pets-64`)."""
    if text.startswith("folder:"):
        path, _, size = text[len("folder:"):].rpartition("@")
        text = f"folder-{Path(path or size).name}-{size if path else ''}"
    return re.sub(r"[^\w-]+", "-", text).strip("-") or "run"


def new_run_id(condenser: str, dataset: str) -> str:
    """Unique even for two runs started in the same second into the same folder; a file name's part anywhere."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{_slug(dataset)}-{_slug(condenser)}-{stamp}-{uuid.uuid4().hex[:6]}"


def environment(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "device": device,
        "cpu_threads": torch.get_num_threads(),
        "git_revision": _git_revision(),
    }
    try:
        from importlib.metadata import version

        info["clbench"] = version("clbench")
        info["avalanche"] = version("avalanche-lib")
    except Exception:  # not installed as a distribution: still a valid record
        pass
    from clbench.core.speed import bf16_is_fast

    info["bf16_native"] = bf16_is_fast(torch.device(device))  # what amp=auto resolves to
    if device.startswith("cuda") and torch.cuda.is_available():
        info["device_name"] = torch.cuda.get_device_name(torch.device(device))
    else:
        info["device_name"] = _cpu_name()
    return info


def _cpu_name() -> str:
    """The CPU's model name and core count (what a reader needs to compare timings)."""
    from clbench.core.speed import cpu_name

    return f"{cpu_name()}, {os.cpu_count()} cores"


def _git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def jsonable(value: Any) -> Any:
    """Condenser facts, made safe for JSON: tensors to numbers or lists, NaN and infinities to null (JSON has
    no such numbers: a record holding a bare NaN is not JSON that other tools read), anything else unknown to
    text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "numel") and hasattr(value, "tolist"):  # a tensor or a numpy array
        return jsonable(value.item() if value.numel() == 1 else value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    return str(value)


# -- reading ---------------------------------------------------------------------------------------------
class RecordError(UsageError):
    """A file that is not a readable record of a known schema version."""


def validate_record(record: Any, source: str = "record") -> dict[str, Any]:
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise RecordError(f"{source} is not a clbench run record (no \"schema\": \"{SCHEMA}\")")
    version = record.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RecordError(
            f"{source} has schema version {version!r}; this clbench reads version {SCHEMA_VERSION} "
            f"(upgrade clbench to read newer records)"
        )
    for key in ("run_id", "config", "orders", "summary"):
        if key not in record:
            raise RecordError(f"{source} is damaged: the field {key!r} is missing")
    problem = schema_problem(record)
    if problem is None and record.get("kind", "continual") not in KINDS:
        problem = f'"kind" must be one of {", ".join(KINDS)}, got {record.get("kind")!r}'
    if problem:
        raise RecordError(f"{source} is damaged: {problem}")
    return record


def read_record_json(path: str | Path) -> Any:
    """A would-be record's JSON, not yet validated (a reader that also accepts other documents, such as `clbench
    report`, looks at it once); a file that cannot be read as JSON is a RecordError (clbench.core.jsonfile reads
    only regular files of a bounded size)."""
    try:
        return read_json_file(path, MAX_RECORD_BYTES)
    except UnreadableJson as exc:
        damaged = "; the file is damaged" if "not valid JSON" in str(exc) else ""
        raise RecordError(f"{path} {exc}{damaged}") from None


def load_record(path: str | Path) -> dict[str, Any]:
    """A record read and validated; anything else (not a regular file, too large, not JSON, not a record) is a
    RecordError."""
    return validate_record(read_record_json(path), str(path))


def warning_lines(warnings: list[str], shown: int = 10) -> list[str]:
    """The first `shown` warnings, then one line counting the rest (a folder of junk is not a wall of text)."""
    from clbench.core.text import printable

    lines = [f"warning: {printable(w)}" for w in warnings[:shown]]
    if len(warnings) > shown:
        lines.append(f"warning: ... and {len(warnings) - shown} more files skipped for the same kinds of reasons")
    return lines


def find_records(paths: list[str | Path]) -> tuple[list[tuple[Path, dict]], list[str]]:
    """Records under the given files/folders (recursively), and one warning per file that was skipped."""
    records, warnings = [], []
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise UsageError(f"{root}: no such file or folder")
        files = sorted(root.rglob(f"*{RECORD_SUFFIX}")) if root.is_dir() else [root]
        for file in files:
            if file.name.startswith("."):
                continue
            try:
                records.append((file, load_record(file)))
            except RecordError as exc:
                warnings.append(f"skipped {exc}")
    return records, warnings
