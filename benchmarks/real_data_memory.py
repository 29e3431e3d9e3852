"""What keeping the real images as uint8 saves: the peak memory of one `clbench run` on ImageNet-1K-shaped data
(64 px, 1300 training and 50 test images per class, on fewer classes), with the real images held as uint8 and
normalised where a step uses them (clbench), against the whole dataset converted to float32 once before the
first step (the baseline: what clbench did before, and what the reference code does).

    .venv/bin/python benchmarks/real_data_memory.py [--classes 40] [--steps 2] [--condenser random]

Each variant runs in its own process (a fresh peak); the script prints each one's peak resident memory (ru_maxrss),
the ratio baseline / clbench, the records' accuracies (equal: the same numbers either way), and the peak
extrapolated to ImageNet-1K's 1000 classes from runs at two class counts (--classes and half of it: the peak's
growth per class and what does not grow). The data is generated in the downsampled-ImageNet npz layout
(`imagenet64`) in a temporary folder; CPU only (on a GPU the same split applies to device memory).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SIDE, TRAIN_PER_CLASS, TEST_PER_CLASS = 64, 1300, 50

# run in a child process: the CLI, with the baseline's residency patched in where asked
CHILD = r"""
import json, resource, sys
from clbench.data.types import ImageDataset, RealData
if sys.argv[1] == "float32":
    def whole_float32(self, device="cpu"):  # the whole dataset normalised to float32 once, before any step
        train_x, train_y = self.normalised("train", device)
        test_x, test_y = self.normalised("test", device)
        return RealData(train_x, train_y, test_x, test_y, self.num_classes)
    ImageDataset.resident = whole_float32
from clbench.cli import app
try:
    app(sys.argv[2:], standalone_mode=False)
finally:
    print(json.dumps({"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def make_npz(root: Path, classes: int, seed: int = 0) -> Path:
    """Imagenet64_train/train_data_batch_1.npz and Imagenet64_val/val_data.npz of `classes` classes (labels 1..)."""
    rng = np.random.default_rng(seed)
    for folder, name, per_class in (("Imagenet64_train", "train_data_batch_1.npz", TRAIN_PER_CLASS),
                                    ("Imagenet64_val", "val_data.npz", TEST_PER_CLASS)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        labels = np.repeat(np.arange(1, classes + 1), per_class)
        data = rng.integers(0, 256, (len(labels), 3 * SIDE * SIDE), dtype=np.uint8)
        np.savez(root / folder / name, data=data, labels=labels)
    return root


def run(variant: str, data: Path, out: Path, classes: int, args: argparse.Namespace) -> dict:
    cli = ["run", "--dataset", f"imagenet64#0-{classes - 1}", "--data-dir", str(data), "--condenser",
           args.condenser, "--steps", str(args.steps), "--memory", "1ipc", "--orders", "1", "--profile", "quick",
           "--device", "cpu", "--nets", "1", "--train", "epochs=1", "--out", str(out / variant)]
    done = subprocess.run([sys.executable, "-c", CHILD, variant, *cli], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{variant} run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    peak = json.loads(done.stdout.strip().splitlines()[-1])["peak_kib"] * 1024
    record = json.loads(next((out / variant).glob("*.json")).read_text())
    accuracies = [s["accuracies"] for o in record["orders"] for s in o["steps"]]
    return {"peak": peak, "accuracies": accuracies, "real_data": record["environment"].get("real_data")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=40)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--condenser", default="random")
    args = parser.parse_args()

    gib = 2 ** 30
    counts = (args.classes // 2, args.classes)  # two sizes: the peak's growth per class, and what is fixed
    results: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for classes in counts:
            data = make_npz(Path(tmp) / f"imagenet64-{classes}", classes)
            for variant in ("float32", "uint8"):
                results[variant, classes] = run(variant, data, Path(tmp) / f"out-{classes}", classes, args)
    for classes in counts:
        pixels = classes * (TRAIN_PER_CLASS + TEST_PER_CLASS) * 3 * SIDE * SIDE
        print(f"{classes} classes x ({TRAIN_PER_CLASS} + {TEST_PER_CLASS}) images at {SIDE} px "
              f"({pixels / gib:.2f} GiB as uint8), {args.steps} steps of condenser {args.condenser}, CPU:")
        for variant in ("float32", "uint8"):
            r = results[variant, classes]
            print(f"  real images {variant:8s} peak {r['peak'] / gib:6.2f} GiB   accuracies {r['accuracies']}")
        base, ours = results["float32", classes]["peak"], results["uint8", classes]["peak"]
        same = results["float32", classes]["accuracies"] == results["uint8", classes]["accuracies"]
        print(f"  ratio float32 / uint8: {base / ours:.2f}x; accuracies {'identical' if same else 'DIFFER'}; "
              f"the record says: {results['uint8', classes]['real_data']}")
    small, large = counts
    for variant in ("float32", "uint8"):
        per_class = (results[variant, large]["peak"] - results[variant, small]["peak"]) / (large - small)
        fixed = results[variant, large]["peak"] - per_class * large
        print(f"{variant}: {per_class / 2 ** 20:.1f} MiB per class above {fixed / gib:.2f} GiB; ImageNet-1K "
              f"(1000 classes) extrapolated: {(fixed + per_class * 1000) / gib:.1f} GiB")

if __name__ == "__main__":
    main()
