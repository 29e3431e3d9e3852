"""The DM/DDM loss terms against values computed by hand (numpy, explicit formulas) on tiny tensors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clbench.matching import losses


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------- DM
def test_dm_loss_is_squared_distance_of_means():
    real = t([[1.0, 2.0], [3.0, 4.0]])  # mean (2, 3)
    syn = t([[0.0, 0.0]])
    assert losses.dm_loss(real, syn).item() == pytest.approx(4.0 + 9.0)
    assert losses.dm_loss(real, real.flip(0)).item() == 0.0


def test_segment_mean_and_dm_per_class_match_the_plain_term():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(7, 5, generator=g, dtype=torch.float64)
    syn = torch.randn(6, 5, generator=g, dtype=torch.float64)
    real_seg = torch.tensor([0, 1, 1, 2, 0, 2, 2])  # uneven segment sizes, interleaved
    syn_seg = torch.tensor([0, 0, 1, 1, 2, 2])
    per_class = losses.dm_loss_from_means(losses.segment_mean(real, real_seg, 3), losses.segment_mean(syn, syn_seg, 3))
    expected = [losses.dm_loss(real[real_seg == c], syn[syn_seg == c]) for c in range(3)]
    torch.testing.assert_close(per_class, torch.stack(expected))
    means = losses.segment_mean(real, real_seg, 4)
    torch.testing.assert_close(means[1], real[[1, 2]].mean(0))
    assert means[3].abs().sum() == 0  # an empty segment is 0, not NaN
    # sums of chunks add up to the sum of the whole (how the condensers gather statistics chunk by chunk)
    chunked = losses.segment_sum(real[:3], real_seg[:3], 4) + losses.segment_sum(real[3:], real_seg[3:], 4)
    torch.testing.assert_close(chunked, losses.segment_sum(real, real_seg, 4))
    torch.testing.assert_close(losses.segment_count(real_seg, 4, torch.float64), t([2.0, 2.0, 3.0, 0.0]))


# ----------------------------------------------------------------------------------------------- MM
def test_moments_zero_for_identical_batches():
    x = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert losses.moments_loss(x, x.clone()).item() == 0.0


def test_moments_known_value_one_channel():
    real = t([[[[0.0, 2.0], [0.0, 2.0]]]])  # (1, 1, 2, 2): mu 1, unbiased var 4/3
    syn = torch.zeros(1, 1, 2, 2, dtype=torch.float64)  # mu 0, var 0
    sigma_r = math.sqrt(4.0 / 3.0 + 1e-5)
    sigma_s = math.sqrt(1e-5)
    expected = 0.5 * ((1.0 - 0.0) ** 2 + (sigma_r - sigma_s) ** 2)
    assert losses.moments_loss(real, syn).item() == pytest.approx(expected, rel=1e-12)


def test_moments_known_value_numpy_two_channels():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(3, 2, 3, 4))
    syn = rng.normal(size=(2, 2, 3, 4))
    r = real.mean(0).reshape(2, -1)  # batch first, then spatial statistics
    s = syn.mean(0).reshape(2, -1)
    mu_r, mu_s = r.mean(1), s.mean(1)
    sd_r = np.sqrt(((r - mu_r[:, None]) ** 2).sum(1) / (r.shape[1] - 1) + 1e-5)
    sd_s = np.sqrt(((s - mu_s[:, None]) ** 2).sum(1) / (s.shape[1] - 1) + 1e-5)
    expected = 0.5 * (np.mean((mu_s - mu_r) ** 2) + np.mean((sd_s - sd_r) ** 2))
    assert losses.moments_loss(t(real), t(syn)).item() == pytest.approx(expected, rel=1e-12)


def test_moments_average_the_batch_before_the_statistics():
    # Two real samples whose per-sample spatial std is 1.15 but whose average map is flat (std 0):
    # batch-averaging first makes them match a flat synthetic map exactly.
    real = t([[[[0.0, 2.0], [0.0, 2.0]]], [[[2.0, 0.0], [2.0, 0.0]]]])
    syn = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    assert losses.moments_loss(real, syn).item() == pytest.approx(0.0, abs=1e-15)


# ----------------------------------------------------------------------------------------------- CM
def test_gram_is_normalised_by_chw():
    tap = t([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, C=2, H=1, W=2): F = [[1,2],[3,4]]
    expected = np.array([[5.0, 11.0], [11.0, 25.0]]) / (2 * 1 * 2)
    np.testing.assert_allclose(losses.gram(tap)[0].numpy(), expected)


def test_correlation_known_value():
    tap = t([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    syn = torch.zeros(1, 2, 1, 2, dtype=torch.float64)
    expected = 1.25 ** 2 + 2 * 2.75 ** 2 + 6.25 ** 2
    assert losses.correlation_loss(tap, syn).item() == pytest.approx(expected)
    # Gram matrices are averaged over the batch (not the features): F and -F have the same Gram,
    # while averaging F first would give a zero Gram and the loss above.
    assert losses.correlation_loss(torch.cat([tap, -tap]), tap).item() == pytest.approx(0.0, abs=1e-15)


def test_correlation_known_value_numpy():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(3, 2, 2, 3))
    syn = rng.normal(size=(2, 2, 2, 3))

    def mean_gram(x):
        f = x.reshape(x.shape[0], 2, -1)
        return np.einsum("nci,ndi->ncd", f, f).mean(0) / (2 * 2 * 3)

    expected = ((mean_gram(real) - mean_gram(syn)) ** 2).sum()
    assert losses.correlation_loss(t(real), t(syn)).item() == pytest.approx(expected, rel=1e-12)


def test_style_per_class_matches_the_plain_terms_averaged_over_layers():
    g = torch.Generator().manual_seed(5)
    real_taps = [torch.randn(6, 3, 4, 4, generator=g, dtype=torch.float64),
                 torch.randn(6, 5, 2, 2, generator=g, dtype=torch.float64)]
    syn_taps = [torch.randn(4, 3, 4, 4, generator=g, dtype=torch.float64),
                torch.randn(4, 5, 2, 2, generator=g, dtype=torch.float64)]
    real_seg = torch.tensor([1, 0, 1, 0, 0, 1])
    syn_seg = torch.tensor([0, 0, 1, 1])
    def maps(taps, seg):
        return [losses.segment_mean(x, seg, 2) for x in taps]

    def grams(taps, seg):
        return [losses.segment_mean(losses.gram(x), seg, 2) for x in taps]

    moments = losses.moments_loss_from_maps(maps(real_taps, real_seg), maps(syn_taps, syn_seg))
    correlation = losses.correlation_loss_from_grams(grams(real_taps, real_seg), grams(syn_taps, syn_seg))
    for got, plain in ((moments, losses.moments_loss), (correlation, losses.correlation_loss)):
        for c in range(2):
            want = losses.layer_mean(plain, [r[real_seg == c] for r in real_taps], [s[syn_seg == c] for s in syn_taps])
            assert got[c].item() == pytest.approx(want.item(), rel=1e-12)


# ----------------------------------------------------------------------------------------------- ICD
def _softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def _kl(p, q):
    return float((p * np.log(p / q)).sum())


POINTS = np.array([[0.0, 0.0, 0.0], [1.0, 0.5, 0.0], [3.0, 0.0, -1.0]])


def test_diversity_known_value_k1():
    # nearest other sample: 0 -> 1, 1 -> 0, 2 -> 1 (by Euclidean distance)
    nbr = [1, 0, 1]
    kls = [_kl(_softmax(POINTS[i]), _softmax(POINTS[j])) for i, j in enumerate(nbr)]
    got = losses.diversity_loss(t(POINTS), k=1).item()
    assert got == pytest.approx(-np.mean(kls), rel=1e-12)
    assert got < 0  # diversity is maximised: the loss is minus a divergence
    # the KL runs from the sample (p) to its neighbours' mean (q); the other direction gives another number
    reverse = [_kl(_softmax(POINTS[j]), _softmax(POINTS[i])) for i, j in enumerate(nbr)]
    assert abs(np.mean(reverse) - np.mean(kls)) > 1e-3


def test_reference_style_weights_replay_the_accumulator():
    # Simulate the reference loop: acc = (acc + sum over layers of the class's style loss) / layers; loss += acc.
    # With a unit style loss per layer for class j only, the loss gained is class j's weight.
    for classes, layers in ((1, 3), (2, 3), (10, 3), (4, 1), (5, 2)):
        want = []
        for j in range(classes):
            acc, total = 0.0, 0.0
            for c in range(classes):
                acc = (acc + (layers * 1.0 if c == j else 0.0)) / layers
                total += acc
            want.append(total)
        got = losses.reference_style_weights(classes, layers)
        assert got.tolist() == pytest.approx(want, rel=1e-6)
    # the average weights the reference measured: 1.17 with 2 classes, 1.43 with 10 (3 layers)
    assert losses.reference_style_weights(2, 3).mean().item() == pytest.approx(7 / 6, rel=1e-6)
    assert losses.reference_style_weights(10, 3).mean().item() == pytest.approx(1.43, abs=0.01)
    with pytest.raises(ValueError):
        losses.reference_style_weights(0, 3)


def test_diversity_known_value_k2_uses_mean_of_the_others():
    kls = []
    for i in range(3):
        others = [j for j in range(3) if j != i]  # self is excluded, so the two neighbours are the others
        kls.append(_kl(_softmax(POINTS[i]), _softmax(POINTS[others].mean(0))))
    assert losses.diversity_loss(t(POINTS), k=2).item() == pytest.approx(-np.mean(kls), rel=1e-12)


def test_diversity_excludes_self():
    # With self as a candidate each sample's nearest neighbour would be itself (distance 0) and the loss 0;
    # without, it is the hand-computed value over the nearest OTHER sample.
    x = t(POINTS)
    dist = np.linalg.norm(POINTS[:, None] - POINTS[None], axis=2) + np.diag([np.inf] * 3)
    nbr = dist.argmin(1)
    want = -np.mean([_kl(_softmax(POINTS[i]), _softmax(POINTS[j])) for i, j in enumerate(nbr)])
    assert losses.diversity_loss(x, k=1).item() == pytest.approx(want, rel=1e-12)
    assert want < -1e-3  # far from the 0 a self-neighbour would give


def test_diversity_zero_when_ipc_not_above_k_and_graph_stays_valid():
    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    loss = losses.diversity_loss(x, k=2)
    assert loss.item() == 0.0
    loss.backward()
    assert x.grad is not None and torch.all(x.grad == 0)


def test_diversity_finite_for_identical_features():
    x = torch.ones(5, 4, dtype=torch.float64, requires_grad=True)
    loss = losses.diversity_loss(x, k=2)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() == pytest.approx(0.0, abs=1e-15)
    assert torch.all(torch.isfinite(x.grad))


def _diversity_by_hand(points: np.ndarray, k: int) -> float:
    """-mean_i KL(softmax(f_i) || softmax(mean of its k nearest others)), in numpy."""
    dist = np.linalg.norm(points[:, None] - points[None], axis=2) + np.diag([np.inf] * len(points))
    kls = [_kl(_softmax(points[i]), _softmax(points[np.argsort(dist[i])[:k]].mean(0))) for i in range(len(points))]
    return -float(np.mean(kls))


def test_diversity_grouped_equals_the_hand_computed_value_of_each_group():
    x = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    got = losses.diversity_loss_grouped(x, k=2)
    want = [_diversity_by_hand(x[i].numpy(), 2) for i in range(3)]
    assert got.tolist() == pytest.approx(want, rel=1e-10)
    assert all(w < 0 for w in want)  # a sign flip would fail here


def test_diversity_gradient_pushes_neighbours_apart():
    # One step down the ICD loss increases the divergence between neighbours (the loss falls).
    x = t(POINTS).requires_grad_(True)
    loss = losses.diversity_loss(x, k=1)
    loss.backward()
    with torch.no_grad():
        after = losses.diversity_loss(x - 0.1 * x.grad, k=1)
    assert after.item() < loss.item()


# ----------------------------------------------------------------------------------------------- batched == loop
def test_batched_all_class_dm_loss_equals_the_per_class_loop():
    """One forward pass over all classes gives the reference's per-class loss (same network, same DSA draws)."""
    from clbench.condensers.dm import DM
    from clbench.matching.statistics import Batch, frozen, siamese_augment
    from clbench.nets.augment import DSA
    from clbench.nets.networks import build_network

    g = torch.Generator().manual_seed(7)
    counts, ipc, k = [6, 4, 5], 3, 3  # uneven real batches per class
    real = torch.randn(sum(counts), 1, 8, 8, generator=g)
    syn = torch.randn(k * ipc, 1, 8, 8, generator=g)
    real_seg = torch.arange(k).repeat_interleave(torch.tensor(counts))
    syn_seg = torch.arange(k).repeat_interleave(ipc)
    net = frozen(build_network("convnet", 1, 10, 8, seed=3, width=8))
    augment = DSA()

    batch = Batch(real, real_seg, counts, syn, syn_seg, k, ipc)
    batched = DM().class_losses(net, siamese_augment(augment, batch, torch.Generator().manual_seed(11)))["dm"]

    params = augment.sample(torch.arange(k), torch.Generator().manual_seed(11), share_params=True)
    loop = []
    for c in range(k):
        r = augment.apply(real[real_seg == c], params.select(torch.full((counts[c],), c)))
        s = augment.apply(syn[syn_seg == c], params.select(torch.full((ipc,), c)))
        loop.append(losses.dm_loss(net.embed(r), net.embed(s)))
    torch.testing.assert_close(batched, torch.stack(loop), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batched.sum(), torch.stack(loop).sum(), rtol=1e-5, atol=1e-6)
