"""The datasets clbench knows (`DATASETS`: one `DatasetSpec` per name, everything about it in one entry), and
`load_dataset`, which finds one and returns it whole as uint8 tensors (`ImageDataset`).

A run touches every image many times, so a dataset is read once into memory (uint8, N x C x H x W) and
normalised on the device in one step; no DataLoader and no per-sample Python afterwards. Finding the data
follows one order (an explicit folder, the system copy, torchvision's download) and, when all of it fails,
says in one message every place it looked and how to get the data, instead of a network traceback. The file
formats and folder layouts themselves are read by `clbench.data.readers`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from clbench.core.errors import DataNotFoundError, UsageError
from clbench.core.registry import Registry
from clbench.data.image_folders import ImageFolderLayout, lacks
from clbench.data.image_folders import class_folders as _class_folders
from clbench.data.readers import (
    CifarLayout,
    DownsampledImageNetLayout,
    IdxLayout,
    Reader,
    TinyImageNetLayout,
    user_cache_dir,
)
from clbench.data.subsets import SUBSET_MARK, parse_ids, split_subset, subset
from clbench.data.types import DatasetSpec, ImageDataset, Layout, RealData

__all__ = ["DATASETS", "DatasetSpec", "ImageDataset", "Layout", "RealData", "dataset_spec", "load_dataset"]

# Where Debian's dataset packages put their files (`apt-get install dataset-fashion-mnist`).
SYSTEM_DATA_ROOT = Path("/usr/share/datasets")

ENV_VAR = "CLBENCH_DATA"


def _normalise_name(name: str) -> str:
    return name.strip().lower().replace("_", "-")


# Plugins register under the entry-point group `clbench.datasets`: a DatasetSpec, or a function returning an
# ImageDataset (called once per process, when the dataset is first asked for).
DATASETS: Registry[DatasetSpec] = Registry("dataset", "clbench.datasets", paths=False, normalise=_normalise_name)

_CACHE: dict[tuple[str, str], ImageDataset] = {}


def clear_cache() -> None:
    """Forget the datasets loaded in this process (tests; or to free memory)."""
    _CACHE.clear()


_FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_DIGIT_CLASSES = tuple(str(i) for i in range(10))


def _load_digits() -> ImageDataset:
    """scikit-learn's bundled 8x8 digits with a fixed stratified split: a real dataset that loads instantly."""
    key = ("digits", "sklearn")
    if key in _CACHE:
        return _CACHE[key]
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    pixels = np.rint(bunch.data * (255.0 / 16.0)).astype(np.uint8).reshape(-1, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        pixels, labels, test_size=0.2, random_state=0, stratify=labels)
    train = torch.from_numpy(np.ascontiguousarray(train_x))
    as_float = train.double() / 255.0
    mean = tuple(as_float.mean(dim=(0, 2, 3)).tolist())
    std = tuple(as_float.std(dim=(0, 2, 3), unbiased=False).tolist())
    ds = ImageDataset("digits", list(_DIGIT_CLASSES), train, torch.from_numpy(train_y),
                      torch.from_numpy(np.ascontiguousarray(test_x)), torch.from_numpy(test_y),
                      mean, std, "scikit-learn load_digits (bundled)")
    _CACHE[key] = ds
    return ds


def _torchvision_hint(cls: str) -> str:
    return (f"on a machine with internet run "
            f"`python -c \"import torchvision; torchvision.datasets.{cls}('DIR', download=True)\"`")


def _add(spec: DatasetSpec) -> None:
    DATASETS.add(spec.name, spec)


_add(DatasetSpec(
    "fashion-mnist", channels=1, image_size=28, num_classes=10, mean=(0.2861,), std=(0.3530,),
    how_to_get="apt-get install dataset-fashion-mnist, or " + _torchvision_hint("FashionMNIST"),
    layout=IdxLayout("FashionMNIST", _FASHION_CLASSES), torchvision="FashionMNIST"))
_add(DatasetSpec(
    "mnist", channels=1, image_size=28, num_classes=10, mean=(0.1307,), std=(0.3081,),
    how_to_get=_torchvision_hint("MNIST"), layout=IdxLayout("MNIST", _DIGIT_CLASSES), torchvision="MNIST"))
_add(DatasetSpec(
    "cifar10", channels=3, image_size=32, num_classes=10,
    mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010),
    how_to_get=_torchvision_hint("CIFAR10"), torchvision="CIFAR10",
    layout=CifarLayout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                       "batches.meta", "labels", "label_names")))
