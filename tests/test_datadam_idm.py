"""DataDAM and IDM, the two DM-family bases besides DM: their loss terms against values computed independently
(numpy, or the network's plain forward), the batched path against the per-class definition, the partition
and the memory budget, the add-ons on each base, and bad input refused before any work."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clbench.condensers.base import CondenseTask
from clbench.condensers.datadam import DataDAM
from clbench.condensers.idm import IDM, partition
from clbench.core.errors import UsageError
from clbench.core.options import build_options
from clbench.data.datasets import load_dataset
from clbench.matching.losses import attention_loss, attention_loss_from_means, spatial_attention
from clbench.matching.statistics import Batch, StyleTaps, class_statistics, frozen
from clbench.memory.store import Memory
from clbench.nets.augment import DSA
from clbench.nets.networks import build_network
from clbench.strategies.memory_step import shrink_older_classes
from clbench.testing import check_condenser


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits").normalised("train")


def task_of(digits, classes=(0, 3, 8), ipc=4, seed=0):
    images, labels = digits
    gen = torch.Generator().manual_seed(seed)

    def new_network(s=None):
        return build_network("convnet", 1, 10, 8, seed=int(torch.randint(2**31, (1,), generator=gen)) if s is None
                             else s, width=16)

    return CondenseTask(images, labels, tuple(classes), ipc, gen, new_network, DSA(), torch.device("cpu"), 10)


def random_batch(seed: int, size: int, counts=(6, 9), ipc: int = 3):
    """Two classes of random real and synthetic images, stored class by class, as a condenser's Batch."""
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(sum(counts), 1, size, size, generator=g)
    syn = torch.randn(len(counts) * ipc, 1, size, size, generator=g)
    return Batch(real, torch.arange(len(counts)).repeat_interleave(torch.tensor(counts)), list(counts), syn,
                 torch.arange(len(counts)).repeat_interleave(ipc), len(counts), ipc)


# ----------------------------------------------------------------------------------------------- attention
def test_spatial_attention_against_numpy():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(2, 3, 2, 2)).astype(np.float32)
    for p in (1.0, 4.0):
        a = (np.abs(f) ** p).sum(1).reshape(2, -1)
        expected = a / np.linalg.norm(a, axis=1, keepdims=True)
        got = spatial_attention(torch.from_numpy(f), p)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_attention_loss_by_hand():
    # one channel, two positions: attention of [3, 4] is [0.6, 0.8]; of [1, 0] is [1, 0]
    real = torch.tensor([[[[3.0, 4.0]]]])
    syn = torch.tensor([[[[1.0, 0.0]]]])
    assert float(attention_loss([real], [syn], 1.0)) == pytest.approx(0.4 ** 2 + 0.8 ** 2)
    # two layers add up
    assert float(attention_loss([real, real], [syn, syn], 1.0)) == pytest.approx(2 * (0.4 ** 2 + 0.8 ** 2))


def test_attention_statistics_chunked_equal_the_per_class_definition():
    g = torch.Generator().manual_seed(3)
    net = frozen(build_network("convnet", 1, 10, 8, seed=1, width=8))
    counts = [5, 7]
    images = torch.randn(sum(counts), 1, 8, 8, generator=g)
    segment = torch.arange(2).repeat_interleave(torch.tensor(counts))
    request = StyleTaps(maps=False, grams=False, attention=1.0)
    stats, _ = class_statistics(net, images, segment, counts, request, chunk=4)
    assert len(stats.attention) == 1  # a 2-block ConvNet on 8x8: every block but the last = block 0
    for c, x in enumerate(images.split(counts)):
        _, taps = net.embed_and_taps(x)
        torch.testing.assert_close(stats.attention[0][c], spatial_attention(taps[0], 1.0).mean(0), rtol=1e-5,
                                   atol=1e-6)
    other = images.flip(0)
    o_stats, _ = class_statistics(net, other, segment, counts, request)
    per_class = attention_loss_from_means(stats.attention, o_stats.attention)
    for c, (x, y) in enumerate(zip(images.split(counts), other.split(counts))):
        _, tx = net.embed_and_taps(x)
        _, ty = net.embed_and_taps(y)
        assert float(per_class[c]) == pytest.approx(float(attention_loss(tx[:-1], ty[:-1], 1.0)), rel=1e-5)


