from __future__ import annotations

import numpy as np
import pytest
import torch

from clbench.core.errors import UsageError
from clbench.data.streams import class_order, experiences, split_classes


@pytest.mark.parametrize("seed", [0, 1, 4])
@pytest.mark.parametrize("n", [10, 100])
def test_class_order_is_numpys_permutation(seed, n):
    np.random.seed(seed)
    expected = np.random.permutation(n).tolist()
    state = np.random.get_state()[1].copy()
    assert class_order(seed, n) == expected
    assert (np.random.get_state()[1] == state).all()  # the global numpy RNG is left alone


def test_split_refuses_uneven_steps():
    with pytest.raises(UsageError, match="does not divide"):
        split_classes(list(range(10)), 3)
    assert split_classes(list(range(10)), 5) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


def test_every_class_once_and_indices_match_labels():
    g = torch.Generator().manual_seed(0)
    train = torch.randint(0, 10, (500,), generator=g)
    test = torch.randint(0, 10, (100,), generator=g)
    order = class_order(3, 10)
    exps = experiences(train, test, order, 5)
    assert [c for e in exps for c in e.classes] == order
    for e in exps:
        assert set(train[e.train_indices].tolist()) == set(e.classes)
        assert set(test[e.test_indices].tolist()) <= set(e.classes)
        # every sample of those classes is in the experience, none twice
        expected = torch.isin(train, torch.tensor(e.classes)).sum()
        assert e.train_indices.numel() == expected == e.train_indices.unique().numel()
