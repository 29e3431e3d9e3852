"""The file formats datasets come in, and the folder layouts that hold them: idx (MNIST, Fashion-MNIST), the
CIFAR pickles, Tiny ImageNet's JPEG tree (decoded once, then cached beside it as a .pt) and downsampled
ImageNet's npz batches (image folders: clbench.data.image_folders).

A layout's `find(folder)` says whether the folder holds the dataset: a reader to call, a sentence saying what
it lacks, or None when nothing of it is there. A reader returns the class names and the four tensors. A file
that is there but cannot be read is an error naming it (not "not found": that would send the user to download
what they already have). Which dataset uses which layout is `clbench.data.datasets`' business.
"""
from __future__ import annotations

import errno
import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from clbench.core.atomic import atomic_torch_save
from clbench.core.errors import DataNotFoundError
from clbench.core.tensorfile import UnreadableTensorFile, load_tensor_file, reason

Split = tuple[Tensor, Tensor, Tensor, Tensor]  # train_images, train_labels, test_images, test_labels
Reader = Callable[[], tuple[list[str], Split]]  # () -> (class names, split): reads the files when called
Found = tuple[Path, Reader] | str | None  # (folder, its reader), what the folder lacks, or nothing there

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
TINY_CACHE = "clbench-uint8-v1.pt"


def user_cache_dir() -> Path:
    """~/.cache/clbench (or under $XDG_CACHE_HOME): where clbench keeps what it downloads or derives."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clbench"


def damaged(path: Path, why: str) -> DataNotFoundError:
    return DataNotFoundError(f"{path} is damaged or not in the expected format ({why}); "
                             f"delete it and fetch the dataset again")


# -- idx -------------------------------------------------------------------------------------------------
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
        raise damaged(path, f"{type(exc).__name__}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise damaged(path, f"bad magic number {raw[:4].hex() or 'empty file'}")
    if raw[2] != 0x08:
        raise damaged(path, f"element type 0x{raw[2]:02x}, expected unsigned bytes (0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise damaged(path, f"truncated header for {ndim} dimensions")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise damaged(path, f"header says {dims} = {expected} bytes, file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def idx_files(folder: Path) -> dict[str, Path] | None:
    """The four idx files in `folder` (plain preferred over .gz: no decompression), or None if any is missing."""
    found = {}
    for key, stem in IDX_FILES.items():
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def read_idx_split(files: dict[str, Path]) -> Split:
    out = []
    for split in ("train", "test"):
        images = read_idx(files[f"{split}_images"])
        labels = read_idx(files[f"{split}_labels"])
        if images.ndim != 3:
            raise damaged(files[f"{split}_images"], f"expected 3 dimensions (N, H, W), got {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise damaged(files[f"{split}_labels"],
                          f"expected {len(images)} labels to match the images, got shape {labels.shape}")
        out += [torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))]
    return out[0], out[1], out[2], out[3]


@dataclass(frozen=True)
class IdxLayout:
    """The four idx files in torchvision's `<folder>/raw/`, or directly in the folder looked at."""

    folder: str  # torchvision's folder name (FashionMNIST, MNIST)
    classes: tuple[str, ...]  # idx files carry no class names

    def find(self, base: Path) -> Found:
        for folder in (base / self.folder / "raw", base):
            files = idx_files(folder)
            if files is not None:
                return folder, lambda f=files: (list(self.classes), read_idx_split(f))
        return None

    def expected(self, name: str) -> str:
        return f"no {self.folder}/raw/, {name}/ or the folder itself holding the four *-idx?-ubyte[.gz] files"


