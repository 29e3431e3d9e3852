"""DSA gradient matching: the distances by hand, the loop tables, gradient flow, learning, determinism, BN."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from clbench.condensers.base import CondenseTask
from clbench.condensers.dsa import (
    DSACondenser,
    DSAOptions,
    default_loops,
    freeze_batchnorm,
    layer_distance,
    match_distance,
    matching_loss,
    resolve_loops,
)
from clbench.core.errors import UsageError
from clbench.core.options import build_options
from clbench.nets.augment import DSA
from clbench.nets.networks import ConvNet

EPS = 1e-6

# Hand-made gradients: a conv weight (2 rows of 1x2x2), a linear weight (2x3) and a bias.
CONV_R = torch.tensor([[1.0, 0, 0, 0], [0, 2, 0, 0]]).reshape(2, 1, 2, 2)
CONV_S = torch.tensor([[1.0, 1, 0, 0], [0, -3, 0, 0]]).reshape(2, 1, 2, 2)
LIN_R = torch.tensor([[1.0, 2, 2], [3, 0, 4]])
LIN_S = torch.tensor([[2.0, 1, -2], [3, 0, 4]])
BIAS_R = torch.tensor([1.0, 2])
BIAS_S = torch.tensor([-5.0, 3])
# conv: row 0 cos = 1/sqrt(2); row 1 cos = -6/6 = -1.  linear: row 0 orthogonal (cos 0); row 1 identical.
CONV_D = (1 - 1 / (math.sqrt(2) + EPS)) + (1 + 6 / (6 + EPS))
LIN_D = (1 - 0) + (1 - 25 / (25 + EPS))


# ------------------------------------------------------------------------------------------------ distances
def test_layer_distance_conv_rows_by_hand():
    assert layer_distance(CONV_R, CONV_S).item() == pytest.approx(CONV_D, abs=1e-6)
    assert CONV_D == pytest.approx(2 - 1 / math.sqrt(2) + 1, abs=1e-5)


def test_layer_distance_linear_by_hand():
    assert layer_distance(LIN_R, LIN_S).item() == pytest.approx(LIN_D, abs=1e-6)
    assert LIN_D == pytest.approx(1.0, abs=1e-6)


def test_layer_distance_ignores_bias_and_is_row_scale_invariant():
    assert layer_distance(BIAS_R, BIAS_S).item() == 0.0
    scaled = LIN_S * torch.tensor([[3.0], [0.5]])  # a positive scale per row changes no cosine
    assert layer_distance(LIN_R, scaled).item() == pytest.approx(LIN_D, abs=1e-5)
    with pytest.raises(ValueError):
        layer_distance(LIN_R, CONV_S)


def test_match_distance_ours_sums_layers_bias_ignored():
    d = match_distance([CONV_R, LIN_R, BIAS_R], [CONV_S, LIN_S, BIAS_S], "ours")
    assert d.item() == pytest.approx(CONV_D + LIN_D, abs=1e-5)


def test_match_distance_mse_and_cos_by_hand():
    real, syn = [CONV_R, LIN_R, BIAS_R], [CONV_S, LIN_S, BIAS_S]
    # squared differences: conv 1 + 25, linear 1 + 1 + 16, bias 36 + 1
    assert match_distance(real, syn, "mse").item() == pytest.approx(81.0)
    # concatenated: dot = -5 + 25 + 1 = 21, |r|^2 = 5 + 34 + 5 = 44, |s|^2 = 11 + 34 + 34 = 79
    expected = 1 - 21 / (math.sqrt(44 * 79) + EPS)
    assert match_distance(real, syn, "cos").item() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(UsageError):
        match_distance(real, syn, "l1")


# ------------------------------------------------------------------------------------------------ loops
@pytest.mark.parametrize(
    "ipc, loops",
    [(1, (1, 1)), (10, (10, 50)), (20, (20, 25)), (30, (30, 20)), (50, (50, 10)),
     (15, (10, 50)), (16, (20, 25)), (2, (1, 1)), (100, (50, 10))],
)
def test_default_loops_table_and_nearest(ipc, loops):
    assert default_loops(ipc) == loops
    assert resolve_loops("", ipc) == loops


def test_explicit_loops_parsing():
    assert resolve_loops("5,3", 20) == (5, 3)
    assert resolve_loops(" 4 , 0 ", 1) == (4, 0)
    for bad in ("abc", "1,2,3", "0,5", "7"):
        with pytest.raises(UsageError):
            resolve_loops(bad, 10)


def test_options_profiles_and_registry():
    from clbench.condensers import get_condenser

    assert get_condenser("dsa") is DSACondenser
    paper = build_options(DSAOptions, {}, "paper")
    got = (paper.iterations, paper.lr_img, paper.momentum, paper.lr_net, paper.batch_real)
    assert got == (1000, 0.1, 0.5, 0.01, 256)
    assert paper.loops == "" and paper.distance == "ours" and paper.init == "real"
    quick = build_options(DSAOptions, {"distance": "mse"}, "quick")
    assert quick.iterations < paper.iterations and quick.distance == "mse"
    with pytest.raises(UsageError):
        build_options(DSAOptions, {"distance": "l2"})


# ------------------------------------------------------------------------------------------------ digits
@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - x.mean()) / x.std()
    return x, torch.tensor(d.target, dtype=torch.long)


def small_net(seed: int, width: int = 8, norm: str = "instance") -> nn.Module:
    """A one-block ConvNet for 8x8 digits (the default depth would instance-normalise a 2x2 map)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ConvNet(1, 10, 8, width=width, depth=1, norm=norm)


