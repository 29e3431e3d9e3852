"""Real images stay uint8 where a run keeps them and are normalised where they are used (clbench.data.types):
the values equal those of the whole split normalised first, so every protocol's numbers are those of the older
float32 residency, which a test brings back by patching `ImageDataset.resident`."""
from __future__ import annotations

import pytest
import torch

from clbench.data.types import ImageDataset, RealData, normalise, storage_facts, storage_for


def small_dataset(n: int = 12) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % 3
    return ImageDataset("toy", ["a", "b", "c"], images, labels, images[:6].clone(), labels[:6].clone(),
                        (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), "test")


def test_rows_and_classes_are_normalised_exactly_as_the_whole_split():
    ds = small_dataset()
    data = ds.resident("cpu")
    whole, labels = ds.normalised("train")
    rows = torch.tensor([7, 0, 3, 3])
    assert data.train_pixels.dtype == torch.uint8 and data.train_pixels.data_ptr() == ds.train_images.data_ptr()
    assert torch.equal(data.train(rows), whole[rows])
    assert torch.equal(data.train(), whole) and torch.equal(data.train_images, whole)  # the older name
    images, of = data.of_classes("train", [2, 0])
    keep = (labels == 2) | (labels == 0)
    assert torch.equal(images, whole[keep]) and torch.equal(of, labels[keep])
    # by hand, one pixel: (x / 255 - mean) / std
    x = int(ds.train_images[5, 1, 2, 3])
    assert data.train(torch.tensor([5]))[0, 1, 2, 3].item() == pytest.approx((x / 255 - 0.5) / 0.25, abs=1e-6)


def test_float_images_are_taken_as_normalised_and_uint8_needs_statistics():
    ds = small_dataset()
    train_x, train_y = ds.normalised("train")
    test_x, test_y = ds.normalised("test")
    older = RealData(train_x, train_y, test_x, test_y, 3)  # the form a plugin may still build
    assert torch.equal(older.train(torch.tensor([1, 2])), train_x[[1, 2]]) and older.test() is not None
    with pytest.raises(ValueError, match="mean and std"):
        RealData(ds.train_images, train_y, ds.test_images, test_y, 3)
    with pytest.raises(ValueError, match="normalised already"):
        RealData(train_x, train_y, test_x, test_y, 3, ds.mean, ds.std)


def test_images_stay_on_the_device_only_where_they_fit(monkeypatch):
    ds = small_dataset()
    nbytes = ds.train_images.numel() + ds.test_images.numel()
    assert storage_for(ds, "cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * nbytes, 10 * nbytes))
    assert storage_for(ds, "cuda:0") == torch.device("cuda:0")  # exactly half of the free memory: kept there
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * nbytes - 1, 10 * nbytes))
    assert storage_for(ds, "cuda:0") == torch.device("cpu")
    calls = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: calls.append(device) or (0, 0))
    rule = storage_facts(ds, "cuda:0")  # before the data is held: the rule, without asking the GPU
    assert rule["kept_on"].startswith("cuda:0 if they take at most 50%") and not calls
    assert rule["bytes"] == nbytes and rule["images"] == "uint8"
    on_host = RealData(ds.train_images, ds.train_labels, ds.test_images, ds.test_labels, 3, ds.mean, ds.std,
                       torch.device("cuda:0"))
    assert storage_facts(ds, "cuda:0", on_host)["kept_on"] == "host"
    assert normalise(ds.train_images, ds.mean, ds.std, "cpu").dtype == torch.float32


def _whole_float32(self, device="cpu"):
    """The older residency: both splits normalised to float32 once, before the first step."""
    train_x, train_y = self.normalised("train", device)
    test_x, test_y = self.normalised("test", device)
    return RealData(train_x, train_y, test_x, test_y, self.num_classes)


TINY = dict(dataset="digits", steps=2, orders=1, width=8, profile="quick", device="cpu",
            train={"epochs": 2, "batch_size": 128})


@pytest.mark.parametrize("learner, condenser", [("retrain", "dm"), ("retrain", "herding"), ("replay", "dm"),
                                                ("joint", "random"), ("task", "dm")])
def test_every_continual_protocol_gives_the_numbers_of_float32_residency(tmp_path, monkeypatch, learner, condenser):
    from clbench.protocol.config import RunConfig
    from clbench.protocol.continual import run

    config = dict(TINY, learner=learner, condenser=condenser,
                  opt={"iterations": 3} if condenser == "dm" else {})
    _, ours = run(RunConfig(out=str(tmp_path / "uint8"), **config))
    monkeypatch.setattr(ImageDataset, "resident", _whole_float32)
    _, older = run(RunConfig(out=str(tmp_path / "float32"), **config))
    steps = [s for o in ours["orders"] for s in o["steps"]]
    assert [s["accuracies"] for s in steps] == [s["accuracies"] for o in older["orders"] for s in o["steps"]]
    assert [s["class_accuracy"] for s in steps] == [s["class_accuracy"] for o in older["orders"] for s in o["steps"]]
    assert ours["environment"]["real_data"]["kept_on"] == "cpu"


def test_the_static_protocol_gives_the_numbers_of_float32_residency(tmp_path, monkeypatch):
    from clbench.protocol.static import StaticConfig, run_static

    config = dict(condenser="dm", dataset="digits", ipc=2, sets=1, evals=1, width=8, profile="quick",
                  device="cpu", opt={"iterations": 3}, train={"epochs": 2})
    _, ours = run_static(StaticConfig(out=str(tmp_path / "uint8"), **config))
    monkeypatch.setattr(ImageDataset, "resident", _whole_float32)
    _, older = run_static(StaticConfig(out=str(tmp_path / "float32"), **config))
    assert ours["sets"][0]["accuracies"] == older["sets"][0]["accuracies"]
    assert ours["sets"][0]["class_accuracy"] == older["sets"][0]["class_accuracy"]


def test_a_class_subset_lets_the_whole_dataset_go(monkeypatch):
    from clbench.data import datasets

    datasets.clear_cache()
    part = datasets.load_dataset("digits#0-4")
    assert part.num_classes == 5
    assert [key for key in datasets._CACHE] == [("digits#0-4", "None")]  # the whole 10 classes not kept
    whole = datasets.load_dataset("digits")
    datasets.load_dataset("digits#5-9")
    assert datasets.load_dataset("digits") is whole  # a dataset loaded in its own right stays
