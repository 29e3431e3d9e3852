from __future__ import annotations

import torch

from clbench.condensers.herding import herding_order


def test_herding_on_hand_made_features():
    # mean = (1, 1). Step 1: closest to mu is (1, 1) itself (index 2).
    # Step 2: target 2*mu - (1,1) = (1,1) again, (1,1) is taken; (0,0) and (2,2) tie at distance sqrt(2),
    # (2,0) and (0,2) also sqrt(2) -> argmin takes the first, index 0.
    # Step 3: target 3*mu - (1,1) - (0,0) = (2,2): index 1 exactly.
    features = torch.tensor([[0.0, 0.0], [2.0, 2.0], [1.0, 1.0], [2.0, 0.0], [0.0, 2.0]])
    order = herding_order(features, 5)
    assert order[:3].tolist() == [2, 0, 1]
    assert sorted(order.tolist()) == [0, 1, 2, 3, 4]  # no repeats


def test_herding_prefix_tracks_mean_better_than_random():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(400, 16, generator=g) * torch.linspace(0.5, 3, 16)
    mu = features.mean(0)
    order = herding_order(features, 10)
    herd_err = torch.linalg.vector_norm(features[order].mean(0) - mu)
    random_errs = [torch.linalg.vector_norm(features[torch.randperm(400, generator=g)[:10]].mean(0) - mu)
                   for _ in range(20)]
    assert herd_err < min(random_errs)


def test_embedding_chunk_size_does_not_change_the_selection():
    """batch_size is speed only: 0 (automatic), a few images or all at once pick the same images; < 0 is refused."""
    import pytest

    from clbench.condensers.base import CondenseTask
    from clbench.condensers.herding import Herding
    from clbench.core.errors import UsageError
    from clbench.core.options import build_options
    from clbench.data.datasets import load_dataset
    from clbench.nets.augment import DSA
    from clbench.nets.networks import build_network

    images, labels = load_dataset("digits").normalised("train")

    def run(batch_size: str):
        task = CondenseTask(images, labels, (1, 7), 4, torch.Generator().manual_seed(0),
                            lambda seed=None: build_network("convnet", 1, 10, 8, seed=seed or 0, width=8), DSA(),
                            torch.device("cpu"), 10)
        return Herding(build_options(Herding.Options, {"batch_size": batch_size})).condense(task).images

    automatic = run("0")
    torch.testing.assert_close(run("7"), automatic, rtol=0, atol=0)
    torch.testing.assert_close(run("100000"), automatic, rtol=0, atol=0)
    with pytest.raises(UsageError, match="batch_size"):
        run("-1")