def datadam_reference_loss(net, real_by_class, syn_by_class, power=1.0):
    """DataDAM's loss written from its definition: per class, 100 x the attention term of the ReLU outputs of
    every block but the last, plus 100 x 0.01 x the squared distance of the mean embeddings."""
    total = 0.0
    for real, syn in zip(real_by_class, syn_by_class):
        er, tr = net.embed_and_taps(real)
        es, ts = net.embed_and_taps(syn)
        for a, b in zip(tr[:-1], ts[:-1]):
            ar = (a.abs() ** power).sum(1).flatten(1)
            as_ = (b.abs() ** power).sum(1).flatten(1)
            ar, as_ = ar / ar.norm(dim=1, keepdim=True), as_ / as_.norm(dim=1, keepdim=True)
            total = total + 100 * ((ar.mean(0) - as_.mean(0)) ** 2).sum()
        total = total + 100 * 0.01 * ((er.mean(0) - es.mean(0)) ** 2).sum()
    return total


@pytest.mark.parametrize("power", [1.0, 4.0])
def test_datadam_objective_equals_its_definition(power):
    net = frozen(build_network("convnet", 1, 10, 16, seed=2, width=8))  # 16x16: 3 blocks, attention on 2
    batch = random_batch(5, 16)
    counts, ipc, real, syn = batch.real_counts, batch.ipc, batch.real, batch.syn
    condenser = DataDAM(build_options(DataDAM.Options, {"power": power, "chunk": 4}))
    terms = condenser.class_losses(net, batch)
    assert set(terms) == {"attention", "dm"}
    got = condenser.objective(terms)
    expected = datadam_reference_loss(net, real.split(counts), syn.split(ipc), power)
    assert float(got) == pytest.approx(float(expected), rel=1e-5)


