"""`clbench export`: a record's memories or synthetic sets as files in the layouts of clbench.data.setfiles,
so that the reference evaluators (and `--condenser precomputed`) read them unchanged.

A continual record gives one file per class order (`{order}` in the output name): `reference-cl` holds each
step's classes as that step made them (so only a per-class budget, `--memory Nipc`, where nothing was shrunk),
`clbench` the final memory. A static record gives `reference-static` (every set, one per experiment) or
`clbench` (one file per set, `{set}` in the name).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from clbench.core.errors import UsageError
from clbench.core.tensorfile import UnreadableTensorFile, load_tensor_file
from clbench.data.setfiles import FORMATS, write_set_file
from clbench.memory.store import MemoryBudget
from clbench.records.record import load_record


def export_record(record_path: str | Path, fmt: str, out: str) -> list[Path]:
    """Write the record's sets in `fmt` to `out` (placeholders filled); the files written. Existing files are
    never replaced, and every check is made before the first file is written."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    path = Path(record_path)
    record = load_record(path)
    if record.get("kind") == "static":
        files = _static_files(record, path, fmt, out)
    else:
        files = _continual_files(record, path, fmt, out)
    taken = [str(f) for f, _ in files if f.exists()]
    if taken:
        raise UsageError(f"--out {out}: {taken[0]} exists; choose another name (export never replaces a file)")
    if len({f for f, _ in files}) < len(files):
        raise UsageError(f"--out {out}: the record has {len(files)} sets; put "
                         f"{'{set}' if record.get('kind') == 'static' else '{order}'} in the name")
    written: list[Path] = []
    for file, sets in files:
        try:
            write_set_file(file, fmt, sets)
        except OSError as exc:
            for done in written:  # all or nothing: a retry is not refused for the files of a failed attempt
                done.unlink(missing_ok=True)
            raise UsageError(f"--out {file}: cannot write it ({exc.strerror or exc}); choose a writable place") \
                from None
        written.append(file)
    return written


def _tensors(record_path: Path, file: str | None, what: str) -> dict[str, torch.Tensor]:
    if not file:
        raise UsageError(f"{record_path}: {what} has no saved tensors (not finished)")
    try:
        state = load_tensor_file(record_path.parent / file)
        if not (isinstance(state, dict) and "images" in state and "labels" in state):
            raise UsageError(f"{record_path.parent / file}: expected a dict with 'images' and 'labels' "
                             f"(the tensors of {what})")
        return state
    except FileNotFoundError:
        raise UsageError(f"{record_path.parent / file}: the tensors of {what} are missing") from None
    except (OSError, UnreadableTensorFile) as exc:
        raise UsageError(f"{record_path.parent / file}: cannot read the tensors of {what} ({exc})") from None


def _static_files(record: dict[str, Any], path: Path, fmt: str, out: str) -> list[tuple[Path, list]]:
    sets = [s for s in record.get("sets") or [] if s.get("synthetic_file")]
    if not sets:
        raise UsageError(f"{path}: the record has no finished set to export")
    if fmt == "reference-cl":
        raise UsageError(f"{path} is a static record; export it as reference-static or clbench")
    loaded = [(s["set"], _tensors(path, s["synthetic_file"], f"set {s['set']}")) for s in sets]
    if fmt == "reference-static":
        return [(Path(out), [(t["images"], t["labels"]) for _, t in loaded])]
    return [(Path(out.replace("{set}", str(k))), [(t["images"], t["labels"])]) for k, t in loaded]


def _continual_files(record: dict[str, Any], path: Path, fmt: str, out: str) -> list[tuple[Path, list]]:
    orders = [o for o in record.get("orders") or [] if o.get("memory_file")]
    if not orders:
        raise UsageError(f"{path}: the record has no finished class order to export")
    if fmt == "reference-static":
        raise UsageError(f"{path} is a continual record; export it as reference-cl (one file per order) or clbench")
    memory = str((record.get("config") or {}).get("memory"))
    if fmt == "reference-cl" and MemoryBudget.parse(memory).per_class_fixed is None:
        raise UsageError(f"{path}: memory {memory} is a total budget, so earlier steps' classes were shrunk and "
                         f"their sets are no longer whole; reference-cl needs a run with --memory Nipc")
    files = []
    for entry in orders:
        state = _tensors(path, entry["memory_file"], f"order {entry['order']}")
        target = Path(out.replace("{order}", str(entry["order"])))
        if fmt == "clbench":
            files.append((target, [(state["images"], state["labels"])]))
            continue
        steps = []
        for step in entry["steps"]:
            keep = torch.isin(state["labels"], torch.tensor(step["classes"], dtype=torch.long))
            steps.append((state["images"][keep], state["labels"][keep]))
        files.append((target, steps))
    return files
