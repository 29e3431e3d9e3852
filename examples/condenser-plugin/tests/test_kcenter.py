"""The plugin's own tests: the clbench contract, and the selection rule on points whose answer is known."""
from __future__ import annotations

import torch
from clbench_kcenter import KCenter, kcenter_order

from clbench.testing import check_condenser


def test_contract():
    check_condenser(KCenter)


def test_contract_with_more_images_per_class():
    check_condenser(KCenter, ipc=5, classes=(3, 7))


def test_order_starts_near_the_mean_then_goes_far():
    points = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [-3.0, 0.0]])
    # mean (0.525, 0) -> nearest is [0.1, 0] (index 1); farthest from it: [5, 0]; then [-3, 0]
    assert kcenter_order(points, 3).tolist() == [1, 2, 3]
