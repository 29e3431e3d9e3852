"""Whole image datasets as uint8 tensors, found on disk, in the system copy, or downloaded once.

A run touches every image many times, so a dataset is read once into memory (uint8, N x C x H x W) and
normalised on the device in one step; no DataLoader and no per-sample Python afterwards. Finding the data
follows one order (an explicit folder, the system copy, torchvision's download) and, when all of it fails,
says in one message every place it looked and how to get the data, instead of a network traceback.
"""
from __future__ import annotations

import contextlib
import difflib
import gzip
import io
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from clbench.core.errors import DataNotFoundError, UsageError

DATASET_NAMES = ("fashion-mnist", "mnist", "cifar10", "cifar100", "tinyimagenet", "digits")

# Where Debian's dataset packages put their files (`apt-get install dataset-fashion-mnist`).
SYSTEM_DATA_ROOT = Path("/usr/share/datasets")

ENV_VAR = "CLBENCH_DATA"

# The normalisation constants the dataset-condensation literature uses, so synthetic images are comparable.
_MEAN_STD: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2861,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)),
    "tinyimagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

_FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
_DIGIT_CLASSES = [str(i) for i in range(10)]

# torchvision's folder for the idx datasets (`<root>/<folder>/raw/...`).
_IDX_FOLDERS = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}
_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
_TINY_FOLDER = "tiny-imagenet-200"
_TINY_CACHE = "clbench-uint8-v1.pt"

_HOW_TO_GET = {
    "fashion-mnist": "apt-get install dataset-fashion-mnist, or on a machine with internet run "
    "`python -c \"import torchvision; torchvision.datasets.FashionMNIST('DIR', download=True)\"`",
    "mnist": "on a machine with internet run "
    "`python -c \"import torchvision; torchvision.datasets.MNIST('DIR', download=True)\"`",
    "cifar10": "on a machine with internet run "
    "`python -c \"import torchvision; torchvision.datasets.CIFAR10('DIR', download=True)\"`",
    "cifar100": "on a machine with internet run "
    "`python -c \"import torchvision; torchvision.datasets.CIFAR100('DIR', download=True)\"`",
    "tinyimagenet": "download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it into DIR "
    "(torchvision has no downloader for it)",
}


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


# ---------------------------------------------------------------------------------------------------------
# Readers for the file formats. Each takes a folder known to hold the layout and returns the tensors;
# a file that is there but cannot be read is an error naming it (not "not found": that would send the
# user to download what they already have).

_Split = tuple[Tensor, Tensor, Tensor, Tensor]  # train_images, train_labels, test_images, test_labels


def _damaged(path: Path, why: str) -> DataNotFoundError:
    return DataNotFoundError(f"{path} is damaged or not in the expected format ({why}); "
                             f"delete it and fetch the dataset again")


