"""Where clbench computes what the reference code (DatasetCondensation's utils.py and CL_DM.py) computes under a
current PyTorch, each written here the way the reference writes it, not through clbench's functions:

- DSA's scale and rotate resample on `F.affine_grid(theta, x.shape)` / `F.grid_sample(x, grid)` with no
  align_corners argument (False since PyTorch 1.3); clbench's earlier True is the same mapping to float rounding;
- `evaluate_synset` trains Epoch + 1 epochs and, after epoch Epoch // 2 + 1, multiplies the lr by 0.1 in a new
  SGD optimiser (the momentum starts again);
- CL_DM.py's random memory: numpy seeded with the order, the class order, then each class's indices permuted.

The paper profile computes these; the quick profile keeps clbench's earlier choices (its records stay valid),
and records written before the options existed are read as having used the earlier ones.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clbench.nets.augment import DSA, DSAParams, rotate, scale


def _image(n: int = 3, size: int = 9) -> torch.Tensor:
    """A hand-made batch with structure in every direction (ramps and a bright off-centre block)."""
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                          indexing="ij")
    base = (0.1 * x + 0.03 * y * y).expand(n, 1, size, size).clone()
    base[:, :, 1:4, 5:8] += 2.0
    return base * torch.arange(1, n + 1, dtype=torch.float32).view(n, 1, 1, 1)


def _reference_resample(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # older PyTorch warned that the default had changed
        grid = F.affine_grid(theta, x.shape)
        return F.grid_sample(x, grid)


def test_scale_and_rotate_sample_the_reference_grid():
    x = _image()
    sx, sy = torch.tensor([0.85, 1.0, 1.19]), torch.tensor([1.12, 0.9, 1.0])
    theta = torch.zeros(3, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = sx, sy
    assert torch.equal(scale(x, sx, sy, align_corners=False), _reference_resample(x, theta))
    # clbench's earlier call: the same mapping (same arguments to both functions, no translation), so only
    # float rounding tells them apart
    assert torch.allclose(scale(x, sx, sy, align_corners=True), _reference_resample(x, theta), rtol=0, atol=1e-4)

    angle = torch.tensor([math.radians(-14.0), math.radians(3.0), math.radians(11.0)])
    theta = torch.zeros(3, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle), -torch.sin(angle)
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle), torch.cos(angle)
    assert torch.equal(rotate(x, angle, align_corners=False), _reference_resample(x, theta))
    assert torch.allclose(rotate(x, angle, align_corners=True), _reference_resample(x, theta), rtol=0, atol=1e-4)


def test_the_two_grids_differ_where_affine_grid_and_grid_sample_disagree():
    """What would be a real difference (and what the ~3.6% figure in issue 31 describes): a grid built with one
    convention and sampled with the other. clbench passes one value to both, as the reference does."""
    x = _image(1, 28)
    theta = torch.tensor([[[1.1, 0.0, 0.0], [0.0, 0.9, 0.0]]])
    mixed = F.grid_sample(x, F.affine_grid(theta, x.shape, align_corners=True), align_corners=False)
    assert not torch.allclose(mixed, _reference_resample(x, theta), atol=1e-2)
    assert torch.equal(scale(x, theta[:, 0, 0], theta[:, 1, 1], align_corners=False), _reference_resample(x, theta))


@pytest.mark.parametrize("token", ["scale", "rotate"])
def test_the_dsa_object_passes_its_grid_to_the_ops(token):
    x = _image()
    p = DSA(token).sample(torch.arange(3), torch.Generator().manual_seed(4), share_params=True)
    op = {"scale": lambda a: scale(x, p.scale_x, p.scale_y, a), "rotate": lambda a: rotate(x, p.rotate, a)}[token]
    for align in (False, True):
        assert torch.equal(DSA(token, align_corners=align).apply(x, p), op(align))
    assert isinstance(p, DSAParams)


def test_the_paper_profile_uses_the_reference_grid_and_the_quick_profile_keeps_its_own():
    from clbench.condensers import get_condenser
    from clbench.core.options import build_options
    from clbench.protocol.resolve import train_recipe

    assert train_recipe({}, "paper").dsa_align_corners is False
    assert train_recipe({}, "quick").dsa_align_corners is True
    assert train_recipe({}, "paper").augment().align_corners is False
    assert train_recipe({}, "quick").augment().align_corners is True
    for name in ("dm", "ddm", "datadam", "idm", "dsa"):
        options = get_condenser(name).Options
        assert build_options(options, {}, "paper").dsa_align_corners is False, name
        assert build_options(options, {}, "quick").dsa_align_corners is True, name


def test_a_condensers_grid_reaches_the_augmentation_it_uses():
    from clbench.testing import make_task

    task = make_task(classes=(0, 1), ipc=2)
    assert task.augmentation(True, "", False).align_corners is False
    assert task.augmentation(True, "", True).align_corners is True
    assert task.augmentation(True, "scale", True).tokens == ("scale",)
    assert task.augmentation(True, "scale", True).align_corners is True
    assert task.augmentation(False, "", True).is_identity


# -- the evaluation schedule ------------------------------------------------------------------------------
def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(40, 1, 4, 4, generator=g), torch.randint(0, 3, (40,), generator=g)


def _epoch(net, optimizer, x, y, g: torch.Generator, batch: int) -> float:
    """One epoch of plain SGD over a seeded permutation (clbench's minibatch draw); the epoch's mean loss."""
    order, total = torch.randperm(x.shape[0], generator=g), 0.0
    for start in range(0, x.shape[0], batch):
        idx = order[start:start + batch]
        loss = F.cross_entropy(net(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * idx.numel()
    return total / x.shape[0]


def _reference_training(epochs: int, batch: int, seed: int) -> tuple[torch.nn.Module, list[float]]:
    """evaluate_synset's loop (no augmentation), with the minibatches clbench draws: a seeded randperm a epoch."""
    net, (x, y) = _net(), _data()
    lr = 0.01
    lr_schedule = [epochs // 2 + 1]
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=0.0005)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for ep in range(epochs + 1):
        losses.append(_epoch(net, optimizer, x, y, g, batch))
        if ep in lr_schedule:
            lr *= 0.1
            optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=0.0005)
    return net, losses


