"""What the image-folder cache saves: loading an image folder the first time (every JPEG decoded, resized and
centre-cropped) against the second time (the uint8 cache read), in one process, on a generated folder shaped
like ImageNette (10 classes of JPEGs at 160 x 213 px, read at 128 px).

    .venv/bin/python benchmarks/image_folder_cache.py [--per-class 100] [--size 128] [--repeats 3]

Prints the seconds of each and the ratio first / cached (above 1: the cache is faster).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_folder(root: Path, per_class: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("val", max(1, per_class // 4))):
        for c in range(10):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                base = rng.integers(0, 256, (20, 27, 3), dtype=np.uint8)  # smooth-ish content, as photos are
                Image.fromarray(base).resize((213, 160), Image.Resampling.BICUBIC).save(folder / f"{k}.JPEG",
                                                                                          quality=90)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from clbench.data import datasets

    first, cached = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            root = make_folder(Path(tmp) / f"folder{r}", args.per_class, seed=r)
            name = f"folder:{root}@{args.size}"
            datasets.clear_cache()
            start = time.perf_counter()
            ds = datasets.load_dataset(name)
            first.append(time.perf_counter() - start)
            datasets.clear_cache()
            start = time.perf_counter()
            datasets.load_dataset(name)
            cached.append(time.perf_counter() - start)
    n = len(ds.train_labels) + len(ds.test_labels)
    a, b = statistics.median(first), statistics.median(cached)
    print(f"{n} images at {args.size} px, median of {args.repeats}: first load {a:.2f} s (decode, resize, crop, "
          f"cache), second load {b:.3f} s (cache); ratio {a / b:.1f}x")


if __name__ == "__main__":
    main()