def make_task(digits, classes=(3, 7), ipc=4, seed=0, norm="instance", width=8, **kw) -> CondenseTask:
    x, y = digits
    keep = torch.isin(y, torch.tensor(classes))
    net_gen = torch.Generator().manual_seed(seed + 1000)

    def new_network() -> nn.Module:
        return small_net(int(torch.randint(2**31, (1,), generator=net_gen)), width, norm)

    return CondenseTask(images=x[keep], labels=y[keep], classes=tuple(classes), ipc=ipc,
                        generator=torch.Generator().manual_seed(seed), new_network=new_network, augment=DSA(),
                        device=torch.device("cpu"), num_classes=10, **kw)


def fixed_loss(digits, images: torch.Tensor, width: int, classes=(3, 7), ipc=4) -> float:
    """Matching loss on fixed networks, fixed real batches and fixed DSA draws: a yardstick for `images`."""
    x, y = digits
    real = [x[y == c][:64] for c in classes]
    total = 0.0
    for s in range(4):
        net = small_net(100 + s, width)
        loss = matching_loss(net, real, images.split(ipc), classes, DSA(), torch.Generator().manual_seed(s))
        total += loss.item()
    return total / 4


def test_gradient_flows_to_synthetic_images(digits):
    x, y = digits
    net = small_net(0)
    syn = x[:8].clone().requires_grad_(True)
    real = [x[y == 3][:32], x[y == 7][:32]]
    opt = torch.optim.SGD([syn], lr=0.1, momentum=0.5)
    before = syn.detach().clone()
    loss = matching_loss(net, real, syn.split(4), (3, 7), DSA(), torch.Generator().manual_seed(0))
    opt.zero_grad()
    loss.backward(inputs=[syn])
    opt.step()
    assert syn.grad is not None and torch.isfinite(syn.grad).all()
    assert syn.grad.abs().sum() > 0
    assert not torch.equal(before, syn.detach())


def test_few_iterations_lower_matching_loss(digits):
    init = DSACondenser(DSAOptions(iterations=0)).condense(make_task(digits, width=16)).images
    opts = DSAOptions(iterations=4, batch_real=32, loops="3,2")
    calls = []
    task = make_task(digits, width=16, progress=lambda d, t, info: calls.append((d, t, dict(info))))
    out = DSACondenser(opts).condense(task)
    # measured 3.54 -> 2.36 when written
    assert fixed_loss(digits, out.images, 16) < 0.85 * fixed_loss(digits, init, 16)
    assert [c[:2] for c in calls] == [(i, 4) for i in range(1, 5)]
    assert math.isfinite(calls[-1][2]["loss"])
    facts = out.facts
    assert (facts["iterations"], facts["outer_loop"], facts["inner_loop"]) == (4, 3, 2)
    assert facts["distance"] == "ours" and facts["init"] == "real" and facts["final_loss"] == calls[-1][2]["loss"]
    assert facts["network_batchnorm"] is False
    assert out.labels.tolist() == [3] * 4 + [7] * 4
    assert out.images.shape == (8, 1, 8, 8) and not out.images.requires_grad


