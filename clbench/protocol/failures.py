"""The errors a run's failures become, shared by the continual and the static protocol: running out of memory
(where, on which device, what to lower) and failing to write beside the record (what is kept, how to continue).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from clbench.core.errors import ClbenchError, OutputError


def out_of_memory(where: str, device: torch.device, exc: BaseException, advice: str) -> ClbenchError:
    """The one error for running out of memory (condensing or training): where, on which device, what to do."""
    detail = (str(exc).splitlines() or [type(exc).__name__])[0]
    return ClbenchError(f"{where}: out of memory on {device} ({detail}); free the device or {advice}")


def saving(write: Callable[[], Any], record_path: Path, then: str | None = None) -> Any:
    """`write()`, with a failure to write turned into one error that says how to continue: `then`, by default
    resuming the record."""
    try:
        return write()
    except OSError as exc:
        then = then or f"clbench resume {record_path}"
        raise OutputError(f"cannot write beside {record_path} ({exc.strerror or exc}); the record keeps what was "
                          f"saved before. Free space, then: {then}") from None