def test_datadam_batch_norm_sends_all_classes_through_in_one_pass():
    batch = random_batch(6, 8)
    counts, ipc, real, syn = batch.real_counts, batch.ipc, batch.real, batch.syn
    condenser = DataDAM(build_options(DataDAM.Options, {"norm": "batch"}))
    task = task_of(load_dataset("digits").normalised("train"))
    net = condenser.new_network(task, seed=4)
    assert not any(p.requires_grad for p in net.parameters())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    got = condenser.class_losses(net, batch)
    # the reference: one forward of every real image, one of every synthetic image (batch statistics over both)
    er, tr = net.embed_and_taps(real)
    es, ts = net.embed_and_taps(syn)
    expected = torch.stack([((r.mean(0) - s.mean(0)) ** 2).sum() for r, s in zip(er.split(counts), es.split(ipc))])
    torch.testing.assert_close(got["dm"], expected, rtol=1e-5, atol=1e-6)
    ar, as_ = spatial_attention(tr[0], 1.0), spatial_attention(ts[0], 1.0)  # 2 blocks on 8x8: attention on block 0
    expected = torch.stack([((r.mean(0) - s.mean(0)) ** 2).sum() for r, s in zip(ar.split(counts), as_.split(ipc))])
    torch.testing.assert_close(got["attention"], expected, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------------------------- IDM
def test_partition_takes_the_parts_down_the_columns_and_upsamples_them():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    parts = partition(x, 2)
    assert parts.shape == (4, 1, 4, 4)
    quarters = [x[..., :2, :2], x[..., 2:, :2], x[..., :2, 2:], x[..., 2:, 2:]]  # TL, BL, TR, BR
    for part, quarter in zip(parts, quarters):
        torch.testing.assert_close(part[None], F.interpolate(quarter, size=(4, 4), mode="bilinear",
                                                              align_corners=False))
    # a constant quarter stays constant; bilinear upsampling keeps the quarter's mean here (symmetric edges)
    const = torch.zeros(1, 1, 4, 4)
    const[..., 2:, :2] = 5.0
    assert torch.equal(partition(const, 2)[1], torch.full((1, 4, 4), 5.0))
    assert torch.equal(partition(x, 1), x)


def test_mosaic_initialisation_places_four_downscaled_real_images(digits):
    task = task_of(digits, classes=(2,), ipc=3)
    condenser = IDM(build_options(IDM.Options, {"iterations": 0}))
    images = condenser.initial_images(task, [task.class_indices()[2]])
    assert images.shape == (3, 1, 8, 8)
    class_images = digits[0][digits[1] == 2]
    small = F.interpolate(class_images, scale_factor=0.5, mode="bilinear", align_corners=False)
    # every quarter of every initial image is one of the class's real images, downscaled
    for quarter in partition_quarters(images):
        distance = (small[None] - quarter[:, None]).flatten(2).abs().amax(2).amin(1)
        assert float(distance.max()) < 1e-5


def partition_quarters(images):
    return [images[..., :4, :4], images[..., 4:, :4], images[..., :4, 4:], images[..., 4:, 4:]]


def test_idm_memory_holds_the_expanded_images_and_shrinks_whole_stored_images(digits):
    task = task_of(digits, ipc=3)
    condenser = IDM(build_options(IDM.Options, {"iterations": 4, "train_steps": 2, "push_every": 2,
                                                "batch_real": 32}))
    result = condenser.condense(task)
    assert condenser.expansion == 4
    assert result.images.shape[0] == 3 * 3 * 4 and result.facts["stored_per_class"] == 3
    assert result.facts["training_images_per_class"] == 12
    assert result.facts["queue_models"] == 3 + 2  # pushed at iterations 0 and 2
    # the memory keeps 12 training images per class of a 3ipc budget; shrinking to 2 budget images keeps 8,
    # the four parts of each of 2 stored images
    memory = Memory()
    memory.add(result.images, result.labels)
    assert memory.sizes() == {0: 12, 3: 12, 8: 12}
    before = memory.images[0].clone()
    shrink_older_classes(memory, 2, condenser, seed=0, order=0, step=1)
    assert memory.sizes() == {0: 8, 3: 8, 8: 8}
    kept = memory.images[0]
    stored = [i for i in range(3) if any(torch.equal(kept[j], before[i]) for j in range(8))]
    assert len(stored) == 2
    for q in range(4):  # part q of each kept stored image, in the same order
        for n, i in enumerate(stored):
            assert torch.equal(kept[q * 2 + n], before[q * 3 + i])


def test_idm_cross_entropy_term_is_the_accuracy_weighted_ce_of_the_expanded_images(digits):
    g = torch.Generator().manual_seed(7)
    net = frozen(build_network("convnet", 1, 10, 8, seed=3, width=16))
    syn = torch.randn(2, 1, 8, 8, generator=g)
    expanded = partition(syn, 2)
    real = torch.randn(10, 1, 8, 8, generator=g)
    batch = Batch(real, torch.zeros(10, dtype=torch.long), [10], expanded, torch.zeros(8, dtype=torch.long), 1, 8)
    condenser = IDM(build_options(IDM.Options, {"dsa": False}))
    terms = condenser.class_losses(net, batch, label=7, accuracy=torch.tensor(40.0))
    expected_ce = F.cross_entropy(net(expanded), torch.full((8,), 7))
    assert float(terms["ce"]) == pytest.approx(40.0 * float(expected_ce), rel=1e-5)
    assert float(terms["dm"]) == pytest.approx(float(((net.embed(real).mean(0) - net.embed(expanded).mean(0)) ** 2)
                                                     .sum()), rel=1e-5)


@pytest.mark.parametrize("classes,ipc,weight", [((0, 1), 20, 0.5), (tuple(range(10)), 10, 0.5),
                                                (tuple(range(10)), 11, 0.1)])
def test_idm_cross_entropy_weight_follows_the_reference_commands(digits, classes, ipc, weight):
    condenser = IDM(build_options(IDM.Options, {"iterations": 0}))
    condenser.condense(task_of(digits, classes=classes, ipc=ipc))
    assert condenser.weights()["ce"] == weight


@pytest.mark.parametrize("ipc,batch_real,reset", [(1, 180, 100), (10, 256, 100), (50, 256, 500)])
def test_idm_automatic_settings_follow_the_reference_commands(ipc, batch_real, reset):
    # the whole class at ipc 1, 256 otherwise; accuracy meters reset every 100 iterations, 500 at ipc 50
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2 * 180, 1, 8, 8, generator=g)
    labels = torch.arange(2).repeat_interleave(180)
    task = CondenseTask(images, labels, (0, 1), ipc, g, lambda s=None: build_network("convnet", 1, 10, 8, seed=s or 1,
                                                                                      width=8),
                        DSA(), torch.device("cpu"), 10)
    facts = IDM(build_options(IDM.Options, {"iterations": 0}, "paper")).condense(task).facts
    assert (facts["batch_real"], facts["acc_reset_every"]) == (batch_real, reset)
    assert IDM(build_options(IDM.Options, {"iterations": 0}, "quick")).condense(task).facts["batch_real"] == 256


