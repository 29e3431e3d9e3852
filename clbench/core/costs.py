"""What one phase of a step cost: its seconds and its peak memory, measured the same way by every protocol.

Peak memory is the device's own high-water mark over the phase: on CUDA `torch.cuda.max_memory_allocated`
after `reset_peak_memory_stats` (the tensors PyTorch allocated, not the caching allocator's reserve); on the
CPU the process's resident set high-water mark (Linux's VmHWM after resetting it through
/proc/self/clear_refs), which counts everything the process holds (the dataset, PyTorch itself), so that it
answers "how much RAM does this need". Where the mark cannot be reset (another OS, a locked-down /proc) no peak
is reported rather than a wrong one.
"""
from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch


@dataclass
class Cost:
    seconds: float = 0.0
    peak_bytes: int | None = None  # None: not measurable here


class PeakMeter:
    """The device's memory high-water mark since the last `reset()` (for phases that hooks delimit)."""

    def __init__(self, device: Any):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.resettable = False

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.resettable = True
        else:
            self.resettable = _cpu_reset()

    def peak(self) -> int | None:
        if not self.resettable:
            return None
        if self.cuda:
            return int(torch.cuda.max_memory_allocated(self.device))
        return _cpu_peak()


def _cpu_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS
        return True
    except OSError:
        return False


def _cpu_peak() -> int | None:
    try:
        found = re.search(r"^VmHWM:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) * 1024 if found else None


@contextlib.contextmanager
def measured(device: Any) -> Iterator[Cost]:
    """`with measured(device) as cost:` fills `cost` when the block ends (also when it raises)."""
    cost, meter = Cost(), PeakMeter(device)
    meter.reset()
    start = time.perf_counter()
    try:
        yield cost
    finally:
        if meter.cuda:
            torch.cuda.synchronize(meter.device)
        cost.seconds = time.perf_counter() - start
        cost.peak_bytes = meter.peak()
