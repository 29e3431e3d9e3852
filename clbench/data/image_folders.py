"""Image folders (torchvision's ImageFolder convention): `train/` and `val/` (or `test/`), each holding one folder
of images per class. Images are resized (shorter side to S) and centre-cropped to S x S, as the reference code
prepares ImageNette and ImageWoof at 128 px, and decoded once: the uint8 tensors are cached with the class list
and the training split's channel statistics, so that a second run decodes nothing.

The cache lies in `<folder>/.clbench-cache/` where the folder is writable, else under clbench's cache folder
(~/.cache/clbench/folders/), named by the folder's resolved path and S. It is keyed by a fingerprint of the file
list (relative paths, sizes, modification times): a file added, removed or replaced makes the next run decode
again. Classes are the class folders of `train/`, sorted by name (ImageFolder's order, so class k is the
reference code's class k); the evaluation split must hold the same class folders.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from clbench.core.atomic import atomic_torch_save
from clbench.core.errors import DataNotFoundError
from clbench.core.tensorfile import UnreadableTensorFile, load_tensor_file
from clbench.data.readers import Found, Split, damaged, user_cache_dir

SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
EVAL_SPLITS = ("val", "test")
CACHE_VERSION = 1


def class_folders(split: Path) -> list[str]:
    return sorted(p.name for p in split.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def eval_split(folder: Path) -> Path | None:
    return next((folder / s for s in EVAL_SPLITS if (folder / s).is_dir()), None)


def lacks(folder: Path) -> str | None:
    """What keeps `folder` from being an image-folder dataset, or None."""
    if not (folder / "train").is_dir():
        return f"{folder} has no train/ folder (image folders need train/ and val/ or test/, one folder per class)"
    if eval_split(folder) is None:
        return f"{folder} has train/ but no val/ or test/ folder"
    classes = class_folders(folder / "train")
    if not classes:
        return f"{folder / 'train'} holds no class folders"
    evaluation = class_folders(eval_split(folder))
    missing, extra = sorted(set(classes) - set(evaluation)), sorted(set(evaluation) - set(classes))
    if missing:
        return f"{eval_split(folder)} lacks the class folder(s) {_some(missing)} that train/ has"
    if extra:  # its images would be silently left out of every test
        return f"{eval_split(folder)} has class folder(s) {_some(extra)} that train/ lacks"
    return None


def _some(names: list[str]) -> str:
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


def resize_and_crop(image, size: int):
    """A PIL image, its shorter side resized to `size` (bilinear, antialiased) then the centre size x size."""
    from PIL import Image

    w, h = image.size
    scale = size / min(w, h)
    if (w, h) != (round(w * scale), round(h * scale)):
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return image.crop((left, top, left + size, top + size))


def decode(paths: list[Path], size: int) -> Tensor:
    """Images as a uint8 (N, 3, size, size) tensor (greyscale and palette images become RGB)."""
    from PIL import Image

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                out[i] = np.asarray(resize_and_crop(to_rgb(img), size))
        except Exception as exc:  # PIL raises many types for broken files
            raise damaged(path, f"{type(exc).__name__}: {exc}") from None
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def to_rgb(img):
    """8-bit RGB. 16-bit greyscale (PNG, TIFF) is scaled to 8 bits (PIL's own conversion clips it at 255)."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        pixels = np.asarray(img, dtype=np.float64)
        full = 65535.0 if img.mode.startswith("I;16") or pixels.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(np.rint(pixels * (255.0 / full)), 0, 255).astype(np.uint8), mode="L")
    return img.convert("RGB")


def _split_files(split: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    paths, labels = [], []
    for k, name in enumerate(classes):
        files = image_files(split / name)
        paths += files
        labels += [k] * len(files)
    return paths, labels


def fingerprint(folder: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        st = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_paths(folder: Path, size: int) -> list[Path]:
    """Where the cache of `folder` at `size` px may be, in the order tried: beside the data, then the user cache."""
    name = f"size{size}-v{CACHE_VERSION}.pt"
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return [folder / ".clbench-cache" / name, user_cache_dir() / "folders" / f"{key}-{name}"]


def read_image_folder(folder: Path, size: int) -> tuple[list[str], Split, dict]:
    """(class names, the four tensors, {"mean", "std", "cache", "decoded"}) of an image-folder dataset."""
    classes = class_folders(folder / "train")
    train_files, train_labels = _split_files(folder / "train", classes)
    test_split = eval_split(folder)
    test_files, test_labels = _split_files(test_split, classes)
    for split, labels in ((folder / "train", train_labels), (test_split, test_labels)):
        present = set(labels)
        empty = [name for k, name in enumerate(classes) if k not in present]
        if empty:  # a class never trained on, or never tested: every protocol needs each class in both
            raise DataNotFoundError(f"{split}: the class folder(s) {_some(empty)} hold no images "
                                    f"({', '.join(SUFFIXES)}); every class needs images in train/ and in "
                                    f"{test_split.name}/")
    stamp = fingerprint(folder, train_files + test_files)
    for cache in cache_paths(folder, size):
        saved = _cached(cache, stamp, classes)
        if saved is not None:
            split = (saved["train_images"], saved["train_labels"], saved["test_images"], saved["test_labels"])
            return classes, split, {"mean": tuple(saved["mean"]), "std": tuple(saved["std"]),
                                    "cache": str(cache), "decoded": False}
    split = (decode(train_files, size), torch.tensor(train_labels, dtype=torch.long),
             decode(test_files, size), torch.tensor(test_labels, dtype=torch.long))
    pixels = split[0].double().div_(255.0)
    mean = tuple(pixels.mean(dim=(0, 2, 3)).tolist())
    std = tuple(pixels.std(dim=(0, 2, 3), unbiased=False).tolist())
    keys = ("train_images", "train_labels", "test_images", "test_labels")
    saved_at = None
    for cache in cache_paths(folder, size):
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_torch_save(cache, {"fingerprint": stamp, "classes": classes, "mean": list(mean),
                                      "std": list(std), **dict(zip(keys, split))})
            saved_at = str(cache)
            break
        except OSError:  # read-only, full, or the name taken by a folder: the next place, else no cache
            continue
    return classes, split, {"mean": mean, "std": std, "cache": saved_at, "decoded": True}


def _cached(cache: Path, stamp: str, classes: list[str]) -> dict | None:
    """The cache's contents if it is a cache of exactly these files; a stale, damaged or foreign file is None
    (it is derived data: decoding again and replacing it is always right)."""
    if not cache.is_file():
        return None
    try:
        saved = load_tensor_file(cache)
        ok = (isinstance(saved, dict) and saved.get("fingerprint") == stamp and saved.get("classes") == classes
              and all(isinstance(saved.get(k), torch.Tensor) for k in
                      ("train_images", "train_labels", "test_images", "test_labels")))
    except (UnreadableTensorFile, OSError):
        return None
    return saved if ok else None


@dataclass(frozen=True)
class ImageFolderLayout:
    """An image-folder dataset under one of `folders` (e.g. imagenette2/), or the folder looked at itself."""

    folders: tuple[str, ...]
    size: int

    def find(self, base: Path) -> Found:
        for folder in [base / f for f in self.folders] + [base]:
            if folder.is_dir() and (folder / "train").is_dir():
                problem = lacks(folder)
                if problem:
                    return problem
                return folder, lambda f=folder: read_image_folder(f, self.size)[:2]
        return None

    def expected(self, name: str) -> str:
        return f"no {'/, '.join(self.folders)}/ or {name}/ holding train/ and val/ (one folder per class)"