def read_idx(path: Path) -> np.ndarray:
    """An idx file (MNIST's format, gzip or plain) as a uint8 array, checking the magic number and sizes."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as exc:  # BadGzipFile is an OSError
        raise _damaged(path, f"{type(exc).__name__}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise _damaged(path, f"bad magic number {raw[:4].hex() or 'empty file'}")
    if raw[2] != 0x08:
        raise _damaged(path, f"element type 0x{raw[2]:02x}, expected unsigned bytes (0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise _damaged(path, f"truncated header for {ndim} dimensions")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise _damaged(path, f"header says {dims} = {expected} bytes, file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _idx_files(folder: Path) -> dict[str, Path] | None:
    """The four idx files in `folder` (plain preferred over .gz: no decompression), or None if any is missing."""
    found = {}
    for key, stem in _IDX_FILES.items():
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def _read_idx_split(files: dict[str, Path]) -> _Split:
    out = []
    for split in ("train", "test"):
        images = read_idx(files[f"{split}_images"])
        labels = read_idx(files[f"{split}_labels"])
        if images.ndim != 3:
            raise _damaged(files[f"{split}_images"], f"expected 3 dimensions (N, H, W), got {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise _damaged(files[f"{split}_labels"],
                           f"expected {len(images)} labels to match the images, got shape {labels.shape}")
        out += [torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))]
    return out[0], out[1], out[2], out[3]


def _unpickle(path: Path) -> dict:
    """A CIFAR pickle as a dict with str keys (the files are Python 2 pickles; test fakes may use bytes keys)."""
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
    except Exception as exc:  # any unpickling failure means the file is unusable
        raise _damaged(path, f"{type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise _damaged(path, f"expected a dict, got {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _field(batch: dict, key: str, path: Path):
    if key not in batch:
        raise _damaged(path, f"no {key!r} entry (has {sorted(batch)})")
    return batch[key]


def _cifar_arrays(paths: list[Path], label_key: str) -> tuple[Tensor, Tensor]:
    images, labels = [], []
    for path in paths:
        batch = _unpickle(path)
        data = np.asarray(_field(batch, "data", path), dtype=np.uint8)
        lab = np.asarray(_field(batch, label_key, path), dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(lab) != len(data):
            raise _damaged(path, f"data {data.shape} and {len(lab)} labels, expected (N, 3072) and N labels")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def _names(meta_path: Path, key: str) -> list[str]:
    names = _field(_unpickle(meta_path), key, meta_path)
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


_CIFAR_FILES = {
    "cifar10": ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta", "labels", "label_names"),
    "cifar100": (["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}


def _read_cifar(name: str, folder: Path) -> tuple[list[str], _Split]:
    train_files, test_files, meta, label_key, names_key = _CIFAR_FILES[name]
    train_x, train_y = _cifar_arrays([folder / f for f in train_files], label_key)
    test_x, test_y = _cifar_arrays([folder / f for f in test_files], label_key)
    return _names(folder / meta, names_key), (train_x, train_y, test_x, test_y)


def _tiny_classes(folder: Path) -> tuple[list[str], list[str]]:
    """(wnids sorted, as ImageFolder orders them in the reference code; readable names from words.txt)."""
    wnids = sorted(line.strip() for line in (folder / "wnids.txt").read_text().splitlines() if line.strip())
    words: dict[str, str] = {}
    if (folder / "words.txt").is_file():
        for line in (folder / "words.txt").read_text(errors="replace").splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid.strip()] = text.split(",")[0].strip()
    return wnids, [words.get(w) or w for w in wnids]


def _decode_images(paths: list[Path]) -> Tensor:
    """JPEGs (all 64x64 in Tiny ImageNet; some are greyscale) as a uint8 (N, 3, H, W) tensor."""
    from PIL import Image

    out: np.ndarray | None = None
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                arr = np.asarray(img.convert("RGB"))
        except Exception as exc:  # PIL raises many types for broken files
            raise _damaged(path, f"{type(exc).__name__}: {exc}") from None
        if out is None:
            out = np.empty((len(paths), *arr.shape), dtype=np.uint8)
        elif arr.shape != out.shape[1:]:
            raise _damaged(path, f"image is {arr.shape[1]}x{arr.shape[0]}, the others are "
                                 f"{out.shape[2]}x{out.shape[1]}")
        out[i] = arr
    if out is None:
        raise DataNotFoundError("no images to decode")
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _decode_tiny(folder: Path, wnids: list[str]) -> _Split:
    index = {w: i for i, w in enumerate(wnids)}
    train_paths, train_labels = [], []
    for wnid in wnids:
        files = sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
        if not files:
            raise DataNotFoundError(f"{folder / 'train' / wnid / 'images'} holds no .JPEG images; "
                                    f"the Tiny ImageNet folder {folder} is incomplete")
        train_paths += files
        train_labels += [index[wnid]] * len(files)
    annotations = folder / "val" / "val_annotations.txt"
    test_paths, test_labels = [], []
    for n, line in enumerate(annotations.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or parts[1] not in index:
            raise _damaged(annotations, f"line {n}: {line!r} does not name a file and a known wnid")
        test_paths.append(folder / "val" / "images" / parts[0])
        test_labels.append(index[parts[1]])
    return (_decode_images(train_paths), torch.tensor(train_labels, dtype=torch.long),
            _decode_images(test_paths), torch.tensor(test_labels, dtype=torch.long))


def _save_atomic(obj: dict, path: Path) -> bool:
    """torch.save through a temporary file in the same folder and os.replace, so no reader sees half a file."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError:
        return False  # read-only folder (e.g. a system copy): decode again next time
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
        return True
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_tiny(folder: Path) -> tuple[list[str], _Split]:
    """Tiny ImageNet: decoding 110k JPEGs takes a while, so the tensors are cached beside them as a .pt."""
    wnids, names = _tiny_classes(folder)
    cache = folder / _TINY_CACHE
    if cache.is_file():
        try:
            saved = torch.load(cache, weights_only=True)
            if saved["wnids"] == wnids:
                return names, (saved["train_images"], saved["train_labels"],
                               saved["test_images"], saved["test_labels"])
        except Exception as exc:
            raise _damaged(cache, f"{type(exc).__name__}: {exc}") from None
    split = _decode_tiny(folder, wnids)
    keys = ("train_images", "train_labels", "test_images", "test_labels")
    _save_atomic({"wnids": wnids, **dict(zip(keys, split))}, cache)
    return names, split


# ---------------------------------------------------------------------------------------------------------
# Finding the data: a candidate root either holds an accepted layout (a folder and its reader) or says what
# it lacks; the in-process cache is keyed by that folder, so a second load reads nothing.

_Reader = Callable[[], tuple[list[str], _Split]]