_add(DatasetSpec(
    "cifar100", channels=3, image_size=32, num_classes=100,
    mean=(0.5071, 0.4866, 0.4409), std=(0.2673, 0.2564, 0.2762),
    how_to_get=_torchvision_hint("CIFAR100"), torchvision="CIFAR100",
    layout=CifarLayout("cifar-100-python", ("train",), ("test",), "meta", "fine_labels", "fine_label_names")))
_add(DatasetSpec(
    "tinyimagenet", channels=3, image_size=64, num_classes=200,
    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
    how_to_get="download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it into DIR "
    "(torchvision has no downloader for it)", layout=TinyImageNetLayout()))
_add(DatasetSpec(
    "digits", channels=1, image_size=8, num_classes=10, mean=None, std=None,
    how_to_get="it ships with scikit-learn: pip install scikit-learn", bundled=_load_digits))
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
for _name, _folders, _url in (
        ("imagenette", ("imagenette2", "imagenette2-320", "imagenette"), "imagenette2.tgz"),
        ("imagewoof", ("imagewoof2", "imagewoof2-320", "imagewoof"), "imagewoof2.tgz")):
    _add(DatasetSpec(
        _name, channels=3, image_size=128, num_classes=10, mean=_IMAGENET_MEAN, std=_IMAGENET_STD,
        how_to_get=f"download https://s3.amazonaws.com/fast-ai-imageclas/{_url} and unpack it into DIR "
        f"(train/ and val/ of class folders; resized and centre-cropped to 128 px, decoded once and cached)",
        layout=ImageFolderLayout(_folders, 128)))
_add(DatasetSpec(
    "imagenet64", channels=3, image_size=64, num_classes=1000, mean=_IMAGENET_MEAN, std=_IMAGENET_STD,
    how_to_get="download Imagenet64_train_npz.zip and Imagenet64_val_npz.zip from https://image-net.org "
    "(Downsampled ImageNet 64x64; an ImageNet account is needed) and unzip both into DIR; the whole training "
    "set is read into memory (15.7 GB as uint8)", layout=DownsampledImageNetLayout()))
DATASET_NAMES: tuple[str, ...] = tuple(n for n in DATASETS.names() if DATASETS.entry(n).origin == "built-in")
FOLDER_PREFIX = "folder:"
FOLDER_SIZE = 128  # px of a `folder:PATH` dataset without @SIZE: the reference code's size for image folders
FOLDER_MAX_SIZE = 1024  # px: beyond it a dataset is no longer held in memory whole (every run does that)
_PLUGIN_SPECS: dict[str, DatasetSpec] = {}


def _split_size(text: str) -> tuple[str, str | None]:
    """`PATH[@SIZE]` -> (PATH, the SIZE text or None); a folder whose own name holds an '@' is taken whole
    when it exists."""
    if "@" in text and not Path(text).expanduser().is_dir():
        path, _, size = text.rpartition("@")
        return path, size
    return text, None


def _subset_of(name: str) -> tuple[str, str | None]:
    """(the whole dataset's name, the class list) of `NAME#IDS`; (name, None) for a whole dataset, also for an
    image folder whose own name holds a '#'."""
    base, ids = split_subset(name)
    if ids is not None and name.startswith(FOLDER_PREFIX):
        folder, size = _split_size(name[len(FOLDER_PREFIX):])
        if folder and (size is None or size.isdigit()) and Path(folder).expanduser().is_dir():
            return name, None  # the '#' is part of the folder's own name
    return base, ids


def dataset_spec(name: str, where: str = "--dataset") -> DatasetSpec:
    """The DatasetSpec a user's name asks for: a registered name (built-in or a plugin's), `folder:PATH[@SIZE]`
    for an image folder, either with `#IDS` for a class subset (clbench.data.subsets). Every check that needs
    only the spec (shape, classes) can run before any data is read."""
    base, ids = _subset_of(name)
    if ids is not None:
        whole = dataset_spec(base, where)
        kept = parse_ids(ids, whole.num_classes, where, name)
        return dataclasses.replace(whole, name=f"{whole.name}{SUBSET_MARK}{ids}", num_classes=len(kept))
    if name.startswith(FOLDER_PREFIX):
        return folder_spec(name[len(FOLDER_PREFIX):], where)
    entry = DATASETS.entry(name, where)
    target = entry.load()
    if isinstance(target, DatasetSpec):
        return target
    if entry.name not in _PLUGIN_SPECS:
        if not callable(target):
            raise UsageError(f"{where} {name}: the dataset plugin {entry.origin} gives {type(target).__name__}, "
                             f"not a DatasetSpec or a function returning an ImageDataset")
        ds = target()
        if not isinstance(ds, ImageDataset):
            raise UsageError(f"{where} {name}: the dataset plugin {entry.origin} returned {type(ds).__name__}, "
                             f"not an ImageDataset (clbench.data.datasets.ImageDataset)")
        _PLUGIN_SPECS[entry.name] = DatasetSpec(
            entry.name, ds.channels, ds.image_size, ds.num_classes, ds.mean, ds.std,
            how_to_get=f"it comes from the plugin {entry.origin}", bundled=lambda: ds)
    return _PLUGIN_SPECS[entry.name]


