"""DSA: each op against hand-computed values, the Siamese property, training mode, gradients, determinism."""
from __future__ import annotations

import math

import pytest
import torch

from clbench.core.errors import UsageError
from clbench.nets.augment import (
    DSA,
    TOKENS,
    NoAugment,
    brightness,
    contrast,
    crop,
    crop_shift,
    cutout,
    cutout_size,
    flip,
    make_augment,
    rotate,
    saturation,
    scale,
)


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _grid4() -> torch.Tensor:
    return torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)


# ---------------------------------------------------------------------------------------------- pure ops


def test_brightness_adds_u_minus_half() -> None:
    x = torch.ones(2, 3, 2, 2)
    out = brightness(x, _t(0.25, 1.0))
    assert torch.allclose(out[0], torch.full((3, 2, 2), 0.75))
    assert torch.allclose(out[1], torch.full((3, 2, 2), 1.5))


def test_saturation_scales_deviation_from_channel_mean() -> None:
    x = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 6.0]]).view(1, 3, 1, 2)  # pixels (1,2,3) and (0,0,6)
    out = saturation(x, _t(0.25))  # factor 2 * 0.25 = 0.5
    expected = torch.tensor([[1.5, 1.0], [2.0, 1.0], [2.5, 4.0]]).view(1, 3, 1, 2)
    assert torch.allclose(out, expected)
    assert torch.allclose(saturation(x, _t(0.0)), x.mean(1, keepdim=True).expand_as(x))  # grey


def test_contrast_scales_deviation_from_sample_mean() -> None:
    x = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 2, 2)  # mean 1.5
    assert torch.allclose(contrast(x, _t(0.0)), torch.tensor([0.75, 1.25, 1.75, 2.25]).view(1, 1, 2, 2))
    assert torch.allclose(contrast(x, _t(0.5)), x)
    # The mean is over C, H, W of each sample, not over the batch.
    two = torch.cat([x, x + 10])
    out = contrast(two, _t(0.0, 0.0))
    assert torch.allclose(out[1], out[0] + 10)


def test_crop_shifts_with_zero_fill() -> None:
    out = crop(_grid4(), torch.tensor([1]), torch.tensor([-1]))
    expected = torch.tensor(
        [[0, 4, 5, 6], [0, 8, 9, 10], [0, 12, 13, 14], [0, 0, 0, 0]], dtype=torch.float32
    ).view(1, 1, 4, 4)
    assert torch.equal(out, expected)


def test_crop_per_sample_and_channels() -> None:
    x = torch.cat([_grid4(), _grid4() + 100]).expand(2, 1, 4, 4).repeat(1, 2, 1, 1)  # (2, 2, 4, 4)
    out = crop(x, torch.tensor([0, -2]), torch.tensor([0, 3]))
    assert torch.equal(out[0], x[0])  # zero shift is the identity
    expected1 = torch.zeros(4, 4)
    expected1[2:, :1] = x[1, 0, :2, 3:]  # out[i, j] = x[i - 2, j + 3]
    assert torch.equal(out[1, 0], expected1)
    assert torch.equal(out[1, 1], expected1)
    assert torch.equal(crop(_grid4(), torch.tensor([4]), torch.tensor([0])), torch.zeros(1, 1, 4, 4))


def test_crop_and_cutout_sizes() -> None:
    assert crop_shift(32) == 4 and crop_shift(28) == 4 and crop_shift(64) == 8 and crop_shift(4) == 1
    assert cutout_size(32) == 16 and cutout_size(28) == 14 and cutout_size(4) == 2 and cutout_size(5) == 3


def test_cutout_zeroes_the_square() -> None:
    x = torch.ones(2, 1, 4, 4)
    out = cutout(x, torch.tensor([2, 0]), torch.tensor([1, 3]))  # side 2: rows cy-1..cy, cols cx-1..cx
    zero0 = torch.zeros(4, 4, dtype=torch.bool)
    zero0[1:3, 0:2] = True
    zero1 = torch.zeros(4, 4, dtype=torch.bool)
    zero1[0:1, 2:4] = True  # row -1 is cut off at the border
    assert torch.equal(out[0, 0] == 0, zero0)
    assert torch.equal(out[1, 0] == 0, zero1)
    odd = cutout(torch.ones(1, 2, 5, 5), torch.tensor([4]), torch.tensor([4]))  # side 3: rows 3..5 -> 3..4
    assert int((odd == 0).sum()) == 2 * 4
    assert torch.all(odd[0, :, 3:, 3:] == 0)


def test_flip_mirrors_selected_samples() -> None:
    x = torch.cat([_grid4(), _grid4()])
    out = flip(x, torch.tensor([True, False]))
    assert torch.equal(out[0, 0, 0], torch.tensor([3.0, 2.0, 1.0, 0.0]))
    assert torch.equal(out[1], x[1])


def test_scale_one_and_rotate_zero_are_identity() -> None:
    x = torch.randn(3, 2, 5, 5)
    assert torch.allclose(scale(x, torch.ones(3), torch.ones(3)), x, atol=1e-5)
    assert torch.allclose(rotate(x, torch.zeros(3)), x, atol=1e-5)


def test_scale_two_keeps_centre_and_zeroes_border() -> None:
    x = torch.arange(9, dtype=torch.float32).view(1, 1, 3, 3) + 1
    out = scale(x, _t(2.0), _t(2.0))
    expected = torch.zeros(1, 1, 3, 3)
    expected[0, 0, 1, 1] = x[0, 0, 1, 1]
    assert torch.allclose(out, expected, atol=1e-5)


