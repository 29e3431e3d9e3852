"""Which speed switches pay on which device, decided by measurement (benchmarks/), kept in one place.

Nothing here changes what is computed: these helpers only pick values for the speed switches of
TrainRecipe (and the thread count) so that callers need not know the hardware. The figures behind each
choice are in benchmarks/README.md.
"""
from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Any, Iterator

import torch

# Measured on a 2-core Xeon with AMX/avx512_bf16 (benchmarks/README.md): small test batches stay in the
# L2 cache and are the fastest there; on a GPU large batches are.
CPU_EVAL_BATCH = 64
# Chunks of 32 images per forward/backward: 1.2-1.3x per epoch on that CPU with one thread per process. With
# two threads on a core that other processes also use, small chunks lose (threads wait for each other).
CPU_MICRO_BATCH = 32
GPU_EVAL_BATCH = 2048
# Images per forward pass of condensers that embed many real images (DM, DDM, herding): on that CPU chunks of
# 32 stay in cache and beat one pass over 512-5120 images by 1.1-1.3x in fp32 and more in bf16. A GPU wants
# the whole batch.
CPU_FORWARD_CHUNK = 32


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags (Linux /proc/cpuinfo); empty where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_name() -> str:
    """The CPU model name (Linux /proc/cpuinfo, else what the platform says), for records and benchmark reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device) -> str:
    """A short description of the device for benchmark reports."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {usable_cores()} cores, {torch.get_num_threads()} torch threads"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (for timing); a no-op on a CPU, which runs synchronously."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def bf16_is_fast(device: torch.device) -> bool:
    """True where bf16 matrix maths runs natively: AMX or AVX512-BF16 on a CPU, Ampere or later on CUDA."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        return torch.backends.mkldnn.is_available() and bool({"amx_bf16", "avx512_bf16"} & cpu_flags())
    return False


def forward_chunk(device: torch.device) -> int:
    """Images per forward pass for embedding many images on `device`; 0 means all at once."""
    return 0 if torch.device(device).type == "cuda" else CPU_FORWARD_CHUNK


def use_bf16(amp: bool | str, device: torch.device) -> bool:
    """Resolve an `amp` switch: True, False, or "auto" (bf16 where this device runs it natively)."""
    if amp == "auto":
        return bf16_is_fast(device)
    if not isinstance(amp, bool):
        raise ValueError(f"amp must be true, false or auto, got {amp!r}")
    return amp


def use_batched_networks(setting: bool | str, device: torch.device, networks: int) -> bool:
    """Resolve a `batched_networks` switch for `networks` networks: True, False, or "auto" (on CUDA only: there
    one width-128 ConvNet leaves most of the GPU idle; on the CPU measured, batching did not pay, see
    benchmarks/README.md). One network is never "batched": that is plain training."""
    if setting == "auto":
        setting = torch.device(device).type == "cuda"
    if not isinstance(setting, bool):
        raise ValueError(f"batched_networks must be true, false or auto, got {setting!r}")
    return setting and networks > 1


@contextlib.contextmanager
def tf32(enabled: bool, device: torch.device) -> Iterator[None]:
    """On CUDA, fp32 matrix products and cuDNN convolutions in TF32 (`enabled`) or in full fp32 (not), restored
    afterwards; elsewhere nothing changes. PyTorch's own default runs cuDNN convolutions in TF32, so the fp32
    reference has to switch that off explicitly to match a CPU's fp32 to float rounding."""
    if torch.device(device).type != "cuda":
        yield
        return
    before = _tf32_state()
    _set_tf32(enabled)
    try:
        yield
    finally:
        _restore_tf32(before)


# torch >= 2.9 has per-backend `fp32_precision` flags beside the legacy `allow_tf32` ones. Setting only some of the
# new ones (cuDNN conv but not RNN) leaves the two APIs disagreeing, and then reading `allow_tf32`, as torch.compile
# does in some versions, raises. The legacy setters set every new flag they stand for, so the switch goes through
# them, and the state before is restored the way it can be read back: through the legacy flags where they read
# (the default), else through the new ones (a caller set those itself).
def _new_flag_owners() -> list[Any]:  # parents before children: a parent's value does not overwrite a child's
    b = torch.backends
    return [b, b.cuda.matmul, b.cudnn, b.cudnn.conv, b.cudnn.rnn]


def _tf32_state() -> tuple[str, tuple]:
    try:
        return "legacy", (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    except RuntimeError:  # the two APIs disagree: only the new flags read
        return "new", tuple(owner.fp32_precision for owner in _new_flag_owners())


def _set_tf32(enabled: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def _restore_tf32(state: tuple[str, tuple]) -> None:
    api, values = state
    if api == "legacy":
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = values
        return
    for owner, value in zip(_new_flag_owners(), values):
        owner.fp32_precision = value


def fast_train_options(device: torch.device) -> dict[str, Any]:
    """TrainRecipe switch values that were faster on this kind of device (key=value overrides for --train).

    `amp` is included where bf16 is native; whether to use it is the caller's choice, since bf16 changes the
    arithmetic (its accuracy check is in tests/test_speed_equivalence.py and benchmarks/README.md).
    """
    device = torch.device(device)
    if device.type == "cuda":  # channels_last stays off until benchmarks/gpu_check.sh has measured it there
        return {"amp": bf16_is_fast(device), "channels_last": False, "eval_batch_size": GPU_EVAL_BATCH}
    return {"amp": bf16_is_fast(device), "channels_last": False, "micro_batch": CPU_MICRO_BATCH,
            "eval_batch_size": CPU_EVAL_BATCH}


def threads_per_job(jobs: int, threads: int | None = None) -> int:
    """Intra-op threads for each of `jobs` processes sharing this process's `threads` (default: torch's current
    count, which follows OMP_NUM_THREADS and torch.set_num_threads rather than the cores), at least 1. CPU
    numbers depend on the thread count, so a sequential run reproduces a `--jobs N` run at this count."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    return max(1, (torch.get_num_threads() if threads is None else threads) // jobs)
