from __future__ import annotations

import torch

from clbench.data.datasets import load_dataset
from clbench.nets.augment import make_augment
from clbench.nets.networks import build_network
from clbench.training.recipe import TrainRecipe, evaluate, per_class_accuracy, train_network


def test_per_class_accuracy_by_hand():
    predictions = torch.tensor([0, 1, 1, 2, 2, 2])
    labels = torch.tensor([0, 1, 2, 2, 2, 0])
    result = per_class_accuracy(predictions, labels, [0, 1, 2])
    assert result.keys() == {0, 1, 2}
    assert [round(result[c], 4) for c in (0, 1, 2)] == [50.0, 100.0, round(200 / 3, 4)]


def test_trained_network_beats_chance_on_digits():
    ds = load_dataset("digits")
    x, y = ds.normalised("train", "cpu")
    tx, ty = ds.normalised("test", "cpu")
    g = torch.Generator().manual_seed(0)
    pick = torch.cat([torch.nonzero(y == c).flatten()[:10] for c in range(10)])  # 10 images per class
    recipe = TrainRecipe(epochs=60, batch_size=256)
    net = build_network("convnet", 1, 10, 8, seed=0)
    loss = train_network(net, x[pick], y[pick], recipe, make_augment(recipe.dsa_strategy), g)
    acc, per_class = evaluate(net, tx, ty, recipe)
    assert loss == loss and acc > 50.0  # chance is 10%
    assert set(per_class) == set(range(10))


def test_training_is_repeatable_with_a_seed():
    ds = load_dataset("digits")
    x, y = ds.normalised("train", "cpu")
    recipe = TrainRecipe(epochs=3)
    weights = []
    for _ in range(2):
        net = build_network("convnet", 1, 10, 8, seed=1)
        augment = make_augment(recipe.dsa_strategy)
        train_network(net, x[:100], y[:100], recipe, augment, torch.Generator().manual_seed(5))
        weights.append(torch.cat([p.flatten() for p in net.parameters()]))
    assert torch.equal(weights[0], weights[1])
