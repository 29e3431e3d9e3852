"""The speed switches compute the same thing as the fp32 reference path (to float rounding), and bf16 does
not cost accuracy beyond the spread of seeds. Tiny shapes: the 8x8 digits and small networks."""
from __future__ import annotations

import dataclasses
import statistics

import pytest
import torch

from clbench.core.errors import UsageError
from clbench.core.options import describe
from clbench.core.speed import bf16_is_fast, fast_train_options, threads_per_job
from clbench.data.datasets import load_dataset
from clbench.nets.augment import make_augment
from clbench.nets.networks import build_network
from clbench.training.recipe import TrainRecipe, evaluate, predict, train_network


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    x, y = ds.normalised("train", "cpu")
    tx, ty = ds.normalised("test", "cpu")
    return x, y, tx, ty


def _train(x, y, recipe: TrainRecipe, net_name: str = "convnet", seed: int = 0, width: int = 16):
    net = build_network(net_name, 1, 10, 8, seed=seed, width=width)
    loss = train_network(net, x, y, recipe, make_augment(recipe.dsa_strategy), torch.Generator().manual_seed(seed))
    return net, loss


def _weights(net) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def test_channels_last_trains_the_same_network(digits):
    x, y, _, _ = digits
    recipe = TrainRecipe(epochs=4, batch_size=64)
    ref_net, ref_loss = _train(x[:150], y[:150], recipe)
    cl_net, cl_loss = _train(x[:150], y[:150], dataclasses.replace(recipe, channels_last=True))
    assert cl_loss == pytest.approx(ref_loss, rel=1e-4)
    torch.testing.assert_close(_weights(cl_net), _weights(ref_net), rtol=1e-4, atol=1e-5)


def test_micro_batches_give_the_same_update_as_the_whole_batch(digits):
    x, y, _, _ = digits
    recipe = TrainRecipe(epochs=4, batch_size=64)
    ref_net, ref_loss = _train(x[:150], y[:150], recipe)
    mb_net, mb_loss = _train(x[:150], y[:150], dataclasses.replace(recipe, micro_batch=16))
    assert mb_loss == pytest.approx(ref_loss, rel=1e-4)
    torch.testing.assert_close(_weights(mb_net), _weights(ref_net), rtol=1e-4, atol=1e-5)


def test_micro_batches_are_ignored_where_batch_norm_needs_the_whole_batch(digits):
    x, y, _, _ = digits
    recipe = TrainRecipe(epochs=2, batch_size=64)
    ref_net, _ = _train(x[:150], y[:150], recipe, "convnet_bn")
    mb_net, _ = _train(x[:150], y[:150], dataclasses.replace(recipe, micro_batch=16), "convnet_bn")
    assert torch.equal(_weights(mb_net), _weights(ref_net))  # chunking would have changed the statistics


def test_prediction_does_not_depend_on_the_eval_batch_size(digits):
    _, _, tx, ty = digits
    net = build_network("convnet", 1, 10, 8, seed=3, width=16)
    whole = predict(net, tx, batch_size=len(tx))
    assert torch.equal(predict(net, tx, batch_size=7), whole)
    assert torch.equal(predict(net, tx, batch_size=7, channels_last=True), whole)
    assert predict(net, tx[:0]).shape == (0,)


def test_bf16_predictions_mostly_agree_with_fp32(digits):
    x, y, tx, _ = digits
    net, _ = _train(x[:200], y[:200], TrainRecipe(epochs=10, batch_size=64))
    agree = (predict(net, tx, amp=True) == predict(net, tx)).float().mean().item()
    assert agree > 0.9


def test_bf16_accuracy_is_within_the_spread_of_seeds(digits):
    """Train 3 seeds in fp32 and 3 in bf16 on 10 images per class: the means differ by less than the seeds vary."""
    x, y, tx, ty = digits
    pick = torch.cat([torch.nonzero(y == c).flatten()[:10] for c in range(10)])
    recipe = TrainRecipe(epochs=60, lr=0.03)  # a higher lr than the paper's, to train in few epochs
    results = {}
    for amp in (False, True):
        accs = []
        for seed in range(3):
            net, loss = _train(x[pick], y[pick], dataclasses.replace(recipe, amp=amp), seed=seed, width=32)
            assert loss == loss
            accs.append(evaluate(net, tx, ty, dataclasses.replace(recipe, amp=amp))[0])
        results[amp] = accs
    fp32, bf16 = results[False], results[True]
    assert statistics.mean(fp32) > 40.0 and statistics.mean(bf16) > 40.0  # chance is 10%
    spread = max(max(fp32) - min(fp32), max(bf16) - min(bf16), 2.0)
    assert abs(statistics.mean(bf16) - statistics.mean(fp32)) <= spread


def test_bad_speed_settings_are_usage_errors(digits):
    x, y, _, _ = digits
    with pytest.raises(UsageError, match="micro_batch"):
        _train(x[:10], y[:10], TrainRecipe(epochs=1, micro_batch=-1))
    with pytest.raises(UsageError, match="eval_batch_size"):
        evaluate(build_network("convnet", 1, 10, 8, seed=0, width=8), x[:4], y[:4], TrainRecipe(eval_batch_size=0))


def test_every_speed_switch_is_a_documented_recipe_option():
    rows = {row["name"]: row for row in describe(TrainRecipe)}
    for name in ("amp", "channels_last", "micro_batch", "compile", "eval_batch_size"):
        assert rows[name]["help"]
    assert rows["amp"]["default"] is False  # the fp32 path is the reference
    assert set(fast_train_options(torch.device("cpu"))) <= set(rows)


def test_speed_helpers():
    assert threads_per_job(1, threads=2) == 2
    assert threads_per_job(2, threads=2) == 1
    assert threads_per_job(3, threads=2) == 1
    assert threads_per_job(2, threads=16) == 8
    before = torch.get_num_threads()
    torch.set_num_threads(4)  # the default follows torch's thread count (OMP_NUM_THREADS), not the cores
    try:
        assert threads_per_job(2) == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError):
        threads_per_job(0)
    assert bf16_is_fast(torch.device("meta")) is False


def test_amp_is_true_false_or_auto_and_auto_follows_the_device(monkeypatch):
    """amp parses as a boolean or "auto"; auto means bf16 exactly where the device runs it natively."""
    from clbench.core import speed
    from clbench.core.options import build_options

    assert build_options(TrainRecipe, {"amp": "auto"}).amp == "auto"
    assert build_options(TrainRecipe, {"amp": "on"}).amp is True
    assert build_options(TrainRecipe, {}, "quick").amp == "auto"
    with pytest.raises(UsageError, match="amp='fast'.*bool or"):
        build_options(TrainRecipe, {"amp": "fast"})
    cpu = torch.device("cpu")
    assert speed.use_bf16(True, cpu) is True and speed.use_bf16(False, cpu) is False
    for native in (True, False):
        monkeypatch.setattr(speed, "bf16_is_fast", lambda device, native=native: native)
        assert speed.use_bf16("auto", cpu) is native
    with pytest.raises(ValueError):
        speed.use_bf16("sometimes", cpu)
