"""Image-folder datasets (`--dataset folder:PATH[@SIZE]`, imagenette, imagewoof), datasets from plugins, and
`clbench datasets`. The folders are generated here: class folders of PNG and JPEG files of several sizes."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clbench.core.errors import UsageError
from clbench.data import datasets as dsmod
from clbench.data import image_folders

CLASSES = ["ant", "bee", "cat", "dog"]


def make_folder(root: Path, per_class: int = 4, test_split: str = "val", seed: int = 0) -> Path:
    """train/ and val/ of CLASSES; image k of class c is filled with the grey value 40*c + k (so labels can be
    checked from pixels), at a size that varies with k (wide, tall, square)."""
    rng = np.random.default_rng(seed)
    sizes = [(24, 16), (16, 24), (20, 20), (32, 32)]
    for split, n in (("train", per_class), (test_split, 2)):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                w, h = sizes[k % len(sizes)]
                value = 40 * c + k
                pixels = np.full((h, w, 3), value, dtype=np.uint8)
                pixels[0, 0] = rng.integers(0, 256, 3)  # a corner pixel the centre crop leaves out
                suffix = ".png" if k % 2 == 0 else ".PNG"
                Image.fromarray(pixels).save(folder / f"img{k}{suffix}")
    return root


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch, tmp_path):
    dsmod.clear_cache()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    yield
    dsmod.clear_cache()


def test_resize_then_centre_crop_keeps_the_middle():
    """A 32x16 image, left half black and right half white: the shorter side is already 16, so the crop is columns
    8..23, half black and half white."""
    pixels = np.zeros((16, 32, 3), dtype=np.uint8)
    pixels[:, 16:] = 255
    out = np.asarray(image_folders.resize_and_crop(Image.fromarray(pixels), 16))
    assert out.shape == (16, 16, 3)
    assert (out[:, :8] == 0).all() and (out[:, 8:] == 255).all()
    small = np.asarray(image_folders.resize_and_crop(Image.fromarray(pixels), 8))  # 32x16 -> 16x8 -> 8x8
    assert small.shape == (8, 8, 3)


def test_a_folder_dataset_is_read_with_its_classes_labels_and_statistics(tmp_path):
    root = make_folder(tmp_path / "pets")
    ds = dsmod.load_dataset(f"folder:{root}@16")
    assert ds.class_names == CLASSES and ds.train_images.shape == (16, 3, 16, 16)
    assert ds.test_images.shape == (8, 3, 16, 16) and ds.train_images.dtype == torch.uint8
    # the centre pixel says which class and image it is: 40*c + k
    centre = ds.train_images[:, 0, 8, 8].long()
    assert torch.equal(centre // 40, ds.train_labels)
    assert sorted((centre % 40).tolist()) == sorted(list(range(4)) * 4)
    values = ds.train_images.double() / 255
    assert ds.mean == pytest.approx(tuple(values.mean(dim=(0, 2, 3)).tolist()))
    assert ds.std == pytest.approx(tuple(values.std(dim=(0, 2, 3), unbiased=False).tolist()))
    assert ds.name == f"folder:{root.resolve()}@16"


def test_the_second_load_decodes_nothing_and_a_changed_folder_is_decoded_again(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "pets", test_split="test")
    first = dsmod.load_dataset(f"folder:{root}@16")
    cache = root / ".clbench-cache" / "size16-v1.pt"
    assert cache.is_file()
    dsmod.clear_cache()

    def no_decoding(paths, size):
        raise AssertionError("decoded again")

    monkeypatch.setattr(image_folders, "decode", no_decoding)
    again = dsmod.load_dataset(f"folder:{root}@16")
    assert torch.equal(again.train_images, first.train_images) and again.mean == first.mean
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(root / "train" / "ant" / "new.png")
    dsmod.clear_cache()
    with pytest.raises(AssertionError, match="decoded again"):
        dsmod.load_dataset(f"folder:{root}@16")


def test_a_read_only_folder_caches_under_the_user_cache(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "pets")
    real_save = image_folders.atomic_torch_save

    def refuse_beside_the_data(path, obj):
        if root in Path(path).parents:
            raise PermissionError(13, "Permission denied")
        return real_save(path, obj)

    monkeypatch.setattr(image_folders, "atomic_torch_save", refuse_beside_the_data)
    dsmod.load_dataset(f"folder:{root}@16")
    assert not list(root.rglob("*.pt"))
    assert list((tmp_path / "user-cache" / "clbench" / "folders").glob("*-size16-v1.pt"))


@pytest.mark.parametrize("make,message", [
    (lambda p: p, "is not a folder"),
    (lambda p: (p.mkdir(), p)[1], "has no train/ folder"),
    (lambda p: ((p / "train" / "a").mkdir(parents=True), p)[1], "no val/ or test/ folder"),
    (lambda p: ((p / "train" / "a").mkdir(parents=True), (p / "val" / "b").mkdir(parents=True), p)[-1],
     "lacks the class folder(s) a"),
    (lambda p: ((p / "train" / "a").mkdir(parents=True), (p / "val" / "a").mkdir(parents=True),
                (p / "val" / "z").mkdir(parents=True), p)[-1], "has class folder(s) z that train/ lacks"),
])
def test_a_folder_that_is_not_an_image_dataset_is_one_clear_error(tmp_path, make, message):
    path = make(tmp_path / "data")
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dsmod.dataset_spec(f"folder:{path}@16")


def test_a_broken_image_names_its_file(tmp_path):
    root = make_folder(tmp_path / "pets")
    (root / "train" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(Exception, match="broken.png"):
        dsmod.load_dataset(f"folder:{root}@16")


def test_imagenette_is_found_in_the_data_folder_with_imagenet_statistics(tmp_path):
    make_folder(tmp_path / "imagenette2")
    spec = dsmod.dataset_spec("imagenette")
    assert spec.image_size == 128 and spec.mean == (0.485, 0.456, 0.406)
    ds = dsmod.load_dataset("imagenette", data_dir=tmp_path)
    assert ds.train_images.shape[1:] == (3, 128, 128) and ds.class_names == CLASSES
    assert ds.mean == (0.485, 0.456, 0.406)


def test_a_continual_run_on_an_image_folder(tmp_path):
    from clbench.protocol.config import RunConfig
    from clbench.protocol.continual import run

    root = make_folder(tmp_path / "pets")
    path, record = run(RunConfig(condenser="random", dataset=f"folder:{root}@16", steps=2, orders=1, memory="2ipc",
                                 width=8, profile="quick", device="cpu", train={"epochs": 2}, out=str(tmp_path / "r")))
    assert record["complete"] and record["config"]["dataset"] == f"folder:{root.resolve()}@16"
    assert path.parent == tmp_path / "r" and path.name.startswith("folder-pets-16-random-")  # a file name, no path
    assert [len(s["seen_classes"]) for s in record["orders"][0]["steps"]] == [2, 4]


def test_a_dataset_plugin_by_entry_point(monkeypatch):
    """A function returning an ImageDataset, registered under the entry-point group clbench.datasets."""
    from importlib import metadata

    def tiny():
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (12, 1, 8, 8), dtype=torch.uint8, generator=g)
        labels = torch.arange(12) % 3
        return dsmod.ImageDataset("tiny", ["a", "b", "c"], images, labels, images[:6], labels[:6],
                                  (0.5,), (0.25,), "plugin")

    fake = metadata.EntryPoint("tiny", f"{__name__}:tiny_dataset", "clbench.datasets")
    real = metadata.entry_points
    monkeypatch.setattr(metadata, "entry_points",
                        lambda **kw: [fake] if kw.get("group") == "clbench.datasets" else real(**kw))
    monkeypatch.setattr(dsmod.DATASETS, "_scanned", False)
    monkeypatch.setattr(dsmod.DATASETS, "_entries", dict(dsmod.DATASETS._entries))
    monkeypatch.setattr(dsmod, "_PLUGIN_SPECS", {})
    monkeypatch.setattr(sys.modules[__name__], "tiny_dataset", tiny, raising=False)
    spec = dsmod.dataset_spec("tiny")
    assert (spec.channels, spec.image_size, spec.num_classes) == (1, 8, 3)
    assert dsmod.load_dataset("tiny").class_names == ["a", "b", "c"]
    assert "tiny" in dsmod.DATASETS.names()


def test_clbench_datasets_lists_every_name_and_where_it_was_found(cli, tmp_path):
    make_folder(tmp_path / "imagenette2")
    code, out, err = cli("datasets", "--data-dir", str(tmp_path))
    assert code == 0, err
    for name in dsmod.DATASET_NAMES:
        assert name in out
    flat = " ".join(out.split())
    assert "digits" in out and "bundled" in flat
    assert str(tmp_path / "imagenette2") in flat.replace(" ", "") or "imagenette2 (data folder" in flat
    assert "folder:PATH[@SIZE]" in flat


def test_run_refuses_a_bad_folder_before_any_work(cli, tmp_path):
    code, _, err = cli("run", "--dataset", f"folder:{tmp_path / 'nowhere'}", "--out", str(tmp_path / "r"))
    assert code == 2 and "is not a folder" in err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").glob("*.json"))


def test_downsampled_imagenet_npz_batches_are_read_plane_by_plane_with_labels_from_zero(tmp_path):
    """Two training batches and the validation file in the release's folders; pixel (c, y, x) of image i is
    stored at data[i, c*4096 + y*64 + x], and the files count classes from 1."""
    side = 64
    rng = np.random.default_rng(0)
    train = tmp_path / "Imagenet64_train_npz"
    val = tmp_path / "Imagenet64_val_npz"
    train.mkdir()
    val.mkdir()
    batches = []
    for k, n in ((1, 5), (2, 3)):
        data = rng.integers(0, 256, (n, 3 * side * side), dtype=np.uint8)
        labels = rng.integers(1, 1001, n)
        np.savez(train / f"train_data_batch_{k}.npz", data=data, labels=labels)
        batches.append((data, labels))
    np.savez(val / "val_data.npz", data=batches[0][0][:2], labels=np.array([1, 1000]))
    ds = dsmod.load_dataset("imagenet64", data_dir=tmp_path)
    assert ds.train_images.shape == (8, 3, 64, 64) and ds.num_classes == 1000
    data = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    assert ds.train_labels.tolist() == (labels - 1).tolist() and ds.test_labels.tolist() == [0, 999]
    i, c, y, x = 6, 2, 10, 33
    assert int(ds.train_images[i, c, y, x]) == int(data[i, c * side * side + y * side + x])
    assert ds.mean == (0.485, 0.456, 0.406)
    (val / "val_data.npz").unlink()
    dsmod.clear_cache()
    with pytest.raises(Exception, match="no val_data.npz"):
        dsmod.load_dataset("imagenet64", data_dir=tmp_path, download=False)


# -- what an adversarial try found (each a clear error or a documented rule) --------------------------------
def test_a_class_without_evaluation_images_is_refused(tmp_path):
    root = make_folder(tmp_path / "pets")
    for f in (root / "val" / "dog").iterdir():
        f.unlink()
    with pytest.raises(dsmod.DataNotFoundError, match=r"val: the class folder\(s\) dog hold no images"):
        dsmod.load_dataset(f"folder:{root}@16")


@pytest.mark.parametrize("size", ["abc", "-1", "8.5", "99999", "4"])
def test_a_size_that_is_not_a_size_says_so(tmp_path, size):
    root = make_folder(tmp_path / "pets")
    with pytest.raises(UsageError, match=f"@{size} is not a size; give a whole number of pixels from 8 to 1024"):
        dsmod.dataset_spec(f"folder:{root}@{size}")


def test_a_folder_whose_name_ends_in_at_digits_is_taken_whole(tmp_path):
    root = make_folder(tmp_path / "set@32")
    spec = dsmod.dataset_spec(f"folder:{root}")
    assert spec.root == root.resolve() and spec.image_size == dsmod.FOLDER_SIZE
    assert dsmod.dataset_spec(f"folder:{root}@16").image_size == 16


def test_sixteen_bit_images_are_scaled_not_clipped():
    ramp = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 257)  # 0..65535
    out = np.asarray(image_folders.to_rgb(Image.fromarray(ramp)))
    assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
    assert np.array_equal(out[..., 0], np.arange(256, dtype=np.uint8).reshape(16, 16))


def test_a_damaged_or_blocked_cache_is_decoded_again(tmp_path):
    root = make_folder(tmp_path / "pets")
    first = dsmod.load_dataset(f"folder:{root}@16")
    cache = root / ".clbench-cache" / "size16-v1.pt"
    cache.write_bytes(b"junk")
    dsmod.clear_cache()
    again = dsmod.load_dataset(f"folder:{root}@16")
    assert torch.equal(again.train_images, first.train_images)
    assert cache.stat().st_size > 100  # replaced by a good one
    cache.unlink()
    cache.mkdir()  # the cache's name taken by a folder: the user cache instead
    dsmod.clear_cache()
    assert torch.equal(dsmod.load_dataset(f"folder:{root}@16").train_images, first.train_images)
    assert list((tmp_path / "user-cache" / "clbench" / "folders").glob("*-size16-v1.pt"))


@pytest.mark.parametrize("kind,message", [
    ("truncated", "not an npz archive"),
    ("npy", "not an npz archive"),
    ("strings", "expected 4 integers 1..1000"),
    ("floats", "expected 4 integers 1..1000"),
    ("zero-based", "labels are 0..3 as stored; the release counts 1..1000"),
])
def test_a_malformed_imagenet64_file_is_named_with_what_is_wrong(tmp_path, kind, message):
    train, val = tmp_path / "Imagenet64_train_npz", tmp_path / "Imagenet64_val_npz"
    train.mkdir()
    val.mkdir()
    data = np.zeros((4, 3 * 64 * 64), dtype=np.uint8)
    np.savez(val / "val_data.npz", data=data, labels=np.array([1, 2, 3, 4]))
    batch = train / "train_data_batch_1.npz"
    labels = {"strings": np.array(["a"] * 4), "floats": np.array([1.5, 2, 3, 4]),
              "zero-based": np.array([0, 1, 2, 3])}.get(kind, np.array([1, 2, 3, 4]))
    np.savez(batch, data=data, labels=labels)
    if kind == "truncated":
        batch.write_bytes(batch.read_bytes()[:200])
    if kind == "npy":
        np.save(tmp_path / "x.npy", data)
        (tmp_path / "x.npy").replace(batch)
    with pytest.raises(dsmod.DataNotFoundError, match=message):
        dsmod.load_dataset("imagenet64", data_dir=tmp_path, download=False)


# -- class subsets ------------------------------------------------------------------------------------------
def test_a_class_subset_keeps_those_classes_renumbered_in_the_order_given(tmp_path):
    whole = dsmod.load_dataset("digits")
    part = dsmod.load_dataset("digits#7,2-3")
    assert part.class_names == ["7", "2", "3"] and part.num_classes == 3
    assert dsmod.dataset_spec("digits#7,2-3").num_classes == 3
    for new, old in enumerate((7, 2, 3)):
        assert torch.equal(part.train_images[part.train_labels == new], whole.train_images[whole.train_labels == old])
        assert torch.equal(part.test_images[part.test_labels == new], whole.test_images[whole.test_labels == old])
    assert part.mean == whole.mean and part.std == whole.std  # the whole dataset's normalisation
    root = make_folder(tmp_path / "pets")
    folder = dsmod.load_dataset(f"folder:{root}@16#1-2")
    assert folder.class_names == ["bee", "cat"]


@pytest.mark.parametrize("ids,message", [
    ("x", "is not a class list"), ("3-1", "runs backwards"), ("1,1", "class 1 is listed twice"),
    ("0,10", "class 10 does not exist; the dataset has classes 0..9"), ("4", "keep at least 2 classes"),
])
def test_a_bad_class_list_is_one_clear_error(ids, message):
    with pytest.raises(UsageError, match=message):
        dsmod.dataset_spec(f"digits#{ids}")


def test_a_run_on_a_subset_and_a_folder_whose_name_holds_a_hash(tmp_path):
    from clbench.protocol.config import RunConfig
    from clbench.protocol.continual import run

    path, record = run(RunConfig(condenser="random", dataset="digits#0-3", steps=2, orders=1, memory="2ipc",
                                 width=8, profile="quick", device="cpu", train={"epochs": 1}, out=str(tmp_path)))
    assert record["complete"] and sorted(record["orders"][0]["class_order"]) == [0, 1, 2, 3]
    assert path.name.startswith("digits-0-3-random-")
    root = make_folder(tmp_path / "set#1")
    assert dsmod.load_dataset(f"folder:{root}@16").class_names == CLASSES
