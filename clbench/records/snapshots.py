"""What a run writes beside its record besides the record itself: each order's memory snapshot (tensors and a
picture), and the check, before any work, that the output folder can take those files.
"""
from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import torch

from clbench.core.errors import UsageError
from clbench.records.record import atomic_torch_save, atomic_write_bytes, run_folder


def save_memory(record_path: Path, order: int, memory, dataset) -> str:
    """Tensors (torch.load(..., weights_only=True)) and a PNG grid, one row per class, beside the record."""
    folder = run_folder(record_path)
    state = memory.state()
    tensor_file = folder / f"memory-order{order}.pt"
    atomic_torch_save(tensor_file, state)
    atomic_write_bytes(folder / f"memory-order{order}.png", memory_grid_png(state, dataset))
    return str(tensor_file.relative_to(record_path.parent))


def memory_grid_png(state: dict[str, torch.Tensor], dataset) -> bytes:
    """The images of `state` as a PNG, one row per class (every class holds as many as the first)."""
    from torchvision.transforms.functional import to_pil_image
    from torchvision.utils import make_grid

    images, labels = state["images"], state["labels"]
    per_class = int((labels == labels[0]).sum()) if labels.numel() else 1
    pixels = dataset.denormalise(images.float())
    grid = make_grid(pixels, nrow=max(per_class, 1), padding=1, pad_value=1.0)
    buffer = io.BytesIO()
    to_pil_image(grid).save(buffer, format="PNG")
    return buffer.getvalue()


def check_writable(out: Path, needed: int = 0) -> None:
    """Fail before any work if the output folder cannot take files, or has too little room for them."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".clbench-write-test-{time.time_ns()}"
        probe.write_bytes(b"ok")
        probe.unlink()
        free = shutil.disk_usage(out).free
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror}); choose a writable folder") from None
    if free < needed:
        raise UsageError(f"--out {out}: only {free / 2**20:.1f} MiB free, and this run writes about "
                         f"{needed / 2**20:.1f} MiB; free space or choose another folder")
