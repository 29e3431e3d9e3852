"""DM and DDM on scikit-learn's digits with a small ConvNet: they lower their own objective, are reproducible,
and their options (the paper's ablation switches) do what they say."""
from __future__ import annotations

import itertools

import pytest
import torch

from clbench.condensers.base import CondenseTask
from clbench.condensers.ddm import DDM
from clbench.condensers.dm import DM, PAPER_EMBED_DIM, mean_preserving_subset
from clbench.core.errors import NonFiniteError, UsageError
from clbench.core.options import build_options
from clbench.data.datasets import load_dataset
from clbench.matching.losses import (
    correlation_loss,
    diversity_loss,
    dm_loss,
    dm_loss_from_means,
    layer_mean,
    moments_loss,
)
from clbench.matching.statistics import Batch, ClassSampler, StyleTaps, embed_batch, frozen, siamese_augment
from clbench.nets.augment import DSA
from clbench.nets.networks import build_network
from tests.reference_nets import ReferenceStyleConvNet

WIDTH = 8


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits").normalised("train")


def network_factory(name: str = "convnet", start: int = 1000, width: int = WIDTH):
    seeds = itertools.count(start)

    def new_network(seed: int | None = None):
        return build_network(name, 1, 10, 8, seed=next(seeds) if seed is None else seed, width=width)

    return new_network


def make_task(digits, seed: int = 0, classes=(0, 3, 8), ipc: int = 5, net: str = "convnet",
              width: int = WIDTH) -> CondenseTask:
    images, labels = digits
    return CondenseTask(images, labels, tuple(classes), ipc, torch.Generator().manual_seed(seed),
                        network_factory(net, width=width), DSA(), torch.device("cpu"), 10)


def run(cls, digits, seed: int = 0, classes=(0, 3, 8), ipc: int = 5, net: str = "convnet", width: int = WIDTH,
        **opts):
    options = build_options(cls.Options, {"iterations": 20, "batch_real": 32, "report_every": 5, **opts})
    return cls(options).condense(make_task(digits, seed, classes, ipc, net, width))


def fixed_draw_terms(condenser, digits, syn: torch.Tensor, classes, ipc: int, draws: int = 6,
                     width: int = WIDTH) -> dict[str, float]:
    """Each loss term (summed over classes and draws) on fixed networks, real batches and DSA draws."""
    images, labels = digits
    sampler = ClassSampler([torch.nonzero(labels == c).flatten() for c in classes], 64, torch.device("cpu"))
    syn_segment = torch.arange(len(classes)).repeat_interleave(ipc)
    totals: dict[str, float] = {}
    with torch.no_grad():
        for d in range(draws):
            g = torch.Generator().manual_seed(500 + d)
            net = frozen(build_network("convnet", 1, 10, 8, seed=900 + d, width=width))
            batch = Batch(images[sampler.sample(g)], sampler.segment, sampler.counts, syn, syn_segment,
                          len(classes), ipc)
            terms = condenser.class_losses(net, siamese_augment(DSA(), batch, g))
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + float(value.sum())
            totals["total"] = totals.get("total", 0.0) + float(condenser.objective(terms))
    return totals


# ----------------------------------------------------------------------------------------------- the objective falls
def _before_after(cls, digits, iterations: int = 20) -> tuple[dict[str, float], dict[str, float]]:
    """Loss terms of the initial and of the optimised synthetic set, on the same fixed networks and draws.

    At the paper's settings (lr 1, lambda 1e4) a very narrow net gives DM tiny steps and DDM's first steps
    overshoot on 8x8 digits; the full-width ConvNet (cheap at 8x8) behaves as in the paper.
    """
    condenser = cls()
    before = run(cls, digits, iterations=0, width=128).images
    after = run(cls, digits, iterations=iterations, width=128).images
    return (fixed_draw_terms(condenser, digits, before, (0, 3, 8), 5, draws=4, width=128),
            fixed_draw_terms(condenser, digits, after, (0, 3, 8), 5, draws=4, width=128))


def test_dm_lowers_its_objective(digits):
    before, after = _before_after(DM, digits)
    assert after["dm"] < before["dm"]


def test_ddm_lowers_its_objective_and_its_style_terms(digits):
    before, after = _before_after(DDM, digits)
    assert after["total"] < before["total"]
    assert after["mm"] < before["mm"]
    assert after["cm"] < before["cm"]


