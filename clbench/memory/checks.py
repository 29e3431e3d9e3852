"""Checks the harness applies to every SyntheticSet it receives, so that a faulty condenser is named at once."""
from __future__ import annotations

import torch

from clbench.core.errors import ClbenchError, CondenserError
from clbench.core.speed import tf32

# Running out of memory says how large the work is for this device, not that the condenser is faulty: it passes
# through to the caller, which says what to lower.
OUT_OF_MEMORY = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), MemoryError)


def condenser_name(condenser) -> str:
    return getattr(condenser, "name", "") or type(condenser).__name__


def run_condenser(condenser, task):
    """`condenser.condense(task)`, with a plugin's own exception named and the result checked. It runs in full
    fp32 on CUDA too, whatever PyTorch's default (TF32 convolutions): the reference arithmetic on every path that
    condenses (continual, static, the contract check); a condenser may switch TF32 on inside (DM's `tf32`)."""
    name = condenser_name(condenser)
    before = fingerprint(task.images), task.labels.clone()
    try:
        with tf32(False, task.device):
            result = condenser.condense(task)
    except (ClbenchError, *OUT_OF_MEMORY):
        raise
    except SystemExit as exc:
        if exc.code not in (0, None):  # a failing exit (submitit's requeue on a time limit exits -1): as it is
            raise
        # sys.exit(0) inside a plugin would end the run "successfully" with an incomplete record: its failure
        raise CondenserError(f"condenser {name!r} called sys.exit({exc.code!r}) inside condense; a condenser "
                             f"raises an exception to fail") from None
    except Exception as exc:  # a plugin's own bug: name it, keep the cause
        raise CondenserError(f"condenser {name!r} raised {type(exc).__name__}: {exc}") from exc
    if not torch.equal(fingerprint(task.images), before[0]) or not torch.equal(task.labels, before[1]):
        raise CondenserError(f"condenser {name!r} changed the real images or labels it was given (task.images, "
                             f"task.labels) in place; work on a copy (images.clone())")
    check_synthetic_set(result, task.images, list(task.classes), task.ipc * getattr(condenser, "expansion", 1), name)
    return result


def checked_shrink(idx, have: int, keep: int, name: str) -> torch.Tensor:
    """A `shrink` rule's result checked as a condensation is: `keep` distinct integer indices in 0..have-1 (a
    CondenserError naming the condenser otherwise, before the memory is touched)."""
    idx = torch.as_tensor(idx)
    valid = idx.dim() == 1 and idx.numel() == keep and not idx.is_floating_point() and not idx.is_complex() \
        and idx.dtype is not torch.bool and bool(((idx >= 0) & (idx < have)).all()) and idx.unique().numel() == keep
    if not valid:
        shown = idx.tolist() if idx.numel() <= 20 else f"{idx.numel()} values of {idx.dtype}"
        raise CondenserError(f"condenser {name!r}: shrink(images of {have}, keep={keep}) returned {shown}; "
                             f"expected {keep} distinct integer indices in 0..{have - 1}")
    return idx


def fingerprint(images: torch.Tensor) -> torch.Tensor:
    """A cheap checksum of the real images, per image: their sum and a fixed pseudo-random projection (one
    matrix product, no copy of the data), so that a condenser writing into `task.images` is caught."""
    flat = images.detach().reshape(images.shape[0], -1)
    weights = torch.ones(flat.shape[1], 2, dtype=flat.dtype, device=flat.device)
    weights[:, 1] = torch.arange(flat.shape[1], device=flat.device).mul(0.6180339887).remainder(1.0)
    return flat @ weights


def check_synthetic_set(result, images_like: torch.Tensor, classes: list[int], ipc: int, name: str) -> None:
    """Raise CondenserError naming the condenser and what is wrong; return quietly when the set is sound. `ipc` is
    the training images expected per class (the budget's images times the condenser's `expansion`)."""
    prefix = f"condenser {name!r} "
    if not hasattr(result, "images") or not hasattr(result, "labels"):
        raise CondenserError(prefix + f"returned {type(result).__name__}, not a SyntheticSet")
    images, labels = result.images, result.labels
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise CondenserError(prefix + "returned images/labels that are not tensors")
    if images.dim() != 4 or tuple(images.shape[1:]) != tuple(images_like.shape[1:]):
        raise CondenserError(
            prefix + f"returned images of shape {tuple(images.shape)}; "
                     f"expected (N, {', '.join(map(str, images_like.shape[1:]))})"
        )
    if not images.is_floating_point():
        raise CondenserError(prefix + f"returned images of dtype {images.dtype}; expected a floating dtype "
                                      f"({images_like.dtype}, the dtype of task.images)")
    if images.dtype != images_like.dtype:
        raise CondenserError(prefix + f"returned images of dtype {images.dtype}; expected {images_like.dtype}, the "
                                      f"dtype of task.images")
    if labels.dtype != torch.long:
        raise CondenserError(prefix + f"returned labels of dtype {labels.dtype}; expected torch.long")
    if images.device != images_like.device or labels.device != images_like.device:
        raise CondenserError(prefix + f"returned tensors on {images.device}/{labels.device}; expected "
                                      f"task.device ({images_like.device})")
    if not isinstance(getattr(result, "facts", {}), dict):
        raise CondenserError(prefix + f"returned facts of type {type(result.facts).__name__}; expected a dict")
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        count = labels.shape[0] if labels.dim() else 0
        raise CondenserError(prefix + f"returned {count} labels for {images.shape[0]} images")
    given = set(classes)
    present = labels.unique().tolist()
    stray = sorted(set(present) - given)
    if stray:
        raise CondenserError(prefix + f"returned labels of classes it was not given: {stray} (given {sorted(given)})")
    counts = {c: int((labels == c).sum()) for c in classes}
    wrong = {c: n for c, n in counts.items() if n != ipc}
    if wrong:
        raise CondenserError(prefix + f"returned the wrong number of images per class (expected {ipc}): {wrong}")
    if not bool(torch.isfinite(images).all()):
        raise CondenserError(prefix + "returned non-finite images (NaN or inf)")
