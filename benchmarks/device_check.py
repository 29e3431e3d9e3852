"""The GPU measurement of issue 19 in one command: what the paper protocol costs on this device.

    python benchmarks/device_check.py                          # on the GPU machine: writes device_check.{json,md}
    python benchmarks/device_check.py --device cpu --quick     # tiny sizes, seconds (tests/test_device_check.py)

It writes, into `--out` (default: the current folder), `device_check.json` and `device_check.md` with
- the device and driver facts;
- seconds per iteration of DM, DDM and DSA condensation on CIFAR-100-shaped random tensors (one step: 20
  classes, 3x32x32, ConvNet width 128, batch_real 256, ipc 20), through the condensers' public API;
- seconds per epoch of retraining 1 network, 3 networks one after the other and 3 networks batched
  (clbench.training.batched), on the memories of step 1 and step 5 (400 and 2000 images), and of testing them;
- each for fp32 / tf32 / bf16 (amp) / compile / cuda_graphs where the switch applies ("n/a: why" where it
  does not, "error: ..." where it failed, "skipped: ..." past the time budget; nothing stops the script);
- the fp32 loss of one DM and one DDM iteration on fixed inputs, on this device and on the CPU (same inputs,
  same network seeds, same augmentation draws), and their relative difference;
- the wall time of the paper protocol for 5 orders (CIFAR-100, 5 steps, 20 ipc, 20000 iterations per step,
  3 networks x 1000 epochs per step on the growing memory, testing after each step), extrapolated from the
  figures above, against the 2-hour goal.
No measurement starts after `--budget-s` (default 330 s; the slowest one, a compile, takes a minute or two), so
that the whole run stays under 8 minutes; the JSON is rewritten after every measurement, so a run stopped from
outside still leaves what it measured.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clbench.condensers import get_condenser  # noqa: E402
from clbench.condensers.base import CondenseTask, network_factory  # noqa: E402
from clbench.core.atomic import atomic_write_bytes, atomic_write_json  # noqa: E402
from clbench.core.options import build_options  # noqa: E402
from clbench.core.speed import bf16_is_fast, device_name, synchronize, tf32  # noqa: E402
from clbench.nets.augment import DSA, make_augment  # noqa: E402
from clbench.nets.networks import build_network  # noqa: E402
from clbench.training.batched import batches_networks, evaluate_networks, train_networks  # noqa: E402
from clbench.training.recipe import TrainRecipe  # noqa: E402

PAPER = {"classes": 100, "steps": 5, "ipc": 20, "iterations": 20000, "networks": 3, "epochs": 1000,
         "orders": 5, "test_per_class": 100, "goal_hours": 2.0}
SIZES = {  # per step: classes, real images per class, ConvNet width; timed iterations and epochs
    "paper": {"classes": 20, "real_per_class": 500, "batch_real": 256, "ipc": 20, "width": 128, "head": 100,
              "iterations": 21, "epochs": 3, "dsa_iterations": 4, "dsa_loops": ""},
    "quick": {"classes": 2, "real_per_class": 8, "batch_real": 8, "ipc": 2, "width": 8, "head": 10,
              "iterations": 3, "epochs": 1, "dsa_iterations": 2, "dsa_loops": "1,1"},
}
VARIANTS = ("fp32", "tf32", "bf16", "compile", "cuda_graphs")
CONFIGS = {"1 network": (1, False), "3 sequential": (3, False), "3 batched": (3, True)}


class Budget:
    def __init__(self, seconds: float):
        self.start, self.seconds = time.perf_counter(), seconds

    def left(self) -> bool:
        return time.perf_counter() - self.start < self.seconds


@contextlib.contextmanager
def peak_memory(device: torch.device):
    """{"peak_gib": the most device memory allocated inside the block} on CUDA; {} elsewhere."""
    facts: dict[str, float] = {}
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    yield facts
    if device.type == "cuda":
        synchronize(device)
        facts["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)


def guarded(budget: Budget, measure: Callable[[], Any]) -> Any:
    """The measurement, or a string saying why there is none: it never stops the script."""
    if not budget.left():
        return "skipped: time budget"
    try:
        value = measure()
    except Exception as exc:  # an unsupported switch or an out-of-memory is a result here, not a crash
        text = str(exc).strip()
        value = f"error: {type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}"
    return value


def device_facts(device: torch.device) -> dict[str, Any]:
    facts: dict[str, Any] = {"device": str(device), "name": device_name(device), "torch": torch.__version__,
                             "python": platform.python_version(), "cuda_runtime": torch.version.cuda,
                             "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                             "bf16_native": bf16_is_fast(device), "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(capability=".".join(map(str, torch.cuda.get_device_capability(device))),
                     memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count)
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            facts["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 else "unknown"
        except (OSError, subprocess.TimeoutExpired, IndexError):
            facts["driver"] = "unknown"
    return facts


# ---------------------------------------------------------------------------------------------- condensation
def step_data(size: dict) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    k, n = size["classes"], size["real_per_class"]
    return torch.randn(k * n, 3, 32, 32, generator=gen), torch.arange(k).repeat_interleave(n)


def draws(device: torch.device) -> torch.Generator:
    """The condensation generator, seeded, on `device`."""
    return torch.Generator(device=device).manual_seed(0)


def condense(method: str, images: torch.Tensor, labels: torch.Tensor, size: dict, device: torch.device,
             iterations: int, switches: dict[str, str], *, same_draws: bool = False,
             progress: Callable[[int, int, dict], None] | None = None):
    """`iterations` iterations of `method` through its public API. Its generator lives on the device, as in the
    harness (strategies/memory_step.py: a CPU generator would make every draw wait on a copy), or with
    `same_draws` on the CPU, so that every device gets the same draws (the loss check)."""
    cls = get_condenser(method)
    gen = draws(torch.device("cpu") if same_draws else device)
    build = lambda seed: build_network("convnet", 3, size["head"], 32, seed=seed, device=device,  # noqa: E731
                                       width=size["width"])
    task = CondenseTask(images.to(device), labels.to(device), tuple(range(size["classes"])), size["ipc"], gen,
                        network_factory(build, gen), DSA(), device, size["head"],
                        progress=progress or (lambda done, total, info: None))
    opts = {"iterations": str(iterations), "report_every": str(iterations), "batch_real": str(size["batch_real"]),
            **switches}
    if method == "dsa" and size["dsa_loops"]:
        opts["loops"] = size["dsa_loops"]
    with tf32(False, device):  # as the harness runs a condenser: fp32 unless the condenser's own switch says
        return cls(build_options(cls.Options, opts, "paper", owner=method)).condense(task)


def condenser_switches(method: str, variant: str, device: torch.device) -> dict[str, str] | str:
    names = {f for f in getattr(get_condenser(method).Options, "__dataclass_fields__", {})}
    if variant == "fp32":
        return {}
    if variant == "tf32":
        if "tf32" not in names:
            return f"n/a: {method} has no tf32 option"
        return {"tf32": "true"} if device.type == "cuda" else "n/a: TF32 is a CUDA switch"
    if variant == "bf16":
        if "amp" not in names:
            return f"n/a: {method} has no amp option"
        return {"amp": "true"} if bf16_is_fast(device) else "n/a: no native bf16 on this device"
    return "n/a: the condensers have no compile or CUDA-graph switch"


def seconds_per_iteration(method: str, variant: str, size: dict, device: torch.device, data
                          ) -> dict[str, Any] | str:
    """Seconds per iteration from the end of iteration 1 to the end of iteration N inside one call (the call's
    set-up, the first iteration's kernel choices and the allocator's growth left out), the final loss, and the
    peak device memory."""
    switches = condenser_switches(method, variant, device)
    if isinstance(switches, str):
        return switches
    iterations = size["dsa_iterations"] if method == "dsa" else size["iterations"]
    stamps: dict[int, float] = {}

    def progress(done: int, total: int, info: dict) -> None:
        if done in (1, total):  # a wait at the two ends only: the iterations between run as the harness runs them
            synchronize(device)
            stamps[done] = time.perf_counter()

    with peak_memory(device) as peak:
        result = condense(method, *data, size, device, iterations, switches, progress=progress)
    return {"s_per_it": (stamps[iterations] - stamps[1]) / (iterations - 1),
            "loss": final_loss(result.facts), **peak, "images": result.images}


def final_loss(facts: dict) -> float:
    """The loss of the last iteration: the DM family's total, DSA's matching distance."""
    return facts["final_losses"]["total"] if "final_losses" in facts else facts["final_loss"]


def loss_check(method: str, size: dict, device: torch.device, data) -> dict[str, float]:
    """The fp32 loss of one iteration here and on the CPU, on the same inputs."""
    here = condense(method, *data, size, device, 1, {}, same_draws=True)
    cpu = condense(method, *data, size, torch.device("cpu"), 1, {}, same_draws=True)
    a, b = here.facts["final_losses"]["total"], cpu.facts["final_losses"]["total"]
    return {"device": a, "cpu": b, "rel_diff": rel_diff(a, b)}


def rel_diff(value: float, reference: float) -> float:
    return abs(value - reference) / max(abs(reference), 1e-30)


# ---------------------------------------------------------------------------------------------- retraining
def recipe_switches(variant: str, device: torch.device, quick: bool) -> dict[str, Any] | str:
    cuda = device.type == "cuda"
    if variant == "fp32":
        return {}
    if variant == "tf32":
        return {"tf32": True} if cuda else "n/a: TF32 is a CUDA switch"
    if variant == "bf16":
        return {"amp": True} if bf16_is_fast(device) else "n/a: no native bf16 on this device"
    if variant == "cuda_graphs" and not cuda:
        return "n/a: CUDA graphs need a CUDA device"
    if quick:
        return "skipped: --quick (compiling takes about a minute on a CPU)"
    return {"compile": True, "cuda_graphs": variant == "cuda_graphs"}


def retrain(config: str, variant: str, memory: int, size: dict, device: torch.device, epochs: int,
            quick: bool) -> dict[str, float] | str:
    """Seconds per epoch of the config's networks together (epoch 1, with any compiling, not counted) and
    seconds of one test pass of them over the test images of the classes seen at step 5."""
    switches = recipe_switches(variant, device, quick)
    if isinstance(switches, str):
        return switches
    count, batched = CONFIGS[config]
    gen = torch.Generator().manual_seed(1)
    seen = size["classes"] * PAPER["steps"]
    x = torch.randn(memory, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, seen, (memory,), generator=gen).to(device)
    test_n = seen * (PAPER["test_per_class"] if size is SIZES["paper"] else 4)
    tx, ty = torch.randn(test_n, 3, 32, 32, generator=gen).to(device), torch.randint(0, seen, (test_n,)).to(device)
    recipe = TrainRecipe(epochs=1 + epochs, schedule="halves", batched_networks=batched, **switches)  # exact count
    nets = [build_network("convnet", 3, size["head"], 32, seed=k, device=device, width=size["width"])
            for k in range(count)]
    if batched and not batches_networks(nets, recipe, device):
        return "n/a: not batched with this switch (bf16: autocast does not reach inside vmap)"
    gens = [torch.Generator(device=device).manual_seed(k) for k in range(count)]
    stamps: dict[tuple[int, int], float] = {}

    def progress(k: int, done: int, total: int) -> None:
        synchronize(device)
        stamps[(k, done)] = time.perf_counter()

    with peak_memory(device) as peak:
        train_networks(nets, x, y, recipe, make_augment(recipe.dsa_strategy), gens, progress)
    runs = [0] if batched else range(count)  # a batched pass reports every network at the same moment
    per_epoch = sum(stamps[(k, 1 + epochs)] - stamps[(k, 1)] for k in runs) / epochs
    evaluate_networks(nets, tx, ty, recipe)  # warm-up (and compiling)
    synchronize(device)
    start = time.perf_counter()
    evaluate_networks(nets, tx, ty, recipe)
    synchronize(device)
    return {"epoch_s": per_epoch, "test_s": time.perf_counter() - start, "test_images": test_n, **peak}


# ---------------------------------------------------------------------------------------------- extrapolation
def epoch_at(memory: int, measured: dict[int, float], batch: int = 256) -> float:
    """Seconds per epoch at `memory` images, linear in the number of minibatches between the two measured sizes."""
    (m1, t1), (m2, t2) = sorted(measured.items())
    b1, b2, b = (math.ceil(m / batch) for m in (m1, m2, memory))
    return t1 if b2 == b1 else t1 + (t2 - t1) * (b - b1) / (b2 - b1)


def extrapolate(condense_s: float, retrain_cells: dict[int, Any], size: dict) -> dict[str, float] | None:
    """Hours of the paper protocol (5 orders) from seconds per iteration and a config's retraining cells."""
    if not isinstance(condense_s, float) or not all(isinstance(c, dict) for c in retrain_cells.values()):
        return None
    epochs = {m: c["epoch_s"] for m, c in retrain_cells.items()}
    per_test_image = max(c["test_s"] / c["test_images"] for c in retrain_cells.values())
    order = 0.0
    for step in range(1, PAPER["steps"] + 1):
        memory = step * PAPER["classes"] // PAPER["steps"] * PAPER["ipc"]
        seen_test = step * PAPER["classes"] // PAPER["steps"] * PAPER["test_per_class"]
        order += (PAPER["iterations"] * condense_s + PAPER["epochs"] * epoch_at(memory, epochs)
                  + seen_test * per_test_image)
    hours = PAPER["orders"] * order / 3600
    return {"order_hours": order / 3600, "hours_5_orders": hours, "meets_goal": hours <= PAPER["goal_hours"]}


