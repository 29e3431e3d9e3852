"""Seeds derived from the run seed and a position (order, step, purpose), never from a shared global RNG.

Each (order, step) gets its own generators, so a resumed run or an order run in another process draws exactly
what an uninterrupted sequential run draws.
"""
from __future__ import annotations

import numpy as np
import torch

from clbench.core.errors import UsageError

PURPOSES = {"condense": 1, "shrink": 2, "network": 3, "train": 4}
# numpy's seeds (SeedSequence, and RandomState, which draws the class orders) are integers in 0 .. 2**32 - 1
MAX_SEED = 2**32 - 1


def check_seed(value: object, what: str = "--seed") -> None:
    """Refuse a seed numpy would refuse later, mid-run: one line naming `what` and the range."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise UsageError(f"{what} {value}: give an integer from 0 to {MAX_SEED}")


def derive_seed(seed: int, order: int, step: int, purpose: str, index: int = 0) -> int:
    """A 63-bit seed unique to (seed, order, step, purpose, index)."""
    sequence = np.random.SeedSequence([seed, order, step, PURPOSES[purpose], index])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)
