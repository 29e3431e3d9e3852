"""Reading tensor files (checkpoints, memory snapshots, synthetic sets, dataset caches): `torch.load` with
`weights_only=True`, so that a file never runs code, and any failure as one short line.

torch's own message for a file that holds other Python objects is a dozen lines (with terminal escapes) advising
`weights_only=False`, which clbench must not follow for files it did not write; `load_tensor_file` says instead
what the file is, and each caller adds what the user can do about it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from clbench.core.errors import ClbenchError


class UnreadableTensorFile(ClbenchError):
    """A tensor file that exists but cannot be read; the message is one line (the reason)."""


def load_tensor_file(path: str | Path) -> Any:
    """The file's contents, on the CPU. FileNotFoundError propagates (callers name what is missing); any other
    failure is an UnreadableTensorFile."""
    import torch

    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise
    except Exception as exc:  # unpickling errors have many types; all mean the same to the user
        raise UnreadableTensorFile(reason(exc)) from None


def reason(exc: BaseException) -> str:
    """One line saying why a tensor file could not be read."""
    text = str(exc)
    if "Weights only load failed" in text:
        return "it holds Python objects besides tensors, which clbench does not load (it never runs code from a file)"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