def folder_spec(text: str, where: str = "--dataset") -> DatasetSpec:
    """`PATH[@SIZE]` -> the spec of that image folder at SIZE px (FOLDER_SIZE by default); its problems are one
    UsageError naming the folder. A folder whose own name ends in @digits is taken whole when it exists."""
    path, size_text = _split_size(text)
    size = FOLDER_SIZE
    if size_text is not None:
        if not size_text.isdigit() or not 8 <= int(size_text) <= FOLDER_MAX_SIZE:
            raise UsageError(f"{where} {FOLDER_PREFIX}{text}: @{size_text} is not a size; give a whole number of "
                             f"pixels from 8 to {FOLDER_MAX_SIZE} (e.g. @64)")
        size = int(size_text)
    if not path.strip():
        raise UsageError(f"{where} folder:PATH[@SIZE]: give the folder (it holds train/ and val/ or test/)")
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise UsageError(f"{where} {FOLDER_PREFIX}{text}: {folder} is not a folder")
    problem = lacks(folder)
    if problem:
        raise UsageError(f"{where} {FOLDER_PREFIX}{text}: {problem}")
    return DatasetSpec(
        f"{FOLDER_PREFIX}{folder}@{size}", channels=3, image_size=size,
        num_classes=len(_class_folders(folder / "train")), mean=None, std=None,
        how_to_get=f"the image folder {folder}", layout=ImageFolderLayout((), size), root=folder)


# ---------------------------------------------------------------------------------------------------------
# Finding the data: a candidate root either holds the dataset's layout (a folder and its reader) or says what
# it lacks; the in-process cache is keyed by that folder, so a second load reads nothing.

def _find_in(spec: DatasetSpec, root: Path) -> tuple[Path, Reader] | str:
    """(the folder holding the dataset under `root` in its layout, its reader), else what was missing."""
    if not root.is_dir():
        return "does not exist"
    for base in (root, root / spec.name):
        if base.is_dir() and (found := spec.layout.find(base)) is not None:
            return found
    return spec.layout.expected(spec.name)


def _torchvision_download(name: str, root: Path) -> None:
    """Fetch `name` with torchvision into `root` (its own layout). Tests replace this to stay offline."""
    import torchvision.datasets as tvd

    spec = dataset_spec(name)
    if spec.torchvision is None:
        raise RuntimeError("torchvision cannot download this dataset")
    root.mkdir(parents=True, exist_ok=True)
    # torchvision prints each failed mirror to stdout; the failure is reported in our one message instead
    # (its progress bars go to stderr and stay visible).
    with contextlib.redirect_stdout(io.StringIO()):
        for train in (True, False):
            getattr(tvd, spec.torchvision)(root=str(root), train=train, download=True)


def default_download_root() -> Path:
    """~/.cache/clbench/data (or under $XDG_CACHE_HOME): where downloads go when no data folder is given."""
    return user_cache_dir() / "data"


def _given_root(data_dir: str | Path | None) -> tuple[Path | None, str]:
    if data_dir is not None:
        root, origin = Path(data_dir).expanduser(), "--data-dir"
    elif os.environ.get(ENV_VAR):
        root, origin = Path(os.environ[ENV_VAR]).expanduser(), f"${ENV_VAR}"
    else:
        return None, ""
    if not root.is_dir():
        raise UsageError(f"data folder {root} (from {origin}) does not exist"
                         + ("" if not root.exists() else " as a folder"))
    return root, origin


def _build(spec: DatasetSpec, folder: Path, reader: Reader, origin: str) -> ImageDataset:
    key = (spec.name, str(folder.resolve()))
    if key not in _CACHE:
        classes, (train_x, train_y, test_x, test_y), *more = reader()  # image folders add their statistics
        if tuple(train_x.shape[-2:]) != (spec.image_size, spec.image_size):
            raise UsageError(f"{folder} ({origin}): {spec.name} images are {spec.image_size}x{spec.image_size} px, "
                            f"these are {train_x.shape[-2]}x{train_x.shape[-1]}; point --data-dir at the original "
                            f"dataset")
        for split, labels in (("train", train_y), ("test", test_y)):
            lo, hi = (int(labels.min()), int(labels.max())) if labels.numel() else (0, 0)
            if lo < 0 or hi >= len(classes):  # readers check the format; the labels' range is the dataset's
                raise UsageError(f"{folder} ({origin}): the {split} labels are {lo}..{hi}, but {spec.name} has "
                                 f"classes 0..{len(classes) - 1}; the files are damaged or not {spec.name}'s")
        mean, std = spec.mean, spec.std
        if mean is None:  # measured on the training split (image folders cache theirs)
            stats = more[0] if more else channel_statistics(train_x)
            mean, std = tuple(stats["mean"]), tuple(stats["std"])
        _CACHE[key] = ImageDataset(spec.name, classes, train_x, train_y, test_x, test_y, mean, std,
                                   f"{folder} ({origin})")
    return _CACHE[key]


