"""The diagnosis: hand-checked statistics, zero gap for real data, low diversity for a constant set, bad input."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from clbench.core.atomic import atomic_torch_save, atomic_write_json
from clbench.core.errors import UsageError
from clbench.data.datasets import load_dataset
from clbench.nets.networks import ConvNet
from clbench.report import diagnose as dg
from clbench.report import diagnose_table


# ----------------------------------------------------------------------------------------------- the maths
def test_channel_moments_by_hand() -> None:
    tap = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 5.0], [5.0, 5.0]]]])  # (1, 2, 2, 2)
    mu, sigma = dg.channel_moments(tap)
    assert mu.tolist() == [[2.5, 5.0]]
    assert sigma[0, 0].item() == pytest.approx(math.sqrt(5.0 / 3.0 + 1e-5))  # unbiased variance of 1..4
    assert sigma[0, 1].item() == pytest.approx(math.sqrt(1e-5))
    one_pixel = torch.tensor([[[[3.0]]]])
    assert dg.channel_moments(one_pixel)[1].item() == pytest.approx(math.sqrt(1e-5))  # no NaN on a 1x1 map


def test_style_gap_by_hand_and_invariants() -> None:
    gen = torch.Generator().manual_seed(0)
    taps = [torch.randn(6, 3, 4, 4, generator=gen), torch.randn(6, 5, 2, 2, generator=gen)]
    real = dg.StyleSums.of(taps)
    assert dg.style_gap(real, real) == {"mean_gap": 0.0, "std_gap": 0.0, "gram_gap": 0.0}
    # order and chunking do not matter
    perm = torch.randperm(6, generator=gen)
    shuffled = dg.StyleSums.of([t[perm[:2]] for t in taps]) + dg.StyleSums.of([t[perm[2:]] for t in taps])
    assert shuffled.count == 6
    assert all(v < 1e-12 for v in dg.style_gap(real, shuffled).values())
    # a shift by 1 moves every channel mean by 1 and leaves the std alone: mean gap 1 on each tap
    shifted = dg.StyleSums.of([t + 1.0 for t in taps])
    gap = dg.style_gap(real, shifted)
    assert gap["mean_gap"] == pytest.approx(1.0) and gap["std_gap"] == pytest.approx(0.0, abs=1e-10)
    # a scale by 2 doubles each std; the Gram gap is sum((4G - G)^2) = 9 sum(G^2), averaged over taps
    scaled = dg.StyleSums.of([2.0 * t for t in taps])
    grams = [(dg.gram(t).double().mean(0)) for t in taps]
    expected = sum(9.0 * float((g ** 2).sum()) for g in grams) / 2
    assert dg.style_gap(real, scaled)["gram_gap"] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError):
        dg.style_gap(real, dg.empty_style())


def test_diversity_by_hand() -> None:
    points = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]])  # distances 5, 4, 3
    assert dg.mean_pairwise_distance(points) == pytest.approx(4.0)
    assert dg.mean_knn_distance(points, 1) == pytest.approx((4.0 + 3.0 + 3.0) / 3)
    assert dg.mean_knn_distance(points, 2) == pytest.approx((4.5 + 4.0 + 3.5) / 3)
    assert dg.mean_knn_distance(points, 3) is None  # n <= k: undefined
    assert dg.mean_pairwise_distance(points[:1]) is None
    constant = torch.full((50, 2048), 0.3)
    assert dg.diversity(constant, 2) == {"pairwise": 0.0, "knn": 0.0}  # exact, no matmul rounding
    with pytest.raises(ValueError):
        dg.mean_knn_distance(points, 0)
    assert dg.mean_of([None, 1.0, 3.0]) == 2.0 and dg.mean_of([None]) is None
    assert dg.ratio(1.0, 4.0) == 0.25 and dg.ratio(1.0, 0.0) is None


def test_conv_taps_are_the_conv_outputs_and_norm_taps_are_ddms() -> None:
    net = ConvNet(1, 3, 8, width=4).eval()
    x = torch.randn(2, 1, 8, 8)
    emb, conv_taps = dg.embed_and_style_taps(net, x, "conv")
    assert torch.equal(conv_taps[0], net.convs[0](x)) and len(conv_taps) == net.depth
    assert torch.equal(emb, net.embed(x))
    _, norm_taps = dg.embed_and_style_taps(net, x, "norm")
    # DDM's taps: relu(instance norm) of the conv output, whose per-sample moments are nearly the same for
    # every image (which is why the default taps are the convs)
    torch.testing.assert_close(norm_taps[0], torch.relu(net.norms[0](net.convs[0](x))))
    assert dg.channel_moments(conv_taps[0])[0].abs().max() > 1e-3
    # the names DDM's style_tap option uses; "norm" is kept as the old name of post_relu
    _, post = dg.embed_and_style_taps(net, x, "post_relu")
    _, pre = dg.embed_and_style_taps(net, x, "pre_relu")
    assert all(torch.equal(a, b) for a, b in zip(post, norm_taps))
    torch.testing.assert_close(pre[0], net.norms[0](net.convs[0](x)))
    dg.DiagnoseConfig(taps="norm").validate()  # accepted (old records and scripts)
    with pytest.raises(UsageError, match="choose one of conv, pre_relu, post_relu"):
        dg.DiagnoseConfig(taps="relu").validate()
    assert not net.convs[0]._forward_hooks  # hooks are removed
    with pytest.raises(UsageError):
        dg.embed_and_style_taps(torch.nn.Linear(2, 2), x, "conv")


# ----------------------------------------------------------------------------------------------- records
def _write_record(folder: Path, kind: str, sets: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Path:
    """A minimal record of `kind` on digits whose condensed sets are the given tensors."""
    path = folder / f"{kind}.json"
    entries = []
    for i, (label, (images, labels)) in enumerate(sets.items()):
        file = f"{kind}/{label}.pt"
        atomic_torch_save(folder / file, {"images": images, "labels": labels})
        entries.append({"set": i, "complete": True, "synthetic_file": file} if kind == "static"
                       else {"order": i, "complete": True, "memory_file": file, "steps": []})
    record = {"schema": "clbench.run", "schema_version": 1, "kind": kind, "run_id": f"test-{kind}",
              "complete": True, "config": {"dataset": "digits", "condenser": "handmade", "ipc": 4, "memory": "4ipc"},
              "orders": [] if kind == "static" else entries, "summary": {}}
    if kind == "static":
        record["sets"] = entries
    atomic_write_json(path, record)
    return path


FAST = dict(seeds=1, width=8, device="cpu", real_per_class=1000)


def test_real_data_has_no_style_gap_and_a_constant_set_no_diversity(tmp_path) -> None:
    x, y = load_dataset("digits").normalised("train")
    classes = [0, 1, 2]
    everything = torch.cat([x[y == c] for c in classes]), torch.cat([y[y == c] for c in classes])
    constant = (torch.cat([x[y == c][:1].repeat(4, 1, 1, 1) for c in classes]),
                torch.tensor(classes).repeat_interleave(4))
    path = _write_record(tmp_path, "static", {"all-real": everything, "constant": constant})
    doc = dg.diagnose([path], dg.DiagnoseConfig(**FAST))
    assert doc["schema"] == "clbench.diagnose" and len(doc["config"]["network_seeds"]) == 1
    (result,) = doc["records"]
    real_set, constant_set = result["sets"]
    assert real_set["label"] == "set 0" and set(real_set["classes"]) == {"0", "1", "2"}
    for c, v in real_set["classes"].items():
        assert v["n"] == int((y == int(c)).sum())
        for m in ("mean_gap", "std_gap", "gram_gap"):
            assert v["synthetic"][m] < 1e-9  # the whole class against itself
        assert v["synthetic"]["pairwise"] == pytest.approx(v["real"]["pairwise"])  # the same images
    for v in constant_set["classes"].values():
        assert v["n"] == 4
        assert v["synthetic"]["pairwise"] == 0.0 and v["synthetic"]["knn"] == 0.0
        assert v["real"]["pairwise"] > 0.0 and v["real"]["knn"] > 0.0
        assert v["synthetic"]["std_gap"] > 0.0
    summary = result["summary"]
    assert summary["sets"] == 2 and summary["classes"] == 3
    assert summary["synthetic"]["pairwise"] < summary["real"]["pairwise"]
    rows = diagnose_table.summary_rows(doc)
    assert rows[0]["condenser"] == "handmade" and rows[0]["pairwise_ratio"] < 1.0
    assert len(diagnose_table.class_rows(result)) == 6


def test_cli_on_a_continual_memory(cli, tmp_path) -> None:
    x, y = load_dataset("digits").normalised("train")
    memory = torch.cat([x[y == c][:4] for c in (3, 7)]), torch.tensor([3] * 4 + [7] * 4)
    path = _write_record(tmp_path, "continual", {"memory": memory})
    out = tmp_path / "diag.json"
    code, stdout, err = cli("diagnose", str(path), "--seeds", "2", "--width", "8", "--real", "30",
                            "--device", "cpu", "--per-class", "--out", str(out))
    assert code == 0, err
    doc = json.loads(out.read_text())
    (result,) = doc["records"]
    assert result["kind"] == "continual" and result["sets"][0]["label"] == "order 0"
    assert set(result["sets"][0]["classes"]) == {"3", "7"}
    assert doc["config"]["real_per_class"] == 30 and len(doc["config"]["network_seeds"]) == 2
    assert "diversity: pairwise dist" in stdout and "order 0" in stdout


def test_bad_input(cli, tmp_path) -> None:
    x, y = load_dataset("digits").normalised("train")
    path = _write_record(tmp_path, "static", {"s": (x[:4], y[:4])})
    not_record = tmp_path / "other.json"
    not_record.write_text("{}")
    cases = [
        ([str(tmp_path / "missing.json")], "no such record"),
        ([str(not_record)], "not a clbench run record"),
        ([str(path), "--k", "0"], "--k 0"),
        ([str(path), "--seeds", "0"], "--seeds 0"),
        ([str(path), "--taps", "pixels"], "--taps 'pixels'"),
        ([str(path), "--network", "alexnet", "--device", "cpu"], "has no per-block convolutions"),
    ]
    for args, message in cases:
        code, out, err = cli("diagnose", *args)
        assert code == 2 and message in err, (args, err)
        assert "Traceback" not in err
    (tmp_path / "static" / "s.pt").unlink()
    code, _, err = cli("diagnose", str(path))
    assert code == 2 and "are missing" in err
    empty = _write_record(tmp_path, "continual", {})
    with pytest.raises(UsageError, match="no saved condensed set"):
        dg.diagnose([empty], dg.DiagnoseConfig(**FAST))
    wrong = _write_record(tmp_path / "w", "static", {"s": (torch.zeros(2, 3, 8, 8), torch.tensor([0, 1]))})
    with pytest.raises(UsageError, match="shape"):
        dg.diagnose([wrong], dg.DiagnoseConfig(**FAST))