# -- CIFAR pickles ---------------------------------------------------------------------------------------
def unpickle(path: Path) -> dict:
    """A CIFAR pickle as a dict with str keys (the files are Python 2 pickles; test fakes may use bytes keys)."""
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
    except Exception as exc:  # any unpickling failure means the file is unusable
        raise damaged(path, f"{type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise damaged(path, f"expected a dict, got {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _field(batch: dict, key: str, path: Path):
    if key not in batch:
        raise damaged(path, f"no {key!r} entry (has {sorted(batch)})")
    return batch[key]


def _cifar_arrays(paths: list[Path], label_key: str) -> tuple[Tensor, Tensor]:
    images, labels = [], []
    for path in paths:
        batch = unpickle(path)
        data = np.asarray(_field(batch, "data", path), dtype=np.uint8)
        lab = np.asarray(_field(batch, label_key, path), dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(lab) != len(data):
            raise damaged(path, f"data {data.shape} and {len(lab)} labels, expected (N, 3072) and N labels")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def _names(meta_path: Path, key: str) -> list[str]:
    names = _field(unpickle(meta_path), key, meta_path)
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


@dataclass(frozen=True)
class CifarLayout:
    """The python-version CIFAR folder: pickled batches and a meta file with the class names."""

    folder: str  # cifar-10-batches-py, cifar-100-python
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta: str
    label_key: str
    names_key: str

    def find(self, base: Path) -> Found:
        folder = base / self.folder
        if not folder.is_dir():
            return None
        missing = [f for f in (*self.train_files, *self.test_files, self.meta) if not (folder / f).is_file()]
        if missing:
            return f"{folder} lacks {', '.join(missing)}"
        return folder, lambda: self.read(folder)

    def read(self, folder: Path) -> tuple[list[str], Split]:
        train_x, train_y = _cifar_arrays([folder / f for f in self.train_files], self.label_key)
        test_x, test_y = _cifar_arrays([folder / f for f in self.test_files], self.label_key)
        return _names(folder / self.meta, self.names_key), (train_x, train_y, test_x, test_y)

    def expected(self, name: str) -> str:
        return f"no {self.folder}/"


# -- Tiny ImageNet ---------------------------------------------------------------------------------------
def _tiny_classes(folder: Path) -> tuple[list[str], list[str]]:
    """(wnids sorted, as ImageFolder orders them in the reference code; readable names from words.txt)."""
    wnids = sorted(line.strip() for line in (folder / "wnids.txt").read_text().splitlines() if line.strip())
    words: dict[str, str] = {}
    if (folder / "words.txt").is_file():
        for line in (folder / "words.txt").read_text(errors="replace").splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid.strip()] = text.split(",")[0].strip()
    return wnids, [words.get(w) or w for w in wnids]


def decode_images(paths: list[Path]) -> Tensor:
    """JPEGs (all 64x64 in Tiny ImageNet; some are greyscale) as a uint8 (N, 3, H, W) tensor."""
    from PIL import Image

    out: np.ndarray | None = None
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                arr = np.asarray(img.convert("RGB"))
        except Exception as exc:  # PIL raises many types for broken files
            raise damaged(path, f"{type(exc).__name__}: {exc}") from None
        if out is None:
            out = np.empty((len(paths), *arr.shape), dtype=np.uint8)
        elif arr.shape != out.shape[1:]:
            raise damaged(path, f"image is {arr.shape[1]}x{arr.shape[0]}, the others are "
                                f"{out.shape[2]}x{out.shape[1]}")
        out[i] = arr
    if out is None:
        raise DataNotFoundError("no images to decode")
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _decode_tiny(folder: Path, wnids: list[str]) -> Split:
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
            raise damaged(annotations, f"line {n}: {line!r} does not name a file and a known wnid")
        test_paths.append(folder / "val" / "images" / parts[0])
        test_labels.append(index[parts[1]])
    return (decode_images(train_paths), torch.tensor(train_labels, dtype=torch.long),
            decode_images(test_paths), torch.tensor(test_labels, dtype=torch.long))


def read_tiny(folder: Path) -> tuple[list[str], Split]:
    """Tiny ImageNet: decoding 110k JPEGs takes a while, so the tensors are cached beside them as a .pt."""
    wnids, names = _tiny_classes(folder)
    cache = folder / TINY_CACHE
    if cache.is_file():
        try:
            saved = load_tensor_file(cache)
            if saved["wnids"] == wnids:
                return names, (saved["train_images"], saved["train_labels"],
                               saved["test_images"], saved["test_labels"])
        except UnreadableTensorFile as exc:
            raise damaged(cache, str(exc)) from None
        except Exception as exc:  # readable, but not the cache's layout
            raise damaged(cache, reason(exc)) from None
    split = _decode_tiny(folder, wnids)
    keys = ("train_images", "train_labels", "test_images", "test_labels")
    try:
        atomic_torch_save(cache, {"wnids": wnids, **dict(zip(keys, split))})
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        # a read-only folder (e.g. a system copy): no cache, decode again next time
    return names, split


@dataclass(frozen=True)
class TinyImageNetLayout:
    """tiny-imagenet-200.zip unpacked: wnids.txt, train/<wnid>/images/*.JPEG, val/images and its annotations."""

    folder: str = "tiny-imagenet-200"

    def find(self, base: Path) -> Found:
        folder = base / self.folder
        if not folder.is_dir():
            return None
        needed = ["wnids.txt"]
        if not (folder / TINY_CACHE).is_file():
            needed += ["train", "val/val_annotations.txt", "val/images"]
        missing = [p for p in needed if not (folder / p).exists()]
        if missing:
            return f"{folder} lacks {', '.join(missing)}"
        return folder, lambda: read_tiny(folder)

    def expected(self, name: str) -> str:
        return f"no {self.folder}/"


# -- downsampled ImageNet (Chrabaszcz et al., 2017) ------------------------------------------------------
def _npz_part(path: Path, side: int) -> tuple[Tensor, Tensor]:
    """One npz batch: `data` (N, 3*side*side) uint8, the R, G and B planes in turn; `labels` 1..1000."""
    import zipfile

    try:
        batch = np.load(path, allow_pickle=False)
        if not isinstance(batch, np.lib.npyio.NpzFile):
            raise damaged(path, "not an npz archive (a single .npy array?)")
        with batch:
            data, labels = batch["data"], np.asarray(batch["labels"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        why = "not an npz archive" if "pickled" in str(exc) or isinstance(exc, zipfile.BadZipFile) else reason(exc)
        raise damaged(path, why) from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * side * side:
        raise damaged(path, f"data is {data.dtype} {data.shape}; expected uint8 (N, {3 * side * side})")
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise damaged(path, f"labels are {labels.dtype} {labels.shape}; expected {len(data)} integers 1..1000")
    if len(labels) and not (1 <= labels.min() and labels.max() <= 1000):
        raise damaged(path, f"labels are {labels.min()}..{labels.max()} as stored; the release counts 1..1000")
    images = torch.from_numpy(np.ascontiguousarray(data.reshape(-1, 3, side, side)))
    return images, torch.from_numpy(labels.astype(np.int64) - 1)  # the files count classes from 1


def _batch_number(path: Path) -> int:
    tail = path.stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


@dataclass(frozen=True)
class DownsampledImageNetLayout:
    """The npz release of downsampled ImageNet: `<train>/train_data_batch_1.npz` .. `_10.npz` and
    `<val>/val_data.npz` (Imagenet64_train_npz/ and Imagenet64_val_npz/ as unpacked, or all in one folder)."""

    side: int = 64
    train_folders: tuple[str, ...] = ("Imagenet64_train_npz", "Imagenet64_train")
    val_folders: tuple[str, ...] = ("Imagenet64_val_npz", "Imagenet64_val")

    def find(self, base: Path) -> Found:
        trains = [base / f for f in self.train_folders] + [base]
        train = next((f for f in trains if f.is_dir() and list(f.glob("train_data_batch_*.npz"))), None)
        vals = [base / f for f in self.val_folders] + [base]
        val = next((f / "val_data.npz" for f in vals if (f / "val_data.npz").is_file()), None)
        if train is None and val is None:
            return None
        if train is None:
            return f"{base} has val_data.npz but no train_data_batch_*.npz"
        if val is None:
            return f"{base} has train_data_batch_*.npz but no val_data.npz"
        parts = sorted(train.glob("train_data_batch_*.npz"), key=_batch_number)
        return train, lambda: self._read(parts, val)

    def _read(self, parts: list[Path], val: Path) -> tuple[list[str], Split]:
        train = [_npz_part(p, self.side) for p in parts]
        test_x, test_y = _npz_part(val, self.side)
        train_x = torch.cat([x for x, _ in train]) if len(train) > 1 else train[0][0]
        train_y = torch.cat([y for _, y in train]) if len(train) > 1 else train[0][1]
        return [f"class {k}" for k in range(1000)], (train_x, train_y, test_x, test_y)

    def expected(self, name: str) -> str:
        return (f"no {self.train_folders[0]}/train_data_batch_*.npz and {self.val_folders[0]}/val_data.npz "
                f"(or both in {name}/)")
