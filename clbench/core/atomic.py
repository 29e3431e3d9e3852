"""Atomic file writes: a temporary file in the same folder, fsync, then a rename into place, so that a reader (or
a run killed mid-write) never sees half a file. Used for records and snapshots (clbench.records) and for the
decoded-dataset cache (clbench.data), which is why they live at the bottom layer.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """`write(handle)` into a temporary file beside `path`, then rename it into place (creating the folder).
    An OSError from creating the folder or the temporary file propagates with nothing written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the file should be as readable as any other
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    """torch.save straight into the temporary file (no copy of a large cache in memory)."""
    import torch

    atomic_write(path, lambda handle: torch.save(obj, handle))