def best(cells: dict[str, Any], key: Callable[[Any], float]) -> tuple[str, Any] | None:
    numeric = [(name, c) for name, c in cells.items() if not isinstance(c, str)]
    return min(numeric, key=lambda nc: key(nc[1])) if numeric else None


def projections(result: dict, size: dict, memories: tuple[int, int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in ("dm", "ddm"):
        cond = {v: c["s_per_it"] for v, c in result["condense"].get(method, {}).items() if isinstance(c, dict)}
        ref = extrapolate(cond.get("fp32"), {m: result["retrain"][str(m)]["3 sequential"].get("fp32")
                                             for m in memories}, size)
        out[f"{method}, fp32 (reference path)"] = ref
        fastest_cond = best(cond, float)
        options = []
        for config in ("3 sequential", "3 batched", "1 network"):
            for variant in VARIANTS:
                cells = {m: result["retrain"][str(m)][config].get(variant) for m in memories}
                if not (fastest_cond and all(isinstance(c, dict) for c in cells.values())):
                    continue
                if config == "1 network":  # three of them one after the other
                    cells = {m: {**c, "epoch_s": 3 * c["epoch_s"], "test_s": 3 * c["test_s"]} for m, c in cells.items()}
                options.append((f"{config if config != '1 network' else '3 x 1 network'}, {variant}",
                                extrapolate(fastest_cond[1], cells, size)))
        if options:
            name, value = min(options, key=lambda o: o[1]["hours_5_orders"])
            out[f"{method}, fastest measured (condense {fastest_cond[0]}; retrain {name})"] = value
    return out


# ---------------------------------------------------------------------------------------------- report
def cell(value: Any) -> str:
    peak = f" ({value['peak_gib']:.2f} GiB)" if isinstance(value, dict) and "peak_gib" in value else ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict) and "s_per_it" in value:
        return f"{value['s_per_it']:.4g}{peak}"
    if isinstance(value, dict) and "epoch_s" in value:
        return f"{value['epoch_s']:.4g} / {value['test_s']:.3g}{peak}"
    return str(value)


def markdown(result: dict) -> str:
    lines = ["# Device check", "", "| fact | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in result["facts"].items()]
    lines += ["", f"Sizes: {result['sizes']}", "",
              "## Condensation, seconds per iteration (iterations 2..N of one call; peak memory)", "",
              "| method | " + " | ".join(VARIANTS) + " |", "|---|" + "---|" * len(VARIANTS)]
    for method, cells in result["condense"].items():
        lines.append(f"| {method} | " + " | ".join(cell(cells.get(v)) for v in VARIANTS) + " |")
    lines += ["", "## Retraining, seconds per epoch / seconds per test pass (all networks of the row)", "",
              "| memory | networks | " + " | ".join(VARIANTS) + " |", "|---|---|" + "---|" * len(VARIANTS)]
    for memory, configs in result["retrain"].items():
        for config, cells in configs.items():
            lines.append(f"| {memory} | {config} | " + " | ".join(cell(cells.get(v)) for v in VARIANTS) + " |")
    lines += ["", "## fp32 loss of one iteration, this device and the CPU", "",
              "| method | device | CPU | relative difference |", "|---|---|---|---|"]
    for method, c in result["loss_check"].items():
        lines.append(f"| {method} | " + (f"{c['device']:.7g} | {c['cpu']:.7g} | {c['rel_diff']:.2e} |"
                                         if isinstance(c, dict) else f"{c} | | |"))
    lines += ["", "## TF32 and bf16 against fp32 (same draws): final loss, synthetic images", "",
              "| method | switch | loss relative difference | images max abs difference |", "|---|---|---|---|"]
    for method, variants in result.get("agreement", {}).items():
        for variant, c in variants.items():
            lines.append(f"| {method} | {variant} | {c['loss_rel_diff']:.2e} | {c['images_max_abs_diff']:.2e} |")
    for name, c in result.get("determinism", {}).items():
        lines += ["", f"Determinism, {name}: " + (f"{'identical' if c['identical'] else 'NOT identical'} (images max "
                                                   f"abs difference {c['images_max_abs_diff']:.2e})"
                                                   if isinstance(c, dict) else str(c))]
    lines += ["", f"## Paper protocol, 5 orders, extrapolated (goal: {PAPER['goal_hours']} h)", ""]
    for name, p in result["projection"].items():
        lines.append(f"- {name}: " + (f"{p['hours_5_orders']:.2f} h ({p['order_hours']:.2f} h per order), "
                                      f"{'meets' if p['meets_goal'] else 'misses'} the goal" if p else "n/a"))
    lines += ["", f"Measured in {result['elapsed_s']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a test of the script, not a measurement)")
    p.add_argument("--out", default=".", help="folder for device_check.json and device_check.md")
    p.add_argument("--budget-s", type=float, default=330.0,
                   help="start no measurement after this many seconds (one compile can take another minute or two)")
    p.add_argument("--methods", default="dm,ddm,dsa,idm,datadam")
    args = p.parse_args(argv)
    device, size = torch.device(args.device), SIZES["quick" if args.quick else "paper"]
    budget = Budget(args.budget_s)
    memories = (size["classes"] * size["ipc"], size["classes"] * PAPER["steps"] * size["ipc"])
    result: dict[str, Any] = {"facts": device_facts(device), "sizes": {"mode": "quick" if args.quick else "paper",
                                                                       **size, "memories": list(memories)},
                              "condense": {}, "retrain": {}, "loss_check": {}, "agreement": {}, "determinism": {}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every cell, whole files replaced at once: a run stopped anywhere leaves them whole
        result["elapsed_s"] = time.perf_counter() - budget.start
        result["projection"] = projections(result, size, memories)
        atomic_write_json(out / "device_check.json", json.loads(json.dumps(result, default=str)))
        atomic_write_bytes(out / "device_check.md", markdown(result).encode())

    data = step_data(size)
    methods = args.methods.split(",")
    retrain_cells = {str(m): {c: {} for c in CONFIGS} for m in memories}
    result["retrain"] = retrain_cells
    fp32_images: dict[str, torch.Tensor] = {}

    def against_fp32(method: str, cell: dict[str, Any], images: torch.Tensor) -> dict[str, Any]:
        """A cell's final loss and synthetic images against the method's fp32 cell (the same draws: device
        generator, seed 0), so the difference is arithmetic alone."""
        reference = fp32_images[method]
        return {"loss_rel_diff": rel_diff(cell["loss"], result["condense"][method]["fp32"]["loss"]),
                "images_max_abs_diff": float((images.float() - reference.float()).abs().max()),
                "identical": bool(torch.equal(images, reference))}

    def condense_cell(method: str, variant: str) -> None:
        value = guarded(budget, lambda: seconds_per_iteration(method, variant, size, device, data))
        result["condense"].setdefault(method, {})[variant] = value
        if isinstance(value, dict):
            images = value.pop("images")
            if variant == "fp32":
                fp32_images[method] = images
            elif method in fp32_images:
                result["agreement"].setdefault(method, {})[variant] = against_fp32(method, value, images)
        save()

    for method in ("dm", "ddm"):
        result["loss_check"][method] = guarded(budget, lambda m=method: loss_check(m, size, device, data))
        save()
    # cheap switches first, then compile and CUDA graphs (minutes of compiling); DSA (slow) after DM and DDM
    for group in (("fp32", "tf32", "bf16"), ("compile", "cuda_graphs")):
        for method in methods:
            for variant in group:
                condense_cell(method, variant)
            if group[0] == "fp32" and method == "dm" and "dm" in fp32_images:  # the same cell again, bit for bit?
                again = guarded(budget, lambda: seconds_per_iteration("dm", "fp32", size, device, data))
                result["determinism"]["dm fp32, run twice"] = (
                    against_fp32("dm", again, again.pop("images")) if isinstance(again, dict) else again)
                save()
        # compiling is slow: the batched networks first, then one network (three of them are three times that)
        configs = list(CONFIGS) if group[0] == "fp32" else ["3 batched", "1 network", "3 sequential"]
        for variant in group:
            for config in configs:
                for memory in memories:
                    retrain_cells[str(memory)][config][variant] = guarded(
                        budget, lambda c=config, v=variant, m=memory: retrain(c, v, m, size, device,
                                                                               size["epochs"], args.quick))
                    save()
    save()
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