def test_idm_same_seed_same_queue_and_images(digits):
    opts = {"iterations": 3, "train_steps": 1, "push_every": 1, "batch_real": 16}
    a = IDM(build_options(IDM.Options, opts)).condense(task_of(digits, seed=11))
    b = IDM(build_options(IDM.Options, opts)).condense(task_of(digits, seed=11))
    c = IDM(build_options(IDM.Options, opts)).condense(task_of(digits, seed=12))
    assert torch.equal(a.images, b.images) and a.facts["final_losses"] == b.facts["final_losses"]
    assert not torch.equal(a.images, c.images)


def test_idm_refuses_a_factor_that_does_not_divide_the_images(digits):
    with pytest.raises(UsageError, match="factor=3 does not divide"):
        IDM(build_options(IDM.Options, {"factor": 3})).condense(task_of(digits))


# ----------------------------------------------------------------------------------------------- add-ons
@pytest.mark.parametrize("addons", [{}, {"sm": True}, {"icd": True}, {"sm": True, "icd": True}])
@pytest.mark.parametrize("cls", [DataDAM, IDM])
def test_the_contract_check_passes_for_each_base_with_and_without_addons(cls, addons):
    check_condenser(cls, ipc=3, options={"iterations": 3, "train_steps": 1, **addons} if cls is IDM else
                    {"iterations": 3, **addons})


def test_style_matching_on_datadam_adds_exactly_the_addon_terms(digits):
    net = frozen(build_network("convnet", 1, 10, 8, seed=2, width=16))
    batch = random_batch(9, 8)
    from clbench.condensers.ddm import DDM

    plain = DataDAM().class_losses(net, batch)
    both = DataDAM(build_options(DataDAM.Options, {"sm": True, "icd": True})).class_losses(net, batch)
    ddm = DDM().class_losses(net, batch)
    for name in ("attention", "dm"):
        torch.testing.assert_close(both[name], plain[name])
    for name in ("mm", "cm", "icd"):  # the add-ons' terms are DDM's, from the same forward pass
        torch.testing.assert_close(both[name], ddm[name], rtol=1e-5, atol=1e-7)


def test_a_pre_relu_style_tap_on_datadam_is_refused_when_the_condenser_is_made():
    with pytest.raises(UsageError, match="one pass"):
        DataDAM(build_options(DataDAM.Options, {"sm": True, "style_tap": "pre_relu"}))


def test_cli_refuses_conflicting_addon_options_with_one_line(cli, tmp_path):
    code, _, err = cli("run", "--condenser", "datadam", "--dataset", "digits", "--opt", "sm=true",
                       "--opt", "style_tap=pre_relu", "--out", str(tmp_path))
    assert code == 2 and "one pass" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())
    code, _, err = cli("run", "--condenser", "idm", "--dataset", "digits", "--opt", "smm=true", "--out", str(tmp_path))
    assert code == 2 and "smm" in err and "sm" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())