# ------------------------------------------------------------------------------------------ reproducibility, shapes
@pytest.mark.parametrize("cls", [DM, DDM])
def test_same_seed_same_set_other_seed_other_set(digits, cls):
    a = run(cls, digits, seed=1, iterations=3)
    b = run(cls, digits, seed=1, iterations=3)
    c = run(cls, digits, seed=2, iterations=3)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)


def test_shapes_labels_and_facts(digits):
    result = run(DDM, digits, classes=(7, 2, 4), ipc=4, iterations=2)
    assert result.images.shape == (12, 1, 8, 8)
    assert result.labels.tolist() == [7] * 4 + [2] * 4 + [4] * 4
    assert not result.images.requires_grad
    facts = result.facts
    assert facts["iterations"] == 2 and facts["seconds"] > 0 and facts["init"] == "real"
    assert set(facts["final_losses"]) == {"dm", "mm", "cm", "icd", "total"}
    assert facts["forward"] == "all classes at once"


def test_real_init_starts_from_real_images_of_each_class(digits):
    images, labels = digits
    result = run(DM, digits, classes=(5, 1), ipc=3, iterations=0)
    for img, label in zip(result.images, result.labels):
        own = images[labels == label]
        assert (own - img).flatten(1).abs().amax(1).min() == 0  # each image is one of its class's real images
    noise = run(DM, digits, classes=(5, 1), ipc=3, iterations=0, init="noise")
    assert noise.images.shape == result.images.shape and not torch.equal(noise.images, result.images)


def test_progress_is_reported_with_losses(digits):
    calls = []
    task = make_task(digits)
    task.progress = lambda done, total, info: calls.append((done, total, dict(info)))
    DM(build_options(DM.Options, {"iterations": 6, "batch_real": 16, "report_every": 3})).condense(task)
    assert [c[0] for c in calls] == [1, 2, 3, 4, 5, 6] and all(c[1] == 6 for c in calls)
    assert "dm" in calls[2][2] and calls[-1][2]["loss"] == calls[-1][2]["total"]


# ----------------------------------------------------------------------------------------------- ablation switches
def test_ddm_with_every_term_off_is_dm(digits):
    dm = run(DM, digits, iterations=4)
    plain = run(DDM, digits, iterations=4, mm=False, cm=False, icd=False)
    assert torch.equal(dm.images, plain.images)
    assert set(plain.facts["final_losses"]) == {"dm", "total"}


def test_beta_zero_equals_icd_off_but_still_reports_the_term(digits):
    zero = run(DDM, digits, iterations=4, beta=0)
    off = run(DDM, digits, iterations=4, icd=False)
    assert torch.equal(zero.images, off.images)
    assert "icd" in zero.facts["final_losses"] and "icd" not in off.facts["final_losses"]
    assert zero.facts["weights"]["icd"] == 0.0


def test_switches_select_terms_and_weights(digits):
    result = run(DDM, digits, iterations=2, mm=False, lambda_=100.0, alpha=3.0, beta=2.0, balance="none")
    assert result.facts["weights"] == {"dm": 1.0, "cm": 100.0, "icd": 2.0}
    assert set(result.facts["final_losses"]) == {"dm", "cm", "icd", "total"}
    other = run(DDM, digits, iterations=2, cm=False, lambda_=100.0, alpha=3.0, balance="none")
    assert other.facts["weights"]["mm"] == 300.0 and "cm" not in other.facts["weights"]


@pytest.mark.parametrize("width", [8, 32])
def test_balance_scales_lambda_and_beta_by_the_embedding_size(digits, width):
    # digits are 8x8: two blocks leave a 2x2 map, so the embedding has 4 * width features
    result = run(DDM, digits, iterations=1, width=width, lambda_=1e4, alpha=0.5, beta=10.0)
    scale = 4 * width / 2048
    assert result.facts["embed_dim"] == 4 * width
    assert result.facts["weights"] == pytest.approx({"dm": 1.0, "mm": 0.5e4 * scale, "cm": 1e4 * scale,
                                                     "icd": 10.0 * scale}, rel=1e-12)
    # at the paper's embedding size the weights are the paper's
    assert DDM().weights(PAPER_EMBED_DIM) == {"dm": 1.0, "mm": 1e4, "cm": 1e4, "icd": 10.0}
    # and the objective applies what the facts say
    terms = {"dm": torch.tensor([1.0, 2.0]), "mm": torch.tensor([3.0, 0.0]), "cm": torch.tensor([0.0, 1.0]),
             "icd": torch.tensor([-1.0, -1.0])}
    got = DDM().objective(terms, 512).item()
    assert got == pytest.approx(3.0 + 0.25 * (1e4 * 3.0 + 1e4 * 1.0 + 10.0 * -2.0), rel=1e-6)