def _find_in(name: str, root: Path) -> tuple[Path, _Reader] | str:
    """(the folder holding `name` under `root` in an accepted layout, its reader), else what was missing."""
    if not root.is_dir():
        return "does not exist"
    for base in (root, root / name):
        if not base.is_dir():
            continue
        if name in _IDX_FOLDERS:
            classes = _FASHION_CLASSES if name == "fashion-mnist" else _DIGIT_CLASSES
            for folder in (base / _IDX_FOLDERS[name] / "raw", base):
                files = _idx_files(folder)
                if files is not None:
                    return folder, lambda f=files: (list(classes), _read_idx_split(f))
        elif name in _CIFAR_FOLDERS:
            folder = base / _CIFAR_FOLDERS[name]
            if folder.is_dir():
                train_files, test_files, meta, _, _ = _CIFAR_FILES[name]
                missing = [f for f in train_files + test_files + [meta] if not (folder / f).is_file()]
                if missing:
                    return f"{folder} lacks {', '.join(missing)}"
                return folder, lambda d=folder: _read_cifar(name, d)
        elif name == "tinyimagenet":
            folder = base / _TINY_FOLDER
            if folder.is_dir():
                needed = ["wnids.txt"]
                if not (folder / _TINY_CACHE).is_file():
                    needed += ["train", "val/val_annotations.txt", "val/images"]
                missing = [p for p in needed if not (folder / p).exists()]
                if missing:
                    return f"{folder} lacks {', '.join(missing)}"
                return folder, lambda d=folder: _read_tiny(d)
    if name in _IDX_FOLDERS:
        return (f"no {_IDX_FOLDERS[name]}/raw/, {name}/ or the folder itself holding the four "
                f"*-idx?-ubyte[.gz] files")
    return f"no {_CIFAR_FOLDERS.get(name, _TINY_FOLDER)}/"


def _torchvision_download(name: str, root: Path) -> None:
    """Fetch `name` with torchvision into `root` (its own layout). Tests replace this to stay offline."""
    import torchvision.datasets as tvd

    classes = {"fashion-mnist": tvd.FashionMNIST, "mnist": tvd.MNIST,
               "cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}
    if name not in classes:
        raise RuntimeError("torchvision cannot download this dataset")
    root.mkdir(parents=True, exist_ok=True)
    # torchvision prints each failed mirror to stdout; the failure is reported in our one message instead
    # (its progress bars go to stderr and stay visible).
    with contextlib.redirect_stdout(io.StringIO()):
        for train in (True, False):
            classes[name](root=str(root), train=train, download=True)


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


def _check_name(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    if key in DATASET_NAMES:
        return key
    close = difflib.get_close_matches(key, DATASET_NAMES, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UsageError(f"unknown dataset {name!r}{hint} Known datasets: {', '.join(DATASET_NAMES)}")


_CACHE: dict[tuple[str, str], ImageDataset] = {}


def clear_cache() -> None:
    """Forget the datasets loaded in this process (tests; or to free memory)."""
    _CACHE.clear()


def _build(name: str, folder: Path, reader: _Reader, origin: str) -> ImageDataset:
    key = (name, str(folder.resolve()))
    if key not in _CACHE:
        classes, (train_x, train_y, test_x, test_y) = reader()
        mean, std = _MEAN_STD[name]
        _CACHE[key] = ImageDataset(name, classes, train_x, train_y, test_x, test_y, mean, std,
                                   f"{folder} ({origin})")
    return _CACHE[key]


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


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = True) -> ImageDataset:
    """Load a whole dataset, looking in `data_dir` (or $CLBENCH_DATA), the system copy, then downloading.

    Repeated calls in one process return the same object (the files are read once).
    """
    name = _check_name(name)
    given, given_origin = _given_root(data_dir)
    if name == "digits":
        return _load_digits()

    places: list[tuple[Path, str]] = []
    if given is not None:
        places.append((given, f"data folder from {given_origin}"))
    places.append((SYSTEM_DATA_ROOT / name, "system copy"))
    download_root = given if given is not None else default_download_root()
    if given is None:
        places.append((download_root, "download cache"))

    looked: list[str] = []
    for root, origin in places:
        found = _find_in(name, root)
        if not isinstance(found, str):
            return _build(name, *found, origin)
        looked.append(f"{root} ({origin}): {found}")

    if not download:
        looked.append("download: not attempted (download disabled)")
    elif name == "tinyimagenet":
        looked.append("download: torchvision has no downloader for Tiny ImageNet")
    else:
        try:
            _torchvision_download(name, download_root)
        except Exception as exc:  # offline: URLError, RuntimeError from torchvision's mirror loop, ...
            why = " ".join(str(exc).split())  # torchvision's messages span lines: keep them on one
            why = why if len(why) <= 300 else why[:297] + "..."
            looked.append(f"download with torchvision into {download_root}: failed ({type(exc).__name__}: {why})")
        else:
            found = _find_in(name, download_root)
            if not isinstance(found, str):
                return _build(name, *found, "downloaded by torchvision")
            looked.append(f"download with torchvision into {download_root}: finished but {found}")

    raise DataNotFoundError(
        f"dataset {name} not found. Looked at:\n"
        + "".join(f"  - {line}\n" for line in looked)
        + f"To get it: {_HOW_TO_GET[name]}, then pass --data-dir DIR or set {ENV_VAR}=DIR."
    )
