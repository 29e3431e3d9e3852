"""Several networks trained in one batched pass are the networks trained one after the other (same seeds), to
float rounding: weights, last-epoch losses and test accuracies. Also the switches that decide it, the TF32
switch, and records written before these switches (resume and compare read them as they ran)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from clbench.core import speed
from clbench.core.options import build_options
from clbench.data.datasets import load_dataset
from clbench.nets.augment import make_augment
from clbench.nets.networks import build_network
from clbench.training.batched import batches_networks, evaluate_networks, predict_networks, train_networks
from clbench.training.recipe import TrainRecipe, evaluate, predict, train_network

NETS = 3


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    x, y = ds.normalised("train", "cpu")
    tx, ty = ds.normalised("test", "cpu")
    return x[:150], y[:150], tx[:400], ty[:400]


def _nets(name: str = "convnet") -> list[torch.nn.Module]:
    return [build_network(name, 1, 10, 8, seed=100 + k, width=16) for k in range(NETS)]


def _gens() -> list[torch.Generator]:
    return [torch.Generator().manual_seed(7 + k) for k in range(NETS)]


def _weights(net) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def _sequential(x, y, recipe, name="convnet"):
    nets = _nets(name)
    augment = make_augment(recipe.dsa_strategy if recipe.dsa else None)
    losses = [train_network(net, x, y, recipe, augment, gen) for net, gen in zip(nets, _gens())]
    return nets, losses


@pytest.mark.parametrize("micro_batch", [0, 16])
def test_batched_training_gives_the_sequential_networks(digits, micro_batch):
    x, y, tx, ty = digits
    # 150 images in batches of 64: a short last batch; the lr step at epoch 3 falls inside the run
    recipe = TrainRecipe(epochs=6, batch_size=64, micro_batch=micro_batch, batched_networks=False)
    seq, seq_losses = _sequential(x, y, recipe)
    batched = dataclasses.replace(recipe, batched_networks=True)
    nets = _nets()
    assert batches_networks(nets, batched, x.device)
    losses = train_networks(nets, x, y, batched, make_augment(recipe.dsa_strategy), _gens())
    assert losses == pytest.approx(seq_losses, rel=1e-5)
    for a, b in zip(seq, nets):
        torch.testing.assert_close(_weights(b), _weights(a), rtol=1e-4, atol=1e-6)
    # the networks differ from each other: each kept its own initialisation and its own draws
    assert (_weights(nets[0]) - _weights(nets[1])).abs().max() > 1e-2
    results = evaluate_networks(nets, tx, ty, batched)
    assert [acc for acc, _ in results] == [evaluate(net, tx, ty, recipe)[0] for net in seq]
    assert [per_class for _, per_class in results] == [evaluate(net, tx, ty, recipe)[1] for net in seq]


def test_batched_prediction_is_each_networks_prediction(digits):
    x, y, tx, _ = digits
    nets = _nets()  # untrained nets predict differently from each other: a mixed-up network would show
    recipe = TrainRecipe(eval_batch_size=128, batched_networks=True)
    expected = torch.stack([predict(net, tx, 128) for net in nets])
    assert not torch.equal(expected[0], expected[1])
    assert torch.equal(predict_networks(nets, tx, recipe), expected)
    assert predict_networks(nets, tx[:0], recipe).shape == (NETS, 0)


def test_without_dsa_and_without_augmentation_draws(digits):
    x, y, _, _ = digits
    recipe = TrainRecipe(epochs=2, batch_size=64, dsa=False, batched_networks=False)
    seq, _ = _sequential(x, y, recipe)
    nets = _nets()
    train_networks(nets, x, y, dataclasses.replace(recipe, batched_networks=True), make_augment(None), _gens())
    for a, b in zip(seq, nets):
        torch.testing.assert_close(_weights(b), _weights(a), rtol=1e-4, atol=1e-6)


def test_batch_norm_networks_are_trained_one_after_the_other(digits):
    """Batch norm keeps running statistics: those networks are trained sequentially, bit for bit the same."""
    x, y, _, _ = digits
    recipe = TrainRecipe(epochs=2, batch_size=64, batched_networks=True)
    nets = _nets("convnet_bn")
    assert not batches_networks(nets, recipe, x.device)
    seq, seq_losses = _sequential(x, y, recipe, "convnet_bn")
    losses = train_networks(nets, x, y, recipe, make_augment(recipe.dsa_strategy), _gens())
    assert losses == seq_losses
    for a, b in zip(seq, nets):
        assert torch.equal(_weights(a), _weights(b))


def test_which_runs_are_batched():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert speed.use_batched_networks("auto", cuda, 3) and not speed.use_batched_networks("auto", cpu, 3)
    assert speed.use_batched_networks(True, cpu, 2) and not speed.use_batched_networks(True, cuda, 1)
    assert not speed.use_batched_networks(False, cuda, 3)
    with pytest.raises(ValueError):
        speed.use_batched_networks("sometimes", cpu, 3)
    assert build_options(TrainRecipe, {}).batched_networks == "auto"
    assert build_options(TrainRecipe, {"batched_networks": "on"}).batched_networks is True
    assert not batches_networks(_nets(), TrainRecipe(batched_networks=True, channels_last=True), cpu)
    assert not batches_networks(_nets(), TrainRecipe(batched_networks=True, amp=True), cpu)  # no autocast in vmap
    with pytest.raises(Exception, match="generators"):
        train_networks(_nets(), torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), TrainRecipe(),
                       make_augment(None), _gens()[:2])


def test_tf32_switch_sets_and_restores_the_cuda_flags_and_leaves_the_cpu_alone():
    """Both flag APIs agree inside and after the switch (reading the legacy `allow_tf32` raises where they do not,
    and torch.compile reads it), and the state before comes back; only flags are touched, so no GPU is needed."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    flags = lambda: (matmul.allow_tf32, cudnn.allow_tf32)  # noqa: E731 (what they mean; "none" may become "ieee")
    before = flags()
    with speed.tf32(True, torch.device("cpu")):
        assert flags() == before
    for enabled in (True, False):
        with speed.tf32(enabled, torch.device("cuda")):
            assert matmul.allow_tf32 is enabled and cudnn.allow_tf32 is enabled  # these read: the APIs agree
            assert matmul.fp32_precision == ("tf32" if enabled else "ieee")
            assert cudnn.conv.fp32_precision == cudnn.rnn.fp32_precision  # conv and RNN never left apart
        assert flags() == before
    cudnn.conv.fp32_precision = "ieee"  # a caller that set one new flag itself: the legacy flags no longer read
    try:
        mixed = tuple(o.fp32_precision for o in (torch.backends, matmul, cudnn, cudnn.conv, cudnn.rnn))
        with speed.tf32(True, torch.device("cuda")):
            assert matmul.allow_tf32 and cudnn.allow_tf32
        assert tuple(o.fp32_precision for o in (torch.backends, matmul, cudnn, cudnn.conv, cudnn.rnn)) == mixed
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = before  # as it was, for the tests after this one
    assert flags() == before


