from __future__ import annotations

import numpy as np
import pytest
import torch

from clbench.core.errors import UsageError
from clbench.data.streams import class_incremental_stream, class_order, split_classes


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


def test_the_runs_stream_holds_each_class_once_in_its_step():
    g = torch.Generator().manual_seed(0)
    train = torch.randint(0, 10, (500,), generator=g)
    test = torch.randint(0, 10, (100,), generator=g)
    order = class_order(3, 10)
    benchmark, groups = class_incremental_stream(train, test, order, 5)
    assert groups == split_classes(order, 5)
    steps = list(zip(benchmark.train_stream, benchmark.test_stream))
    assert len(steps) == 5
    for (train_exp, test_exp), classes in zip(steps, groups):
        assert set(train_exp.classes_in_this_experience) == set(classes)
        train_idx = torch.tensor(list(train_exp.dataset.sample_index), dtype=torch.long)
        test_idx = torch.tensor(list(test_exp.dataset.sample_index), dtype=torch.long)
        # every sample of those classes is in the step, none twice, and no other class
        for labels, idx in ((train, train_idx), (test, test_idx)):
            assert set(labels[idx].tolist()) <= set(classes)
            assert idx.numel() == torch.isin(labels, torch.tensor(classes)).sum() == idx.unique().numel()