def _halves_training(epochs: int, batch: int, seed: int) -> tuple[torch.nn.Module, list[float]]:
    """clbench's earlier schedule: `epochs` epochs, lr x0.1 from epoch epochs // 2, one optimiser throughout."""
    net, (x, y) = _net(), _data()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for ep in range(epochs):
        if ep == epochs // 2:
            optimizer.param_groups[0]["lr"] *= 0.1
        losses.append(_epoch(net, optimizer, x, y, g, batch))
    return net, losses


@pytest.mark.parametrize("schedule,epochs", [("reference", 6), ("reference", 7), ("halves", 6)])
def test_the_schedule_matches_a_plain_loop_epoch_by_epoch(schedule, epochs):
    from clbench.nets.augment import make_augment
    from clbench.training.recipe import TrainRecipe, train_network

    recipe = TrainRecipe(epochs=epochs, batch_size=16, dsa=False, schedule=schedule, amp=False,
                         batched_networks=False)
    net, (x, y) = _net(), _data()
    losses: list[float] = []
    train_network(net, x, y, recipe, make_augment(None), torch.Generator().manual_seed(3),
                  on_loss=lambda epoch, loss: losses.append(loss))
    expected_net, expected = (_reference_training if schedule == "reference" else _halves_training)(epochs, 16, 3)
    assert len(losses) == len(expected) == recipe.total_epochs
    assert losses == pytest.approx(expected, rel=1e-5, abs=1e-6)
    for a, b in zip(net.parameters(), expected_net.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_schedule_that_drops_the_momentum_differs_from_one_that_keeps_it():
    """The reset is visible: the same epochs and decay point with the momentum carried over end elsewhere."""
    from clbench.nets.augment import make_augment
    from clbench.training.recipe import TrainRecipe, decay_lr, train_network

    recipe = TrainRecipe(epochs=6, batch_size=16, dsa=False, schedule="reference", amp=False)
    assert (recipe.total_epochs, recipe.decay_epoch) == (7, 5)  # decayed after epoch 4 (= 6 // 2 + 1)
    net, (x, y) = _net(), _data()
    train_network(net, x, y, recipe, make_augment(None), torch.Generator().manual_seed(3))
    kept = _net()
    optimizer = torch.optim.SGD(kept.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
    g = torch.Generator().manual_seed(3)
    for ep in range(7):
        if ep == 5:
            optimizer.param_groups[0]["lr"] *= 0.1
        _epoch(kept, optimizer, x, y, g, 16)
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(net.parameters(), kept.parameters()))
    # and decay_lr itself: the lr falls once, at decay_epoch, and the state is emptied only then
    opt = torch.optim.SGD(_net().parameters(), lr=0.01, momentum=0.9)
    opt.state[next(iter(opt.param_groups[0]["params"]))]["momentum_buffer"] = torch.zeros(1)
    for ep in range(7):
        decay_lr(opt, recipe, ep)
        assert opt.param_groups[0]["lr"] == pytest.approx(0.01 if ep < 5 else 0.001)
        assert bool(opt.state) == (ep < 5)


def test_the_paper_profile_uses_the_reference_schedule():
    from clbench.protocol.resolve import train_recipe

    paper, quick = train_recipe({}, "paper"), train_recipe({}, "quick")
    assert (paper.schedule, paper.total_epochs, paper.decay_epoch) == ("reference", 1001, 502)
    assert (quick.schedule, quick.total_epochs, quick.decay_epoch) == ("halves", 60, 30)


# -- the random memory --------------------------------------------------------------------------------------
def test_random_draws_the_reference_memory_of_an_order(tmp_path):
    """CL_DM.py, order 3, written out: np.random.seed(3); the class order; then for each step's classes in
    order, np.random.permutation(indices of the class)[:ipc]. The run's memory holds exactly those images."""
    from clbench.data.datasets import load_dataset
    from clbench.protocol.config import RunConfig
    from clbench.protocol.continual import run

    path, record = run(RunConfig(condenser="random", dataset="digits", steps=2, orders=1, first_order=3,
                                 memory="4ipc", width=8, profile="quick", device="cpu", out=str(tmp_path),
                                 opt={"draw": "reference"}, train={"epochs": 1}))
    assert record["config"]["condenser_options"]["draw"] == "reference"
    steps = record["orders"][0]["steps"]
    assert all(s["condenser_facts"]["draw"] == "reference" for s in steps)

    ds = load_dataset("digits")
    train_x, train_y = ds.normalised("train")
    labels = train_y.tolist()
    indices_class = [[i for i, lab in enumerate(labels) if lab == c] for c in range(10)]
    np.random.seed(3)
    class_order = np.random.permutation(10).tolist()
    assert record["orders"][0]["class_order"] == class_order
    expected = []
    for c in class_order:  # two steps of five: every class of the order, in order
        expected.append(train_x[np.random.permutation(indices_class[c])[:4]])
    memory = torch.load(path.parent / record["orders"][0]["memory_file"], weights_only=True)
    by_class = {c: memory["images"][memory["labels"] == c] for c in class_order}
    for c, images in zip(class_order, expected):
        assert torch.equal(by_class[c], images), c


def test_random_reference_permutations_replay_the_classes_before():
    from clbench.condensers.random import reference_permutations

    sizes = [5, 7, 6, 8]
    state = np.random.RandomState(11)
    order = state.permutation(4).tolist()
    by_hand = {c: state.permutation(sizes[c]) for c in order}
    later = order[2:]
    found = reference_permutations(11, order, sizes, later)
    assert set(found) == set(later)
    for c in later:
        assert np.array_equal(found[c], by_hand[c])


def test_random_generator_draw_is_the_quick_default_and_records_say_which():
    from clbench.condensers import get_condenser
    from clbench.core.options import build_options
    from clbench.testing import make_task

    Random = get_condenser("random")
    assert build_options(Random.Options, {}, "paper").draw == "reference"
    assert build_options(Random.Options, {}, "quick").draw == "generator"
    task = make_task(classes=(0, 1), ipc=2)  # no class order: a static set or the contract check
    result = Random(build_options(Random.Options, {}, "paper")).condense(task)
    assert result.facts["draw"] == "generator"


def test_records_from_before_the_options_pool_with_runs_that_set_the_old_values():
    """A record without the keys ran with align_corners=True, the halves schedule and the generator draw: compare
    reads it so, and resume does not call the missing keys a difference."""
    from clbench.protocol.checkpoint import config_differences
    from clbench.report.rows import protocol_variant as variant

    old = {"condenser": "random", "profile": "paper", "network": "convnet", "networks_per_step": 3,
           "train": {"epochs": 1000}, "condenser_options": {}}
    new = {**old, "train": {"epochs": 1000, "dsa_align_corners": True, "schedule": "halves"},
           "condenser_options": {"draw": "generator"}}
    assert variant({"config": old}) == variant({"config": new})
    assert variant({"config": old})["opt.draw"] == "generator"
    assert config_differences(old, new) == []
    changed = {**new, "train": {"epochs": 1000, "dsa_align_corners": False, "schedule": "halves"}}
    assert config_differences(old, changed) == ["train.dsa_align_corners: True in the record, False now"]
