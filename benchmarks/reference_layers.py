"""The reference code's own layers, for the baseline side of the benchmarks.

clbench's ConvNet pools with two matrix products on a CPU (`clbench.nets.networks.avg_pool_2x2`); the reference
uses `nn.AvgPool2d(2)`. Inside `reference_layers()` ConvNet pools with `F.avg_pool2d`, so that the baseline is
the reference's structure with the reference's ops, and the ratio counts the pooling among clbench's gains.
The values agree to float rounding either way.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch.nn.functional as F

from clbench.nets import networks


@contextlib.contextmanager
def reference_layers() -> Iterator[None]:
    original = networks.avg_pool_2x2
    networks.avg_pool_2x2 = lambda x: F.avg_pool2d(x, 2)
    try:
        yield
    finally:
        networks.avg_pool_2x2 = original
