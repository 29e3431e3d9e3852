"""What a dataset is in clbench: `ImageDataset` (a whole dataset in memory as uint8 tensors), `RealData` (its tensors
as a run uses them: uint8 where they fit, normalised where a step uses them) and `DatasetSpec` (everything known
about one dataset before loading it: shape, classes, normalisation, files, where to get them). clbench.data.datasets
registers and loads them; plugins import these names from there.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from clbench.core.errors import UsageError
from clbench.data.image_folders import ImageFolderLayout
from clbench.data.readers import CifarLayout, DownsampledImageNetLayout, IdxLayout, TinyImageNetLayout


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
        """Float32 images (x/255 - mean)/std and labels of a whole split, both on `device`."""
        images, labels = self._split(split)
        return normalise(images, self.mean, self.std, device), labels.to(device)

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
        """The dataset as a run uses it: uint8 images where `storage_for` puts them, labels on `device`, and
        the normalisation that RealData applies to the images a step or a minibatch takes. What a run's process
        loads once and every order it runs shares (on the CPU, the very tensors of this dataset: no copy)."""
        store = storage_for(self, device)
        return RealData(self.train_images.to(store), self.train_labels.to(device), self.test_images.to(store),
                        self.test_labels.to(device), self.num_classes, self.mean, self.std, torch.device(device))


def normalise(pixels: Tensor, mean: tuple[float, ...], std: tuple[float, ...],
              device: torch.device | str) -> Tensor:
    """uint8 images (N, C, H, W) as float32 (x/255 - mean)/std on `device`. The uint8 tensor is moved first and
    converted there (a quarter of the bytes to move); every pixel is computed on its own, so normalising a
    subset gives exactly the values of the whole split normalised and then indexed."""
    x = pixels.to(device).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return x.sub_(mean_t).div_(std_t)


# Of a GPU's free memory, the share the uint8 real images may take; the rest is for networks, memories and the
# float32 images of one step. Beyond it they stay on the host (the very tensors of the dataset: no second copy)
# and each use copies its rows over. (Pinning them would copy them all once more and gain nothing: the rows a
# use gathers are a new, pageable tensor either way.)
DEVICE_SHARE = 0.5


def storage_for(dataset: ImageDataset, device: torch.device | str) -> torch.device:
    """Where a run keeps the dataset's uint8 images: on `device` when it is the CPU or they take at most
    DEVICE_SHARE of its free memory, else on the host."""
    device = torch.device(device)
    if device.type != "cuda":
        return device
    free, _ = torch.cuda.mem_get_info(device)
    needed = dataset.train_images.numel() + dataset.test_images.numel()
    return device if needed <= DEVICE_SHARE * free else torch.device("cpu")


def storage_facts(dataset: ImageDataset, device: torch.device | str, data: RealData | None = None) -> dict[str, object]:
    """What a record says of how a run holds the real images (environment.real_data): where `data` keeps them,
    or, before the process that holds them has them, the rule it follows (asking a GPU for its free memory
    here would give this process a CUDA context of its own)."""
    device = torch.device(device)
    if data is not None:
        kept = "host" if data.train_pixels.device.type == "cpu" and device.type == "cuda" else str(device)
    elif device.type == "cuda":
        kept = f"{device} if they take at most {DEVICE_SHARE:.0%} of its free memory, else the host"
    else:
        kept = str(device)
    return {"images": "uint8", "kept_on": kept,
            "bytes": int(dataset.train_images.numel() + dataset.test_images.numel()),
            "normalised": "where used: a step's classes, a minibatch's rows"}


@dataclass
class RealData:
    """A dataset's tensors as a run uses them (`ImageDataset.resident`): the images as stored (uint8) where
    they are kept, the labels on the run's device, and the normalisation applied where images are used: a
    step's classes (`train`, `test`, `of_classes`), a minibatch's rows. Without `mean`/`std` the images are
    float32 already normalised (the older form, still accepted), and used as they are."""

    train_pixels: Tensor  # (N, C, H, W): uint8 as stored, or float32 normalised when mean/std are None
    train_labels: Tensor
    test_pixels: Tensor
    test_labels: Tensor
    num_classes: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    device: torch.device | None = None  # where normalised images go (None: where the labels are)

    def __post_init__(self) -> None:
        if self.device is None:
            self.device = self.train_labels.device
        if (self.mean is None) != (self.train_pixels.dtype != torch.uint8):
            raise ValueError("RealData: uint8 images need the dataset's mean and std; float images are taken as "
                             "normalised already and need neither")

    def images(self, split: str, rows: Tensor | None = None) -> Tensor:
        """The normalised float32 images of `split` ("train" or "test") at `rows` (all when None), on the run's
        device."""
        pixels = {"train": self.train_pixels, "test": self.test_pixels}[split]
        if rows is not None:
            pixels = pixels[rows.to(pixels.device)]
        if self.mean is None:
            return pixels.to(self.device)
        return normalise(pixels, self.mean, self.std, self.device)

    def train(self, rows: Tensor | None = None) -> Tensor:
        return self.images("train", rows)

    def test(self, rows: Tensor | None = None) -> Tensor:
        return self.images("test", rows)

    def of_classes(self, split: str, classes: list[int]) -> tuple[Tensor, Tensor]:
        """The normalised images and the labels of `classes` in `split`, in the dataset's order."""
        labels = self.train_labels if split == "train" else self.test_labels
        rows = torch.isin(labels, torch.tensor(classes, device=labels.device)).nonzero().flatten()
        return self.images(split, rows), labels[rows]

    # the older names: the whole split, normalised (a float32 copy of all of it; clbench itself never asks)
    @property
    def train_images(self) -> Tensor:
        return self.train()

    @property
    def test_images(self) -> Tensor:
        return self.test()


Layout = IdxLayout | CifarLayout | TinyImageNetLayout | ImageFolderLayout | DownsampledImageNetLayout


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
    root: Path | None = None  # a `folder:` dataset's own folder: the only place looked at

    def __post_init__(self) -> None:
        if (self.mean is None) != (self.std is None):
            raise ValueError(f"dataset {self.name}: give both mean and std, or neither")
        if self.mean is not None and not len(self.mean) == len(self.std) == self.channels:
            raise ValueError(f"dataset {self.name}: mean/std need {self.channels} values, got {self.mean} / {self.std}")
        if (self.layout is None) == (self.bundled is None):
            raise ValueError(f"dataset {self.name}: give either a layout (files) or a bundled loader")
