"""Networks: ConvNet shapes and taps, every registered net trains a step, seeded builds, sample independence."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from clbench.core.errors import UsageError
from clbench.nets.networks import (
    NETWORK_NAMES,
    ConvNet,
    build_network,
    default_convnet_depth,
    samples_are_independent,
)
from tests.reference_nets import ReferenceStyleConvNet


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [28, 32])
def test_convnet_embed_is_2048_at_full_width(channels: int, size: int) -> None:
    net = ConvNet(channels, 10, size)
    x = torch.randn(2, channels, size, size)
    assert net.depth == 3 and net.embed_dim == 2048
    assert net.embed(x).shape == (2, 2048)
    assert net(x).shape == (2, 10)


@pytest.mark.parametrize("size, depth, final", [(8, 2, 2), (16, 3, 2), (28, 3, 4), (32, 3, 4), (64, 4, 4), (128, 5, 4)])
def test_convnet_default_depth(size: int, depth: int, final: int) -> None:
    assert default_convnet_depth(size) == depth
    net = ConvNet(3, 10, size, width=8)
    assert net.feature_shape == (8, final, final)
    assert net.embed(torch.randn(1, 3, size, size)).shape == (1, 8 * final * final)


def test_convnet_too_deep_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        ConvNet(3, 10, 8, width=8, depth=4)


@pytest.mark.parametrize("size", [28, 32])
def test_style_taps_equal_the_reference_structures_stored_maps(size: int) -> None:
    net = ConvNet(1, 10, size, width=8)
    with torch.no_grad():  # a non-trivial affine, so that a missing or misplaced ReLU shows
        for norm in net.norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, 1, size, size)
    emb, taps = net.embed_and_taps(x)
    ref_emb, ref_taps = ReferenceStyleConvNet(net)(x)
    assert [tuple(t.shape) for t in taps] == [(3, 8, 32, 32), (3, 8, 16, 16), (3, 8, 8, 8)]
    for got, want in zip(taps, ref_taps, strict=True):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(emb, ref_emb, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(emb, net.embed(x))


def test_pre_relu_taps_are_the_norm_outputs() -> None:
    net = ConvNet(1, 10, 32, width=8)
    with torch.no_grad():
        net.norms[0].bias.fill_(0.25)
    x = torch.randn(3, 1, 32, 32)
    _, taps = net.embed_and_taps(x, "pre_relu")
    torch.testing.assert_close(taps[0], net.norms[0](net.convs[0](x)))
    # instance norm: each pre-ReLU channel's spatial mean is the affine bias (why MM's mean part vanishes there)
    torch.testing.assert_close(taps[0].mean((2, 3)), torch.full((3, 8), 0.25), atol=1e-5, rtol=0)
    with pytest.raises(UsageError, match="unknown style tap"):
        net.embed_and_taps(x, "after_pool")


def test_convnet_norm_variants() -> None:
    kinds = {"instance": nn.GroupNorm, "batch": nn.BatchNorm2d, "layer": nn.GroupNorm, "group": nn.GroupNorm}
    for norm, cls in kinds.items():
        net = ConvNet(3, 10, 32, width=8, norm=norm)
        assert all(isinstance(m, cls) for m in net.norms)
    groups = {n: ConvNet(3, 10, 32, width=8, norm=n).norms[0].num_groups for n in ("instance", "layer", "group")}
    assert groups == {"instance": 8, "layer": 1, "group": 4}
    assert all(isinstance(m, nn.Identity) for m in ConvNet(3, 10, 32, width=8, norm="none").norms)
    with pytest.raises(UsageError):
        ConvNet(3, 10, 32, norm="weird")


@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_every_network_builds_and_trains_a_step(name: str) -> None:
    net = build_network(name, 1, 5, 28, seed=0)
    x = torch.randn(2, 1, 28, 28)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    before = net.classifier.weight.detach().clone()
    loss = nn.functional.cross_entropy(net(x), torch.tensor([0, 4]))
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    assert not torch.equal(before, net.classifier.weight)
    # The other sizes and channel counts: a forward pass (the train step above costs the most on a CPU).
    for channels, size in [(3, 28), (1, 32), (3, 32), (1, 64), (3, 64), (3, 128)]:
        net = build_network(name, channels, 5, size, seed=0).eval()
        with torch.no_grad():
            x = torch.randn(1, channels, size, size)
            assert net(x).shape == (1, 5)
            assert net.embed(x).shape == (1, net.embed_dim)


def test_seeded_build_is_deterministic_and_leaves_global_rng() -> None:
    state = torch.get_rng_state()
    a = build_network("convnet", 3, 10, 32, seed=3)
    b = build_network("convnet", 3, 10, 32, seed=3)
    c = build_network("convnet", 3, 10, 32, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), ka
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    unseeded = build_network("convnet", 3, 10, 32)
    assert not torch.equal(torch.get_rng_state(), state)  # the control: unseeded init does draw
    assert unseeded.embed_dim == 2048


def test_build_network_width_and_device() -> None:
    net = build_network("convnet_bn", 3, 10, 32, width=8, device="cpu")
    assert net.embed_dim == 8 * 4 * 4 and next(net.parameters()).device.type == "cpu"
    # a network without a width keeps its own: the same network as built without one
    assert build_network("resnet18", 3, 10, 32, width=8).embed_dim == build_network("resnet18", 3, 10, 32).embed_dim
    assert torch.equal(build_network("alexnet", 3, 10, 32, width=8, seed=0).classifier.weight,
                       build_network("alexnet", 3, 10, 32, seed=0).classifier.weight)


def test_unknown_network_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="convnet_bn") as info:
        build_network("convnet_bnn", 3, 10, 32)
    assert "resnet18" in str(info.value)


def test_instance_norm_samples_are_independent() -> None:
    x = torch.randn(6, 3, 32, 32)
    net = ConvNet(3, 10, 32, width=8)
    assert samples_are_independent(net)
    assert torch.allclose(net(x)[:2], net(x[:2]), atol=1e-5)
    bn = ConvNet(3, 10, 32, width=8, norm="batch")
    assert not samples_are_independent(bn)
    assert not torch.allclose(bn(x)[:2], bn(x[:2]), atol=1e-3)


def test_independence_flag_matches_names() -> None:
    for name in NETWORK_NAMES:
        net = build_network(name, 3, 10, 32, seed=0)
        assert samples_are_independent(net) == (not name.endswith("_bn")), name


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 3, 7, 9), (1, 1, 2, 2), (3, 2, 5, 4)])
def test_matmul_pooling_equals_avg_pool2d_values_and_gradients(shape) -> None:
    """The CPU's matrix-product 2x2 average pooling is avg_pool2d, odd sizes floored, gradients included."""
    from clbench.nets.networks import avg_pool_2x2

    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    weights = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2, dtype=torch.float64)
    ours, theirs = avg_pool_2x2(x), torch.nn.functional.avg_pool2d(x, 2)
    torch.testing.assert_close(ours, theirs)
    grad_ours = torch.autograd.grad((ours * weights).sum(), x)[0]
    grad_theirs = torch.autograd.grad((theirs * weights).sum(), x)[0]
    torch.testing.assert_close(grad_ours, grad_theirs)


def test_alexnet_norm_variants() -> None:
    """docs/methods.md: cross-architecture nets use instance norm by default; the reference's plain AlexNet is
    reached by name."""
    norms = {name: [type(m).__name__ for m in build_network(name, 3, 10, 32, seed=0).modules()
                    if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d))]
             for name in ("alexnet", "alexnet_bn", "alexnet_nonorm")}
    assert norms["alexnet"] == ["GroupNorm"] * 5
    assert norms["alexnet_bn"] == ["BatchNorm2d"] * 5
    assert norms["alexnet_nonorm"] == []
    gn = next(m for m in build_network("alexnet", 3, 10, 32, seed=0).modules() if isinstance(m, nn.GroupNorm))
    assert gn.num_groups == gn.num_channels  # one group per channel: instance norm