def test_reference_accumulation_weights_each_class_style_loss(digits):
    images, labels = digits
    classes, ipc = (1, 6, 3), 4
    sampler = ClassSampler([torch.nonzero(labels == c).flatten() for c in classes], 20, torch.device("cpu"))
    g = torch.Generator().manual_seed(3)
    batch = Batch(images[sampler.sample(g)], sampler.segment, sampler.counts,
                  torch.randn(len(classes) * ipc, 1, 8, 8, generator=g), torch.arange(3).repeat_interleave(ipc), 3, ipc)
    net = frozen(build_network("convnet", 1, 10, 8, seed=4, width=WIDTH))
    own = DDM().class_losses(net, batch)
    ref = DDM(build_options(DDM.Options, {"style_accumulation": "reference"})).class_losses(net, batch)
    # 3 classes, 2 layers (the 8x8 ConvNet's blocks): class 0 is counted 1 + 1/2 + 1/4, class 1 1 + 1/2, class 2
    # once
    w = torch.tensor([7 / 4, 3 / 2, 1.0])
    for name in ("mm", "cm"):
        torch.testing.assert_close(ref[name], own[name] * w)
    torch.testing.assert_close(ref["dm"], own["dm"])
    torch.testing.assert_close(ref["icd"], own["icd"])


def test_icd_is_zero_when_ipc_not_above_k(digits):
    result = run(DDM, digits, ipc=2, k=2, iterations=2)
    assert result.facts["final_losses"]["icd"] == 0.0
    assert run(DDM, digits, ipc=3, k=2, iterations=2).facts["final_losses"]["icd"] < 0.0