def test_init_real_draws_real_images_and_noise_does_not(digits):
    task = make_task(digits)
    out = DSACondenser(DSAOptions(iterations=0)).condense(task)
    x = task.images
    for img, lab in zip(out.images, out.labels):
        assert ((x[task.labels == lab] - img).abs().flatten(1).amax(1) == 0).any()
    noise = DSACondenser(DSAOptions(iterations=0, init="noise")).condense(make_task(digits)).images
    assert noise.shape == out.images.shape and not torch.equal(noise, out.images)


def test_same_seed_same_result_other_seed_differs(digits):
    opts = DSAOptions(iterations=2, batch_real=32, loops="2,1")
    a = DSACondenser(opts).condense(make_task(digits, seed=3)).images
    b = DSACondenser(opts).condense(make_task(digits, seed=3)).images
    c = DSACondenser(opts).condense(make_task(digits, seed=4)).images
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("distance", ["mse", "cos"])
def test_other_distances_and_no_dsa_run(digits, distance):
    opts = DSAOptions(iterations=1, batch_real=32, loops="2,1", distance=distance, dsa=False)
    task = make_task(digits)
    out = DSACondenser(opts).condense(task)
    assert torch.isfinite(out.images).all() and math.isfinite(out.facts["final_loss"])


def test_freeze_batchnorm_sets_statistics_then_eval(digits):
    x, _ = digits
    net = small_net(0, norm="batch")
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns
    freeze_batchnorm(net, x[:32])
    assert all(not m.training for m in bns)
    assert all(m.running_mean.abs().sum() > 0 for m in bns)
    stats = bns[0].running_mean.clone()
    net(x[32:64])  # frozen: a forward no longer moves the statistics
    assert torch.equal(stats, bns[0].running_mean)


def test_batchnorm_network_condenses(digits):
    opts = DSAOptions(iterations=2, batch_real=32, loops="2,1")
    task = make_task(digits, norm="batch")
    init = DSACondenser(DSAOptions(iterations=0)).condense(make_task(digits, norm="batch")).images
    out = DSACondenser(opts).condense(task)
    assert torch.isfinite(out.images).all() and not torch.equal(out.images, init)
    assert out.facts["network_batchnorm"] is True


def test_bad_options_raise(digits):
    with pytest.raises(UsageError):
        DSACondenser(DSAOptions(loops="x")).condense(make_task(digits))
    with pytest.raises(UsageError):
        DSACondenser(DSAOptions(batch_real=0)).condense(make_task(digits))


def test_augmentation_choice(digits):
    """The dsa and dsa_strategy options pick the condenser's augmentation (CondenseTask.augmentation, as DM)."""
    task = make_task(digits)

    def chosen(o: DSAOptions):
        return task.augmentation(o.dsa, o.dsa_strategy)

    assert chosen(DSAOptions(dsa=False)).is_identity
    assert chosen(DSAOptions()) is task.augment
    assert chosen(DSAOptions(dsa_strategy="flip")).tokens == ("flip",)


def test_contract_check():
    from clbench.testing import check_condenser

    check_condenser(DSACondenser, options={"iterations": 1, "loops": "2,1", "batch_real": 16})


def test_class_smaller_than_ipc_and_batch(digits):
    task = make_task(digits, ipc=3)
    keep = torch.cat([torch.nonzero(task.labels == 3).flatten()[:2], torch.nonzero(task.labels == 7).flatten()])
    task.images, task.labels = task.images[keep], task.labels[keep]  # class 3 has 2 real images, ipc is 3
    out = DSACondenser(DSAOptions(iterations=1, loops="1,0", batch_real=256)).condense(task)
    assert out.labels.tolist() == [3, 3, 3, 7, 7, 7] and torch.isfinite(out.images).all()
