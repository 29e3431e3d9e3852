"""Seeds derived from the run seed and a position (order, step, purpose), never from a shared global RNG.

Each (order, step) gets its own generators, so a resumed run or an order run in another process draws exactly
what an uninterrupted sequential run draws.
"""
from __future__ import annotations

import numpy as np
import torch

PURPOSES = {"condense": 1, "shrink": 2, "network": 3, "train": 4}


def derive_seed(seed: int, order: int, step: int, purpose: str, index: int = 0) -> int:
    """A 63-bit seed unique to (seed, order, step, purpose, index)."""
    sequence = np.random.SeedSequence([seed, order, step, PURPOSES[purpose], index])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)