def test_records_from_before_the_switches_resume_and_pool_with_new_runs():
    from clbench.protocol.checkpoint import config_differences
    from clbench.report.rows import protocol_variant

    train_now = dataclasses.asdict(TrainRecipe())
    old_train = {k: v for k, v in train_now.items() if k not in ("tf32", "cuda_graphs", "batched_networks")}
    opts_now = {"iterations": 5, "tf32": False}
    new = {"condenser": "dm", "train": train_now, "condenser_options": opts_now, "learner": "retrain"}
    old = {"condenser": "dm", "train": old_train, "condenser_options": {"iterations": 5}}
    assert config_differences(old, new) == []
    assert protocol_variant({"config": old}) == protocol_variant({"config": new})
    # a record that did run otherwise is still told apart
    other = {**new, "train": {**train_now, "batched_networks": True}}
    assert config_differences(other, new) and protocol_variant({"config": other}) != protocol_variant({"config": new})
    # a condenser without a tf32 option gets none filled in
    random_new = {"condenser": "random", "train": train_now, "condenser_options": {}, "learner": "retrain"}
    assert config_differences({**random_new, "train": old_train}, random_new) == []
    assert "opt.tf32" not in protocol_variant({"config": random_new})


def test_a_run_with_batched_networks_scores_as_the_run_without(cli, tmp_path):
    """The retrain strategy through the CLI: 3 networks per step, batched or not, give the same accuracies."""
    import json

    accuracies = {}
    for batched in ("false", "true"):
        out = tmp_path / batched
        code, _, err = cli("run", "--condenser", "random", "--dataset", "digits", "--steps", "2", "--orders", "1",
                           "--memory", "5ipc", "--nets", "3", "--train", "epochs=5", "--train", "amp=false",
                           "--train", f"batched_networks={batched}", "--device", "cpu", "--profile", "quick",
                           "--out", str(out))
        assert code == 0, err
        record = json.loads(next(out.glob("*.json")).read_text())
        assert record["config"]["train"]["batched_networks"] is (batched == "true")
        accuracies[batched] = [a for step in record["orders"][0]["steps"] for a in step["accuracies"]]
    assert len(accuracies["true"]) == 6 and accuracies["true"] == pytest.approx(accuracies["false"], abs=1e-6)
    assert len(set(accuracies["true"][:3])) > 1  # three different networks, not one counted three times