def test_style_layers_choose_taps_and_are_checked(digits):
    images, labels = digits
    sampler = ClassSampler([torch.nonzero(labels == c).flatten() for c in (2, 5)], 16, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    syn = torch.randn(6, 1, 8, 8, generator=g)
    batch = Batch(images[sampler.sample(g)], sampler.segment, sampler.counts, syn, torch.arange(2).repeat_interleave(3),
                  2, 3)
    net = frozen(build_network("convnet", 1, 10, 8, seed=4, width=WIDTH))
    _, r_taps = ReferenceStyleConvNet(net)(batch.real[batch.real_segment == 1])
    _, s_taps = ReferenceStyleConvNet(net)(syn[3:])
    for layers, picked in (("1", [1]), ("0,1", [0, 1])):
        terms = DDM(build_options(DDM.Options, {"style_layers": layers})).class_losses(net, batch)
        want = layer_mean(moments_loss, [r_taps[i] for i in picked], [s_taps[i] for i in picked])
        assert terms["mm"][1].item() == pytest.approx(want.item(), rel=1e-4)
    with pytest.raises(UsageError, match="out of range"):
        run(DDM, digits, iterations=1, style_layers="0,7")
    with pytest.raises(UsageError):
        DDM(build_options(DDM.Options, {"k": "0"}))


def test_ddm_terms_equal_the_plain_per_class_losses(digits):
    """The batched style and diversity terms are those of the definitions, class by class."""
    images, labels = digits
    classes, ipc = (1, 6), 4
    sampler = ClassSampler([torch.nonzero(labels == c).flatten() for c in classes], 20, torch.device("cpu"))
    g = torch.Generator().manual_seed(3)
    syn = torch.randn(len(classes) * ipc, 1, 8, 8, generator=g)
    batch = Batch(images[sampler.sample(g)], sampler.segment, sampler.counts, syn,
                  torch.arange(2).repeat_interleave(ipc), 2, ipc)
    net = frozen(build_network("convnet", 1, 10, 8, seed=4, width=WIDTH))
    terms = DDM().class_losses(net, batch)
    pre = DDM(build_options(DDM.Options, {"style_tap": "pre_relu"})).class_losses(net, batch)
    assert (terms["cm"] - pre["cm"]).abs().min() > 1e-3 * terms["cm"].abs().max()  # the tap matters
    reference = ReferenceStyleConvNet(net)  # written independently: taps stored, then ReLU'd in place
    for c in range(2):
        r_emb, r_taps = reference(batch.real[batch.real_segment == c])
        s_emb, s_taps = reference(syn[c * ipc:(c + 1) * ipc])
        assert terms["dm"][c].item() == pytest.approx(dm_loss(r_emb, s_emb).item(), rel=1e-4)
        assert terms["mm"][c].item() == pytest.approx(layer_mean(moments_loss, r_taps, s_taps).item(), rel=1e-4)
        assert terms["cm"][c].item() == pytest.approx(layer_mean(correlation_loss, r_taps, s_taps).item(), rel=1e-4)
        assert terms["icd"][c].item() == pytest.approx(diversity_loss(s_emb, 2).item(), rel=1e-3, abs=1e-7)


# ----------------------------------------------------------------------------------------------- batch norm
def test_batch_norm_takes_the_per_class_path(digits):
    result = run(DDM, digits, net="convnet_bn", iterations=3)
    assert result.facts["forward"] == "per class (batch norm)"
    assert torch.isfinite(result.images).all()


def test_per_class_path_matches_a_class_by_class_loop():
    g = torch.Generator().manual_seed(8)
    counts, ipc = [5, 7], 3
    real = torch.randn(sum(counts), 1, 8, 8, generator=g)
    syn = torch.randn(2 * ipc, 1, 8, 8, generator=g)
    batch = Batch(real, torch.arange(2).repeat_interleave(torch.tensor(counts)), counts, syn,
                  torch.arange(2).repeat_interleave(ipc), 2, ipc)
    bn = frozen(build_network("convnet_bn", 1, 10, 8, seed=1, width=WIDTH))
    per_class = DM().class_losses(bn, batch)["dm"]  # chosen automatically for batch norm
    loop = torch.stack([dm_loss(bn.embed(r), bn.embed(s)) for r, s in zip(real.split(counts), syn.split(ipc))])
    torch.testing.assert_close(per_class, loop)
    # with batch norm, one pass over all classes would be a different loss: that is why the path exists
    one_pass = embed_batch(bn, batch, None, per_class=False)
    assert not torch.allclose(dm_loss_from_means(one_pass.real.emb, one_pass.syn.emb), loop)
    # with instance norm both paths agree
    inorm = frozen(build_network("convnet", 1, 10, 8, seed=1, width=WIDTH))
    f_all = embed_batch(inorm, batch, StyleTaps(), per_class=False)
    f_one = embed_batch(inorm, batch, StyleTaps(), per_class=True)
    torch.testing.assert_close(f_all.real.emb, f_one.real.emb, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(f_all.syn.maps[0], f_one.syn.maps[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(f_all.real.grams[1], f_one.real.grams[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(f_all.syn_emb, f_one.syn_emb, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 3, 5, 16])
def test_chunked_statistics_equal_one_pass(chunk):
    """Chunks of any size, including ones that cut a class in two, give the one-pass statistics and gradients."""
    g = torch.Generator().manual_seed(9)
    counts, ipc = [7, 4, 6], 4
    real = torch.randn(sum(counts), 1, 8, 8, generator=g)
    syn = torch.randn(3 * ipc, 1, 8, 8, generator=g)
    batch = Batch(real, torch.arange(3).repeat_interleave(torch.tensor(counts)), counts, syn,
                  torch.arange(3).repeat_interleave(ipc), 3, ipc)
    batch = siamese_augment(DSA(), batch, torch.Generator().manual_seed(2))
    net = frozen(build_network("convnet", 1, 10, 8, seed=5, width=WIDTH))
    assert chunk < sum(counts)  # the real side really is cut into chunks
    results = []
    for size in (0, chunk):
        x = syn.clone().requires_grad_(True)
        f = embed_batch(net, Batch(**{**batch.__dict__, "syn": x}), StyleTaps(), per_class=False, chunk=size)
        loss = (f.real.emb - f.syn.emb).pow(2).sum() + sum(g_.sum() for g_ in f.syn.grams) + f.syn_emb.sum()
        loss.backward()
        results.append((f, x.grad))
    (one, grad_one), (chunked, grad_chunked) = results
    for a, b in ((one.real.emb, chunked.real.emb), (one.syn.emb, chunked.syn.emb), (one.syn_emb, chunked.syn_emb),
                 (grad_one, grad_chunked),
                 *zip(one.real.maps + one.real.grams + one.syn.maps + one.syn.grams,
                      chunked.real.maps + chunked.real.grams + chunked.syn.maps + chunked.syn.grams)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_amp_statistics_stay_fp32_and_close_to_fp32():
    """bf16 autocast changes the network arithmetic only: statistics come back fp32, within bf16 rounding."""
    g = torch.Generator().manual_seed(4)
    batch = Batch(torch.randn(12, 1, 8, 8, generator=g), torch.arange(2).repeat_interleave(6), [6, 6],
                  torch.randn(6, 1, 8, 8, generator=g), torch.arange(2).repeat_interleave(3), 2, 3)
    net = frozen(build_network("convnet", 1, 10, 8, seed=5, width=WIDTH))
    fp32 = embed_batch(net, batch, StyleTaps(), per_class=False)
    bf16 = embed_batch(net, batch, StyleTaps(), per_class=False, amp=True)
    assert bf16.real.emb.dtype == torch.float32 and bf16.syn.grams[0].dtype == torch.float32
    assert not torch.equal(fp32.real.emb, bf16.real.emb)  # it did run in bf16
    torch.testing.assert_close(bf16.real.emb, fp32.real.emb, rtol=0.05, atol=0.02)
    for a, b in zip(bf16.real.maps + bf16.syn.maps + bf16.real.grams + bf16.syn.grams,
                    fp32.real.maps + fp32.syn.maps + fp32.real.grams + fp32.syn.grams, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=0.05, atol=0.02)


# ----------------------------------------------------------------------------------------------- sampling, shrink
def test_class_sampler_draws_without_replacement_within_each_class():
    idx = [torch.arange(0, 10), torch.arange(10, 13)]  # the second class has fewer than `take`
    sampler = ClassSampler(idx, 5, torch.device("cpu"))
    picked = sampler.sample(torch.Generator().manual_seed(0))
    assert sampler.counts == [5, 3] and sampler.segment.tolist() == [0] * 5 + [1] * 3
    assert picked[:5].unique().numel() == 5 and ((picked[:5] >= 0) & (picked[:5] < 10)).all()
    assert sorted(picked[5:].tolist()) == [10, 11, 12]


def test_mean_preserving_subset_by_hand():
    # values 1, 2, 9, -4, 4: mean 2.4. Removing one leaves (12 - x) / 4: 2.75, 2.5, 0.75, 4, 2 -> drop the 2
    # (gap 0.1). Then (10 - x) / 3 over 1, 9, -4, 4: 3, 0.33, 4.67, 2 -> drop the 4 (gap 0.4). Kept: 1, 9, -4.
    features = torch.tensor([[1.0], [2.0], [9.0], [-4.0], [4.0]], dtype=torch.float64)
    assert mean_preserving_subset(features, 3).tolist() == [0, 2, 3]
    assert mean_preserving_subset(features, 4).tolist() == [0, 2, 3, 4]
    assert mean_preserving_subset(features, 9).tolist() == [0, 1, 2, 3, 4]


def test_shrink_rules(digits):
    images = digits[0][:10]
    dm = DM()
    kept = dm.shrink(images, 4, torch.Generator().manual_seed(0))
    assert kept.shape == (4,) and kept.unique().numel() == 4 and "mean embedding" in dm.shrink_rule
    rand = DM(build_options(DM.Options, {"shrink": "random"}))
    assert rand.shrink_rule == "random subset (seeded)"
    assert rand.shrink(images, 4, torch.Generator().manual_seed(0)).shape == (4,)


# ----------------------------------------------------------------------------------------------- errors
def test_non_finite_loss_is_an_error_naming_the_term(digits):
    images, labels = digits
    broken = (images.clone().fill_(float("nan")), labels)
    with pytest.raises(NonFiniteError, match="dm"):
        run(DM, broken, iterations=2, report_every=1)


def test_bad_options_are_usage_errors(digits):
    with pytest.raises(UsageError):
        run(DM, digits, iterations=-1)
    with pytest.raises(UsageError):
        build_options(DM.Options, {"init": "zeros"})


def test_negative_chunk_is_refused(digits):
    with pytest.raises(UsageError, match="chunk"):
        run(DM, digits, chunk=-1)


def test_class_statistics_checks_the_class_counts():
    from clbench.matching.statistics import class_statistics

    net = frozen(build_network("convnet", 1, 10, 8, seed=5, width=WIDTH))
    images, segment = torch.randn(5, 1, 8, 8), torch.tensor([0, 0, 1, 1, 1])
    stats, _ = class_statistics(net, images, segment, [2, 3], chunk=2)
    torch.testing.assert_close(stats.emb[1], net.embed(images[2:]).mean(0), rtol=1e-5, atol=1e-6)
    for bad in ([2, 2], [5, 0]):
        with pytest.raises(ValueError, match="counts"):
            class_statistics(net, images, segment, bad)
