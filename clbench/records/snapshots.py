"""What a run writes beside its record besides the record itself: each order's memory snapshot and each static
set (tensors and a picture), and the check, before any work, that the output folder can take those files.
"""
from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import torch

from clbench.core.atomic import atomic_torch_save, atomic_write_bytes
from clbench.core.errors import UsageError
from clbench.records.record import run_folder


def save_images(record_path: Path, stem: str, state: dict[str, torch.Tensor], dataset) -> tuple[str, str]:
    """`state` ({"images", "labels"}: torch.load(..., weights_only=True)) and a PNG grid of it, one row per class,
    as `<stem>.pt` and `<stem>.png` in the record's folder; their paths relative to the record's folder."""
    folder = run_folder(record_path)
    tensor_file, picture_file = folder / f"{stem}.pt", folder / f"{stem}.png"
    atomic_torch_save(tensor_file, state)
    atomic_write_bytes(picture_file, memory_grid_png(state, dataset))
    return str(tensor_file.relative_to(record_path.parent)), str(picture_file.relative_to(record_path.parent))


def save_memory(record_path: Path, order: int, memory, dataset) -> str:
    """An order's final memory beside the record; the tensors' path, relative to the record's folder."""
    return save_images(record_path, f"memory-order{order}", memory.state(), dataset)[0]


def save_synthetic(record_path: Path, index: int, images: torch.Tensor, labels: torch.Tensor,
                   dataset) -> dict[str, str]:
    """A static run's synthetic set beside the record (as a memory snapshot): the record's file entries."""
    state = {"images": images.detach().cpu(), "labels": labels.detach().cpu()}
    tensors, picture = save_images(record_path, f"synthetic-set{index}", state, dataset)
    return {"synthetic_file": tensors, "picture_file": picture}


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
    """Fail before any work if the output folder cannot take files, or has too little room for them; a refusal
    leaves nothing behind (the folders made for the probe are removed again)."""
    blocking = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        where = "" if blocking == out else f" ({blocking} is)"
        raise UsageError(f"--out {out}: a file, not a folder{where}; name a folder (it is created if missing)")
    created = [p for p in (out, *out.parents) if not p.exists()]  # innermost first
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".clbench-write-test-{time.time_ns()}"
        probe.write_bytes(b"ok")
        probe.unlink()
        free = shutil.disk_usage(out).free
    except OSError as exc:
        _remove_empty(created)
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror}); choose a writable folder") from None
    if free < needed:
        _remove_empty(created)
        raise UsageError(f"--out {out}: only {free / 2**20:.1f} MiB free, and this run writes about "
                         f"{needed / 2**20:.1f} MiB; free space or choose another folder")


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a refused check made (innermost first), stopping at the first one that is not empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return
