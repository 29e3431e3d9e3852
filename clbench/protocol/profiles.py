"""The profiles, in one table: what `paper` and `quick` fix for the harness itself.

`paper` is the published protocol; `quick` is sized for a 2-core CPU; `auto` is paper on CUDA and quick
otherwise (clbench.protocol.resolve). The values a profile gives a condenser's or the training recipe's options
are declared with each option (`option(default, ..., quick=...)`, clbench.core.options), beside what they mean;
the values below belong to no option dataclass, so they live here.
"""
from __future__ import annotations

PROFILES = ("auto", "paper", "quick")

# Networks trained from scratch per continual step (the paper: 3).
NETWORKS_PER_STEP = {"paper": 3, "quick": 1}
# ConvNet width: the paper's 128; the quick profile's 32 (measured on 2 CPU cores: a 200-image training epoch
# costs ~0.15 s at width 32 against ~1 s at 128, with random-memory accuracy a few points lower).
CONVNET_WIDTH = {"paper": 128, "quick": 32}
# The static protocol (`clbench condense`): synthetic sets, and trainings per set and evaluation network.
STATIC_SETS = {"paper": 5, "quick": 2}
STATIC_EVALS = {"paper": 5, "quick": 2}
