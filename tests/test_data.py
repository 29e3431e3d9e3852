"""Datasets: the digits and system copies load, every accepted folder layout round-trips, errors say where."""
from __future__ import annotations

import gzip
import pickle
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from clbench.core.errors import DataNotFoundError, UsageError
from clbench.data import datasets as data
from clbench.data import readers
from clbench.data.datasets import DATASET_NAMES, ImageDataset, load_dataset


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No cache carried between tests, no user environment, and never the network."""
    data.clear_cache()
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))

    def no_network(name, root):
        raise AssertionError("a test tried to download")

    monkeypatch.setattr(data, "_torchvision_download", no_network)
    yield
    data.clear_cache()


# ---- fake files in torchvision's layouts ----------------------------------------------------------------

def write_idx(path: Path, array: np.ndarray, gz: bool, magic: bytes | None = None) -> Path:
    header = (magic or bytes([0, 0, 0x08, array.ndim])) + struct.pack(f">{array.ndim}i", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def fake_split(rng: np.random.Generator, n: int, shape: tuple[int, ...], classes: int):
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    labels = np.arange(n) % classes
    return images, labels


def write_idx_dataset(folder: Path, gz: bool, seed: int = 0, size: int = 28) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tr_x, tr_y = fake_split(rng, 12, (size, size), 10)
    te_x, te_y = fake_split(rng, 10, (size, size), 10)
    for stem, arr in (("train-images-idx3-ubyte", tr_x), ("train-labels-idx1-ubyte", tr_y),
                      ("t10k-images-idx3-ubyte", te_x), ("t10k-labels-idx1-ubyte", te_y)):
        write_idx(folder / stem, arr, gz)
    return {"train_x": tr_x, "train_y": tr_y, "test_x": te_x, "test_y": te_y}


def assert_round_trip(ds: ImageDataset, expected: dict[str, np.ndarray]) -> None:
    assert ds.train_images.dtype == torch.uint8 and ds.train_labels.dtype == torch.long
    np.testing.assert_array_equal(ds.train_images.numpy(), expected["train_x"])
    np.testing.assert_array_equal(ds.train_labels.numpy(), expected["train_y"])
    np.testing.assert_array_equal(ds.test_images.numpy(), expected["test_x"])
    np.testing.assert_array_equal(ds.test_labels.numpy(), expected["test_y"])


def write_cifar10(root: Path) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    xs, ys = [], []
    for i in range(1, 6):
        x, y = fake_split(rng, 3, (3, 32, 32), 10)
        y = (y + i) % 10
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps({"data": x.reshape(3, -1), "labels": y.tolist()}))
        xs.append(x)
        ys.append(y)
    te_x, te_y = fake_split(rng, 4, (3, 32, 32), 10)
    (folder / "test_batch").write_bytes(pickle.dumps({"data": te_x.reshape(4, -1), "labels": te_y.tolist()}))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    return {"train_x": np.concatenate(xs), "train_y": np.concatenate(ys), "test_x": te_x, "test_y": te_y}


def write_cifar100(root: Path) -> dict[str, np.ndarray]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    tr_x, tr_y = fake_split(rng, 5, (3, 32, 32), 100)
    tr_y = tr_y * 20 + 3  # labels up to 83: fine labels, not the 20 coarse ones
    te_x, te_y = fake_split(rng, 3, (3, 32, 32), 100)
    # bytes keys, as a Python 3 pickle of the original files would have them
    for fname, x, y in (("train", tr_x, tr_y), ("test", te_x, te_y)):
        (folder / fname).write_bytes(pickle.dumps(
            {b"data": x.reshape(len(x), -1), b"fine_labels": y.tolist(), b"coarse_labels": [0] * len(x)}))
    names = [f"c{i}".encode() for i in range(100)]
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": names, b"coarse_label_names": []}))
    return {"train_x": tr_x, "train_y": tr_y, "test_x": te_x, "test_y": te_y}


def write_tiny(root: Path) -> Path:
    from PIL import Image

    folder = root / "tiny-imagenet-200"
    rng = np.random.default_rng(3)
    wnids = ["n02", "n01"]  # deliberately unsorted: labels follow the sorted order
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (folder / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\ttabby, tabby cat\n")
    for w in wnids:
        (folder / "train" / w / "images").mkdir(parents=True)
        for k in range(2):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
                folder / "train" / w / "images" / f"{w}_{k}.JPEG")
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8), mode="L").save(
        folder / "val" / "images" / "val_0.JPEG")  # greyscale, as some real ones are
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "val" / "images" / "val_1.JPEG")
    (folder / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn02\t0\t0\t8\t8\nval_1.JPEG\tn01\t1\t1\t7\t7\n")
    return folder


def pil_pixels(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)


# ---- digits and the system copy -------------------------------------------------------------------------

def test_digits_shapes_labels_and_split():
    ds = load_dataset("digits")
    assert ds.train_images.shape[1:] == (1, 8, 8) and ds.test_images.shape[1:] == (1, 8, 8)
    assert ds.train_images.dtype == torch.uint8
    assert len(ds.train_labels) + len(ds.test_labels) == 1797 and len(ds.test_labels) == 360
    assert ds.num_classes == 10 and ds.channels == 1 and ds.image_size == 8
    assert (ds.class_counts("train") > 0).all() and (ds.class_counts("test") > 0).all()
    assert int(ds.class_counts("test").sum()) == 360
    # 16 (the largest sklearn value) maps to 255, 0 to 0
    assert int(ds.train_images.max()) == 255 and int(ds.train_images.min()) == 0
    # the split is fixed: a fresh load gives identical tensors
    data.clear_cache()
    again = load_dataset("digits")
    assert again is not ds and torch.equal(again.train_images, ds.train_images)


def test_digits_normalise_and_denormalise():
    ds = load_dataset("digits")
    x, y = ds.normalised("train", "cpu")
    assert x.dtype == torch.float32 and x.shape == ds.train_images.shape and torch.equal(y, ds.train_labels)
    assert abs(x.mean().item()) < 1e-5 and abs(x.std(unbiased=False).item() - 1) < 1e-5
    back = ds.denormalise(x)
    torch.testing.assert_close(back, ds.train_images.float() / 255, atol=1e-6, rtol=0)
    # one image (C, H, W) works too, and out-of-range values clamp to [0, 1]
    assert ds.denormalise(torch.full((1, 8, 8), 100.0)).max().item() == 1.0


def test_normalised_uses_mean_and_std_by_hand():
    img = torch.tensor([0, 51, 255], dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 2, 1, 1).contiguous()
    labels = torch.tensor([0, 1, 1])
    ds = ImageDataset("toy", ["a", "b"], img, labels, img, labels, (0.2, 0.4), (0.5, 0.25), "hand")
    x, _ = ds.normalised("test", "cpu")
    # pixel 51 -> 0.2; channel 0: (0.2-0.2)/0.5 = 0; channel 1: (0.2-0.4)/0.25 = -0.8
    torch.testing.assert_close(x[1, :, 0, 0], torch.tensor([0.0, -0.8]))
    torch.testing.assert_close(x[2, :, 0, 0], torch.tensor([1.6, 2.4]))
    assert ds.class_counts("train").tolist() == [1, 2]
    with pytest.raises(ValueError, match="split"):
        ds.normalised("val", "cpu")
    with pytest.raises(ValueError, match="mean/std"):
        ImageDataset("toy", ["a", "b"], img, labels, img, labels, (0.2,), (0.5,), "hand")
    with pytest.raises(ValueError, match="outside"):
        ImageDataset("toy", ["a"], img, labels, img, labels, (0.2, 0.4), (0.5, 0.25), "hand")


def test_fashion_mnist_system_copy():
    if not (data.SYSTEM_DATA_ROOT / "fashion-mnist" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("the system Fashion-MNIST (apt-get install dataset-fashion-mnist) is not installed")
    ds = load_dataset("fashion-mnist", download=False)
    assert ds.train_images.shape == (60000, 1, 28, 28) and ds.test_images.shape == (10000, 1, 28, 28)
    assert ds.num_classes == 10 and ds.class_names[0] == "T-shirt/top"
    assert ds.class_counts("train").tolist() == [6000] * 10
    assert "system copy" in ds.source
    assert load_dataset("fashion-mnist") is ds  # read once per process


# ---- layouts --------------------------------------------------------------------------------------------

def test_fashion_mnist_torchvision_layout_gz(tmp_path):
    expected = write_idx_dataset(tmp_path / "FashionMNIST" / "raw", gz=True)
    ds = load_dataset("fashion-mnist", data_dir=tmp_path)
    assert_round_trip(ds, {**expected, "train_x": expected["train_x"][:, None], "test_x": expected["test_x"][:, None]})
    assert ds.image_size == 28 and ds.mean == (0.2861,) and str(tmp_path) in ds.source


def test_mnist_torchvision_layout_plain_and_env_var(tmp_path, monkeypatch):
    expected = write_idx_dataset(tmp_path / "MNIST" / "raw", gz=False, seed=5)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    ds = load_dataset("mnist")
    np.testing.assert_array_equal(ds.train_images[:, 0].numpy(), expected["train_x"])
    np.testing.assert_array_equal(ds.test_labels.numpy(), expected["test_y"])
    assert ds.class_names == [str(i) for i in range(10)] and ds.mean == (0.1307,)


@pytest.mark.parametrize("sub", ["", "mnist"])
def test_idx_files_directly_in_root_or_named_folder(tmp_path, sub):
    expected = write_idx_dataset(tmp_path / sub, gz=True, seed=7)
    ds = load_dataset("mnist", data_dir=tmp_path)
    np.testing.assert_array_equal(ds.train_images[:, 0].numpy(), expected["train_x"])


def test_images_of_another_size_than_the_dataset_are_refused(tmp_path):
    """Checks made before loading (a sweep's driver, a condenser's check_data) trust the registry's image size."""
    write_idx_dataset(tmp_path / "fashion-mnist", gz=False, size=5)
    with pytest.raises(UsageError, match=r"fashion-mnist images are 28x28 px, these are 5x5"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


def test_labels_outside_the_classes_are_one_line_naming_the_range(tmp_path):
    """Valid idx files whose labels go past the dataset's classes (another dataset's files): the range, once."""
    write_idx_dataset(tmp_path / "fashion-mnist", gz=False)
    write_idx(tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte", np.arange(10) * 20, gz=False)
    with pytest.raises(UsageError, match=r"the test labels are 0\.\.180, but fashion-mnist has classes 0\.\.9"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


def test_cifar10_layout(tmp_path):
    expected = write_cifar10(tmp_path)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert_round_trip(ds, expected)
    assert ds.train_images.shape == (15, 3, 32, 32) and ds.class_names[1] == "automobile"
    assert ds.std == (0.2023, 0.1994, 0.2010)


def test_cifar100_layout_fine_labels(tmp_path):
    expected = write_cifar100(tmp_path)
    ds = load_dataset("cifar100", data_dir=tmp_path)
    assert_round_trip(ds, expected)
    assert ds.num_classes == 100 and ds.class_names[83] == "c83"


def test_tinyimagenet_layout_and_tensor_cache(tmp_path, monkeypatch):
    folder = write_tiny(tmp_path)
    ds = load_dataset("tinyimagenet", data_dir=tmp_path)
    assert ds.class_names == ["goldfish", "tabby"]  # sorted wnids n01, n02
    assert ds.train_images.shape == (4, 3, 64, 64) and ds.test_images.shape == (2, 3, 64, 64)
    assert ds.train_labels.tolist() == [0, 0, 1, 1] and ds.test_labels.tolist() == [1, 0]
    np.testing.assert_array_equal(ds.train_images[2].numpy(), pil_pixels(folder / "train/n02/images/n02_0.JPEG"))
    np.testing.assert_array_equal(ds.test_images[0].numpy(), pil_pixels(folder / "val/images/val_0.JPEG"))
    cache = folder / readers.TINY_CACHE
    assert cache.is_file()
    assert not list(folder.glob("*.tmp"))  # the atomic write left no temporary behind

    # a second process (simulated by clearing the in-process cache) reads the .pt, not the JPEGs
    data.clear_cache()
    import PIL.Image

    def no_decoding(*args, **kwargs):
        raise AssertionError("JPEGs decoded again despite the cache")

    monkeypatch.setattr(PIL.Image, "open", no_decoding)
    again = load_dataset("tinyimagenet", data_dir=tmp_path)
    assert again is not ds
    assert torch.equal(again.train_images, ds.train_images) and torch.equal(again.test_labels, ds.test_labels)


def test_tinyimagenet_in_a_read_only_folder_loads_without_its_cache(tmp_path, monkeypatch):
    import errno

    folder = write_tiny(tmp_path)

    def refused(path, obj):  # what a read-only folder (a system copy) answers, even to root's CI
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(readers, "atomic_torch_save", refused)
    ds = load_dataset("tinyimagenet", data_dir=tmp_path)
    assert ds.train_images.shape == (4, 3, 64, 64) and not (folder / readers.TINY_CACHE).exists()

    def disk_full(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    data.clear_cache()
    monkeypatch.setattr(readers, "atomic_torch_save", disk_full)
    with pytest.raises(OSError, match="No space"):  # any other failure is not hidden
        load_dataset("tinyimagenet", data_dir=tmp_path)


def test_same_dataset_is_read_once(tmp_path, monkeypatch):
    write_idx_dataset(tmp_path / "MNIST" / "raw", gz=True)
    first = load_dataset("mnist", data_dir=tmp_path)
    monkeypatch.setattr(readers, "read_idx", lambda path: pytest.fail("files read twice"))
    assert load_dataset("MNIST", data_dir=str(tmp_path)) is first


def test_download_fallback_uses_torchvision_layout(tmp_path, monkeypatch):
    calls = []

    def fake_download(name, root):
        calls.append((name, root))
        write_idx_dataset(root / "FashionMNIST" / "raw", gz=True)

    monkeypatch.setattr(data, "SYSTEM_DATA_ROOT", tmp_path / "no-system")
    monkeypatch.setattr(data, "_torchvision_download", fake_download)
    ds = load_dataset("fashion-mnist")
    assert calls == [("fashion-mnist", tmp_path / "xdg-cache" / "clbench" / "data")]
    assert "downloaded by torchvision" in ds.source and len(ds.train_labels) == 12


# ---- errors ---------------------------------------------------------------------------------------------

def test_unknown_name_suggests_and_lists():
    with pytest.raises(UsageError) as info:
        load_dataset("fashion-mnst")
    message = str(info.value)
    assert "unknown dataset 'fashion-mnst'. Did you mean fashion-mnist?" in message
    assert all(name in message for name in DATASET_NAMES)


def test_missing_data_dir_is_a_usage_error(tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="nowhere"):
        load_dataset("mnist", data_dir=tmp_path / "nowhere")
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "gone"))
    with pytest.raises(UsageError, match="CLBENCH_DATA"):
        load_dataset("mnist")


def test_offline_and_nowhere_names_every_place(tmp_path, monkeypatch):
    system = tmp_path / "system"
    system.mkdir()
    monkeypatch.setattr(data, "SYSTEM_DATA_ROOT", system)

    def offline(name, root):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(data, "_torchvision_download", offline)
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("fashion-mnist")
    message = str(info.value)
    assert str(system / "fashion-mnist") in message
    assert str(tmp_path / "xdg-cache" / "clbench" / "data") in message
    assert "URLError" in message and "name resolution" in message
    assert "apt-get install dataset-fashion-mnist" in message and "CLBENCH_DATA" in message
    assert info.value.__cause__ is None and info.value.__context__ is None  # no network traceback chained

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("cifar10", data_dir=empty, download=False)
    assert str(empty) in str(info.value) and "download disabled" in str(info.value)


def test_tinyimagenet_offline_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SYSTEM_DATA_ROOT", tmp_path)
    with pytest.raises(DataNotFoundError, match="tiny-imagenet-200.zip"):
        load_dataset("tinyimagenet", data_dir=tmp_path)


@pytest.mark.parametrize("damage", ["magic", "truncated", "gzip"])
def test_damaged_idx_names_the_file(tmp_path, damage):
    raw = tmp_path / "FashionMNIST" / "raw"
    write_idx_dataset(raw, gz=True)
    bad = raw / "train-images-idx3-ubyte.gz"
    if damage == "magic":
        write_idx(raw / "train-images-idx3-ubyte", np.zeros((12, 5, 5)), gz=True, magic=b"\x08\x03\x00\x00")
    elif damage == "truncated":
        bad.write_bytes(gzip.compress(gzip.decompress(bad.read_bytes())[:-7]))
    else:
        bad.write_bytes(b"not a gzip file at all")
    with pytest.raises(DataNotFoundError, match="damaged") as info:
        load_dataset("fashion-mnist", data_dir=tmp_path)
    assert str(bad) in str(info.value)


def test_read_idx_by_hand(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "x-idx3-ubyte", arr, gz=False)
    assert path.read_bytes()[:16] == bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4])
    np.testing.assert_array_equal(readers.read_idx(path), arr)


def test_damaged_cifar_pickle_names_the_file(tmp_path):
    write_cifar10(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("cifar10", data_dir=tmp_path)
    assert str(bad) in str(info.value)