def channel_statistics(images: Tensor) -> dict[str, list[float]]:
    """Channel mean and population std of uint8 images in [0, 1], one channel at a time (no float copy of all)."""
    mean, std = [], []
    for c in range(images.shape[1]):
        x = images[:, c].double().div_(255.0)
        mean.append(float(x.mean()))
        std.append(float(x.std(unbiased=False)))
    return {"mean": mean, "std": std}


def _places(spec: DatasetSpec, given: Path | None, given_origin: str) -> list[tuple[Path, str]]:
    """Where a dataset with files is looked for, in order: the given folder, the system copy, the download cache."""
    if given is not None:
        return [(given, f"data folder from {given_origin}"), (SYSTEM_DATA_ROOT / spec.name, "system copy")]
    return [(SYSTEM_DATA_ROOT / spec.name, "system copy"), (default_download_root(), "download cache")]


def locate(name: str, data_dir: str | Path | None = None) -> tuple[str | None, str]:
    """(where the dataset's files are, None if nowhere, how it is had or what to do), reading no images."""
    spec = dataset_spec(name)
    if spec.bundled is not None:
        return "bundled", spec.how_to_get
    if spec.root is not None:
        return str(spec.root), spec.how_to_get
    given, given_origin = _given_root(data_dir)
    for root, origin in _places(spec, given, given_origin):
        found = _find_in(spec, root)
        if not isinstance(found, str):
            return f"{found[0]} ({origin})", spec.how_to_get
    return None, spec.how_to_get


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = True) -> ImageDataset:
    """Load a whole dataset, looking in `data_dir` (or $CLBENCH_DATA), the system copy, then downloading
    (a `folder:` dataset only in its own folder).

    Repeated calls in one process return the same object (the files are read once). `NAME#IDS` is a class
    subset of NAME (clbench.data.subsets).
    """
    spec = dataset_spec(name)
    base, ids = _subset_of(name)
    if ids is not None:
        key = (spec.name, str(data_dir))
        if key not in _CACHE:
            cached = set(_CACHE)
            whole = load_dataset(base, data_dir, download)
            _CACHE[key] = subset(whole, parse_ids(ids, whole.num_classes, "--dataset", name), spec.name, ids)
            for loaded in set(_CACHE) - cached - {key}:  # the whole dataset, read for this subset only: let it go
                del _CACHE[loaded]
        return _CACHE[key]
    given, given_origin = _given_root(data_dir)
    if spec.bundled is not None:
        return spec.bundled()
    if spec.root is not None:
        found = spec.layout.find(spec.root)
        if found is None or isinstance(found, str):
            raise UsageError(f"{spec.name}: {found or spec.layout.expected(spec.name)}")
        return _build(spec, *found, "image folder")

    download_root = given if given is not None else default_download_root()
    looked: list[str] = []
    for root, origin in _places(spec, given, given_origin):
        found = _find_in(spec, root)
        if not isinstance(found, str):
            return _build(spec, *found, origin)
        looked.append(f"{root} ({origin}): {found}")

    if not download:
        looked.append("download: not attempted (download disabled)")
    elif spec.torchvision is None:
        looked.append(f"download: torchvision has no downloader for {spec.name}")
    else:
        try:
            _torchvision_download(spec.name, download_root)
        except Exception as exc:  # offline: URLError, RuntimeError from torchvision's mirror loop, ...
            why = " ".join(str(exc).split())  # torchvision's messages span lines: keep them on one
            why = why if len(why) <= 300 else why[:297] + "..."
            looked.append(f"download with torchvision into {download_root}: failed ({type(exc).__name__}: {why})")
        else:
            found = _find_in(spec, download_root)
            if not isinstance(found, str):
                return _build(spec, *found, "downloaded by torchvision")
            looked.append(f"download with torchvision into {download_root}: finished but {found}")

    raise DataNotFoundError(
        f"dataset {spec.name} not found. Looked at:\n"
        + "".join(f"  - {line}\n" for line in looked)
        + f"To get it: {spec.how_to_get}, then pass --data-dir DIR or set {ENV_VAR}=DIR."
    )
