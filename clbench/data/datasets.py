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
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from clbench.core.errors import DataNotFoundError, UsageError
from clbench.core.registry import Registry
from clbench.data.readers import CifarLayout, IdxLayout, Reader, TinyImageNetLayout

# Where Debian's dataset packages put their files (`apt-get install dataset-fashion-mnist`).
SYSTEM_DATA_ROOT = Path("/usr/share/datasets")

ENV_VAR = "CLBENCH_DATA"


@dataclass(frozen=True, eq=False, repr=False)
class ImageDataset:
    """A whole dataset in memory: uint8 images (N, C, H, W) on the CPU and int64 labels."""

    name: str
    class_names: list[str]
    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images, labels = self._split(split)
            if images.dtype != torch.uint8 or images.dim() != 4:
                raise ValueError(f"{self.name} {split} images must be uint8 (N, C, H, W), "
                                 f"got {images.dtype} {tuple(images.shape)}")
            if labels.dtype != torch.long or labels.shape != images.shape[:1]:
                raise ValueError(f"{self.name} {split} labels must be int64 of shape ({images.shape[0]},), "
                                 f"got {labels.dtype} {tuple(labels.shape)}")
            if labels.numel() and not (0 <= int(labels.min()) and int(labels.max()) < len(self.class_names)):
                raise ValueError(f"{self.name} {split} labels fall outside 0..{len(self.class_names) - 1}")
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ValueError(f"{self.name}: train images {tuple(self.train_images.shape[1:])} and test images "
                             f"{tuple(self.test_images.shape[1:])} differ in shape")
        if not len(self.mean) == len(self.std) == self.channels:
            raise ValueError(f"{self.name}: mean/std need {self.channels} values, got {self.mean} / {self.std}")

    def __repr__(self) -> str:
        return (f"ImageDataset({self.name!r}, classes={self.num_classes}, train={len(self.train_labels)}, "
                f"test={len(self.test_labels)}, shape={tuple(self.train_images.shape[1:])}, "
                f"source={self.source!r})")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[2])

    def _split(self, split: str) -> tuple[Tensor, Tensor]:
        if split == "train":
            return self.train_images, self.train_labels
        if split == "test":
            return self.test_images, self.test_labels
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")

    def normalised(self, split: str, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """Float32 images (x/255 - mean)/std and labels, both on `device`.

        The uint8 tensor is moved first and converted there: a quarter of the bytes to transfer.
        """
        images, labels = self._split(split)
        x = images.to(device).float().div_(255.0)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        return x.sub_(mean).div_(std), labels.to(device)

    def denormalise(self, x: Tensor) -> Tensor:
        """Normalised images (…, C, H, W) back to [0, 1] pixels for pictures."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x * std + mean).clamp_(0.0, 1.0)

    def class_counts(self, split: str) -> Tensor:
        """Number of images of each class in the split (length num_classes)."""
        _, labels = self._split(split)
        return torch.bincount(labels, minlength=self.num_classes)

    def smallest_class(self) -> int:
        """Training images of the dataset's smallest class; a class with none is one UsageError naming it (a run
        trains and condenses every class, so incomplete files are refused before any work)."""
        counts = self.class_counts("train").tolist()
        empty = [c for c, n in enumerate(counts) if n == 0]
        if empty:
            names = ", ".join(f"{c} ({self.class_names[c]})" for c in empty[:5]) + (" ..." if len(empty) > 5 else "")
            raise UsageError(f"{self.name} from {self.source}: no training images of class {names} (of "
                             f"{self.num_classes}); the files are incomplete or not {self.name}'s")
        return min(counts)

    def resident(self, device: torch.device | str = "cpu") -> RealData:
        """Both splits normalised on `device`: what a run's process loads once and every order it runs shares."""
        train_x, train_y = self.normalised("train", device)
        test_x, test_y = self.normalised("test", device)
        return RealData(train_x, train_y, test_x, test_y, self.num_classes)


@dataclass
class RealData:
    """A dataset's tensors, normalised and resident on the run's device (`ImageDataset.resident`)."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    num_classes: int




Layout = IdxLayout | CifarLayout | TinyImageNetLayout


@dataclass(frozen=True)
class DatasetSpec:
    """Everything clbench knows about one dataset: its shape, normalisation, files and where to get them.

    A dataset either lies in a folder in `layout` (looked for in the places `load_dataset` tries, downloaded
    by the torchvision class named in `torchvision` where there is one) or ships with a Python package and is
    loaded by `bundled`.
    """

    name: str
    channels: int
    image_size: int  # height = width in pixels: checks that depend on it run before any dataset is loaded
    num_classes: int  # of the real dataset (a partial copy may hold fewer)
    # Channel mean and std of the pixels in [0, 1]: the constants the dataset-condensation literature uses, so
    # that synthetic images are comparable; None: measured on the training split when loading (digits).
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    how_to_get: str  # what the not-found error tells the user to do ("DIR": the folder to pass)
    layout: Layout | None = None
    torchvision: str | None = None  # the torchvision.datasets class that downloads it
    bundled: Callable[[], ImageDataset] | None = None

    def __post_init__(self) -> None:
        if (self.mean is None) != (self.std is None):
            raise ValueError(f"dataset {self.name}: give both mean and std, or neither")
        if self.mean is not None and not len(self.mean) == len(self.std) == self.channels:
            raise ValueError(f"dataset {self.name}: mean/std need {self.channels} values, got {self.mean} / {self.std}")
        if (self.layout is None) == (self.bundled is None):
            raise ValueError(f"dataset {self.name}: give either a layout (files) or a bundled loader")


def _normalise_name(name: str) -> str:
    return name.strip().lower().replace("_", "-")


DATASETS: Registry[DatasetSpec] = Registry("dataset", paths=False, normalise=_normalise_name)

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
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS.names())


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

    spec = DATASETS.get(name)
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
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "clbench" / "data"


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
        classes, (train_x, train_y, test_x, test_y) = reader()
        if tuple(train_x.shape[-2:]) != (spec.image_size, spec.image_size):
            raise UsageError(f"{folder} ({origin}): {spec.name} images are {spec.image_size}x{spec.image_size} px, "
                            f"these are {train_x.shape[-2]}x{train_x.shape[-1]}; point --data-dir at the original "
                            f"dataset")
        for split, labels in (("train", train_y), ("test", test_y)):
            lo, hi = (int(labels.min()), int(labels.max())) if labels.numel() else (0, 0)
            if lo < 0 or hi >= len(classes):  # readers check the format; the labels' range is the dataset's
                raise UsageError(f"{folder} ({origin}): the {split} labels are {lo}..{hi}, but {spec.name} has "
                                 f"classes 0..{len(classes) - 1}; the files are damaged or not {spec.name}'s")
        _CACHE[key] = ImageDataset(spec.name, classes, train_x, train_y, test_x, test_y, spec.mean, spec.std,
                                   f"{folder} ({origin})")
    return _CACHE[key]


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = True) -> ImageDataset:
    """Load a whole dataset, looking in `data_dir` (or $CLBENCH_DATA), the system copy, then downloading.

    Repeated calls in one process return the same object (the files are read once).
    """
    spec = DATASETS.get(name)
    given, given_origin = _given_root(data_dir)
    if spec.bundled is not None:
        return spec.bundled()

    places: list[tuple[Path, str]] = []
    if given is not None:
        places.append((given, f"data folder from {given_origin}"))
    places.append((SYSTEM_DATA_ROOT / spec.name, "system copy"))
    download_root = given if given is not None else default_download_root()
    if given is None:
        places.append((download_root, "download cache"))

    looked: list[str] = []
    for root, origin in places:
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
