"""Does mixed precision cost accuracy? Short quick runs with amp on and off, compared to the spread of seeds.

For each condenser, two `clbench run`s on the same streams, class orders and seeds, differing only in
`amp` (for the condenser where it has the switch, and for training and testing): fp32 everywhere, and bf16
everywhere. It prints the final accuracy (mean and std over orders) of each, the difference of the means,
the larger of the two stds (the spread of seeds), whether the difference lies within that spread, and the
wall time of each run with their ratio.

    .venv/bin/python benchmarks/amp_accuracy.py --condensers random,dm,ddm --orders 3 --out results/amp-check
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONDENSERS_WITH_AMP = {"dm", "ddm"}  # condensers whose options have an `amp` switch


def run(condenser: str, amp: bool, args) -> tuple[dict, float]:
    """One `clbench run`; returns its record and wall seconds."""
    out = Path(args.out) / ("bf16" if amp else "fp32")
    value = "true" if amp else "false"
    command = [sys.executable, "-m", "clbench", "run", "--condenser", condenser, "--dataset", args.dataset,
               "--steps", str(args.steps), "--memory", args.memory, "--orders", str(args.orders),
               "--profile", "quick", "--device", args.device, "--jobs", str(args.jobs), "--out", str(out),
               "--train", f"amp={value}"]
    if condenser in CONDENSERS_WITH_AMP:
        command += ["--opt", f"amp={value}"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"clbench run failed ({' '.join(command)}):\n{done.stderr[-3000:]}")
    records = sorted(out.glob(f"*-{condenser}-*.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(records[-1].read_text()), seconds


def finals(record: dict) -> list[float]:
    """Final accuracy of every (order, network) of a record."""
    return [acc for order in record["orders"] for acc in order["steps"][-1]["accuracies"]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--condensers", default="random,dm,ddm")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--memory", default="20ipc")
    p.add_argument("--orders", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default="results/amp-check")
    args = p.parse_args()
    print(f"{args.dataset}, {args.steps} steps, {args.memory}, {args.orders} orders, quick profile, "
          f"device {args.device}, --jobs {args.jobs}")
    print("condenser | fp32 final acc | bf16 final acc | bf16 - fp32 | spread (max std) | within | "
          "fp32 s | bf16 s | speed-up")
    for condenser in args.condensers.split(","):
        fp32, fp32_s = run(condenser, False, args)
        bf16, bf16_s = run(condenser, True, args)
        a, b = finals(fp32), finals(bf16)
        spread = max(statistics.pstdev(a), statistics.pstdev(b))
        diff = statistics.mean(b) - statistics.mean(a)
        print(f"{condenser} | {statistics.mean(a):.2f} ± {statistics.pstdev(a):.2f} | "
              f"{statistics.mean(b):.2f} ± {statistics.pstdev(b):.2f} | {diff:+.2f} | {spread:.2f} | "
              f"{'yes' if abs(diff) <= spread else 'NO'} | {fp32_s:.0f} | {bf16_s:.0f} | x{fp32_s / bf16_s:.2f}",
              flush=True)


if __name__ == "__main__":
    main()