def test_rotate_quarter_turn_is_rot90() -> None:
    x = _grid4()
    assert torch.allclose(rotate(x, _t(math.pi / 2)), torch.rot90(x, 1, (2, 3)), atol=1e-4)
    assert torch.allclose(rotate(x, _t(-math.pi / 2)), torch.rot90(x, -1, (2, 3)), atol=1e-4)


# ---------------------------------------------------------------------------------------------- sampling


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_unknown_token_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="rotat"):
        DSA("color_rotat")


def test_siamese_params_shared_within_group_only() -> None:
    groups = torch.tensor([7, 7, 7, 3, 3])
    p = DSA().sample(groups, _gen(0), share_params=True)
    for name in ("token", "brightness", "crop_x", "cutout_y", "flip", "scale_x", "rotate"):
        v = getattr(p, name)
        assert torch.equal(v[:3], v[:1].expand(3)), name
        assert torch.equal(v[3:], v[3:4].expand(2)), name
    assert p.brightness[0] != p.brightness[3]


def test_training_mode_one_token_per_group_params_per_sample() -> None:
    p = DSA().sample(torch.zeros(64, dtype=torch.long), _gen(1), share_params=False)
    assert torch.all(p.token == p.token[0])
    assert p.brightness.unique().numel() == 64
    assert p.rotate.unique().numel() == 64
    assert 0 < int(p.flip.sum()) < 64


def test_sampled_ranges_and_tokens_uniform() -> None:
    p = DSA().sample(torch.arange(3000), _gen(2), share_params=True)
    counts = torch.bincount(p.token, minlength=len(TOKENS))
    assert counts.numel() == 6 and int(counts.min()) > 400  # about 500 each
    assert float(p.scale_x.min()) >= 1 / 1.2 - 1e-6 and float(p.scale_y.max()) <= 1.2 + 1e-6
    assert float(p.rotate.abs().max()) <= math.radians(15) + 1e-6
    assert float(p.rotate.abs().max()) > math.radians(14)
    for name in ("brightness", "saturation", "contrast", "crop_y", "cutout_x"):
        v = getattr(p, name)
        assert float(v.min()) >= 0 and float(v.max()) < 1


@pytest.mark.parametrize("token", TOKENS)
def test_siamese_property_same_group_same_transform(token: str) -> None:
    x = torch.randn(4, 3, 8, 8)
    dsa = DSA(token)
    for seed in range(3):
        y = dsa.siamese(torch.cat([x, x]), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]), _gen(seed))
        assert torch.equal(y[:4], y[4:])


def test_siamese_different_groups_differ() -> None:
    x = torch.randn(3, 3, 8, 8)
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    differs = [
        not torch.allclose(y[:3], y[3:])
        for y in (DSA().siamese(torch.cat([x, x]), groups, _gen(s)) for s in range(5))
    ]
    assert any(differs)


def test_siamese_real_and_synthetic_share_the_op() -> None:
    """Different images in one group get exactly the transform they would get alone with the same params."""
    dsa = DSA()
    real, syn = torch.randn(5, 3, 8, 8), torch.randn(2, 3, 8, 8)
    for seed in range(6):
        p = dsa.sample(torch.zeros(7, dtype=torch.long), _gen(seed), share_params=True)
        y = dsa.apply(torch.cat([real, syn]), p)
        alone = dsa.apply(syn, p.select(torch.arange(5, 7)))
        assert torch.allclose(y[5:], alone)


def test_training_mode_samples_get_different_transforms() -> None:
    x = torch.randn(1, 3, 8, 8).expand(16, 3, 8, 8)
    dsa = DSA("color_crop_scale_rotate")
    for seed in range(3):
        y = dsa.train_batch(x, _gen(seed))
        assert not torch.allclose(y[0], y[1])


def test_mixed_tokens_match_per_sample_application() -> None:
    """Batching per token kind and scattering back gives each sample its own op."""
    dsa = DSA()
    x = torch.randn(24, 3, 8, 8)
    p = dsa.sample(torch.arange(24) % 12, _gen(3), share_params=False)
    assert p.token.unique().numel() > 2
    y = dsa.apply(x, p)
    for i in range(24):
        idx = torch.tensor([i])
        assert torch.allclose(y[i : i + 1], dsa.apply(x[idx], p.select(idx)), atol=1e-6)


@pytest.mark.parametrize("token", TOKENS)
def test_gradients_flow_to_images(token: str) -> None:
    x = torch.randn(6, 3, 8, 8, requires_grad=True)
    y = DSA(token).train_batch(x, _gen(0))
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_gradients_flow_through_mixed_batch() -> None:
    x = torch.randn(12, 3, 8, 8, requires_grad=True)
    DSA().siamese(x, torch.arange(12), _gen(0)).square().sum().backward()
    assert torch.isfinite(x.grad).all() and bool((x.grad.flatten(1).abs().sum(1) > 0).all())


def test_same_seed_same_output_and_global_rng_untouched() -> None:
    x = torch.randn(10, 3, 8, 8)
    groups = torch.arange(10) % 3
    state = torch.get_rng_state()
    a = DSA().siamese(x, groups, _gen(5))
    b = DSA().siamese(x, groups, _gen(5))
    c = DSA().train_batch(x, _gen(5))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    assert torch.equal(c, DSA().train_batch(x, _gen(5)))


def test_no_augment_is_identity() -> None:
    x = torch.randn(4, 3, 8, 8)
    for aug in (make_augment(None), make_augment("none"), DSA("none"), NoAugment()):
        assert aug.siamese(x, torch.zeros(4, dtype=torch.long), _gen(0)) is x
        assert aug.train_batch(x, _gen(0)) is x
    assert isinstance(make_augment(None), NoAugment)
    assert make_augment("crop_flip").tokens == ("crop", "flip")
