"""Diagnosis of condensed sets on the seed paper's two claims: style close to the real data, and diversity.

For every class of a condensed set (a static record's synthetic sets, or a continual record's final memories)
and in several freshly initialised ConvNets (`seeds`, frozen, eval mode):

- the style gap to the real data of the class, per style tap (by default each block's convolution output,
  before the norm: see `embed_and_style_taps`; DDM's norm outputs on request) and then averaged over taps:
  the squared distance between the per-channel spatial mean, and between
  the per-channel spatial std, of synthetic and real images (per-sample statistics averaged over each set;
  mean over channels), and the squared Frobenius distance between their average Gram matrices
  (`G = F F^T / (C*H*W)`, as DDM's correlation matching);
- the intra-class diversity of the synthetic images in the embedding: mean pairwise Euclidean distance, and
  mean distance to the k nearest other samples.

Each number has a reference beside it: the same quantity for a random subset of the class's REAL images of
the same count (the finite-sample floor of the gap, and the diversity real data has at that count). The real
statistics are taken on `real_per_class` random training images of the class (all of them if fewer); the
reference subset is drawn independently, so it may overlap them.

The maths are the pure functions at the top; the loop below them feeds them chunk by chunk.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from clbench.core.errors import UsageError
from clbench.core.seeding import check_seed
from clbench.core.tensorfile import UnreadableTensorFile, load_tensor_file
from clbench.matching.losses import SIGMA_EPS, gram
from clbench.nets.networks import check_width

SCHEMA = "clbench.diagnose"
SCHEMA_VERSION = 1
METRICS = ("mean_gap", "std_gap", "gram_gap", "pairwise", "knn")


def check_out(path: str | Path) -> None:
    """Refuse an --out file that holds anything but an earlier diagnosis (a run record, above all): writing the
    diagnosis there would replace it."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_file():
        raise UsageError(f"--out {path}: not a file; give a JSON file name for the diagnosis")
    try:
        schema = json.loads(path.read_bytes()[: 1 << 26]).get("schema")
    except (ValueError, AttributeError, OSError):
        schema = None
    if schema != SCHEMA:
        what = "a clbench record" if isinstance(schema, str) and schema.startswith("clbench.") else "a file"
        raise UsageError(f"--out {path}: already holds {what} that is not a diagnosis, and it would be replaced; "
                         f"give another file name")


# ----------------------------------------------------------------------------------------------- the maths
def channel_moments(tap: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample channel mean and std over the spatial positions of a tap (N, C, H, W): (N, C) each.

    std = sqrt(unbiased variance + 1e-5), as in DDM's moments matching (biased on a 1x1 map).
    """
    flat = tap.flatten(2)
    correction = 1 if flat.shape[2] > 1 else 0
    return flat.mean(2), torch.sqrt(flat.var(2, correction=correction) + SIGMA_EPS)


@dataclass
class StyleSums:
    """Sums over samples of the per-sample style statistics of each tap (float64), and the sample count.

    Sums rather than means, so that chunks of a large set add up exactly (up to rounding).
    """

    mean: list[Tensor]  # per tap: (C,)
    std: list[Tensor]  # per tap: (C,)
    gram: list[Tensor]  # per tap: (C, C)
    count: int

    @classmethod
    def of(cls, taps: Sequence[Tensor]) -> StyleSums:
        means, stds, grams = [], [], []
        for tap in taps:  # per-sample statistics in the tap's precision, sums in float64
            mu, sigma = channel_moments(tap)
            means.append(mu.double().sum(0))
            stds.append(sigma.double().sum(0))
            grams.append(gram(tap).double().sum(0))
        return cls(means, stds, grams, int(taps[0].shape[0]) if taps else 0)

    def __add__(self, other: StyleSums) -> StyleSums:
        if self.count == 0:
            return other
        if other.count == 0:
            return self
        return StyleSums([a + b for a, b in zip(self.mean, other.mean, strict=True)],
                         [a + b for a, b in zip(self.std, other.std, strict=True)],
                         [a + b for a, b in zip(self.gram, other.gram, strict=True)], self.count + other.count)


def empty_style() -> StyleSums:
    return StyleSums([], [], [], 0)


def style_gap(real: StyleSums, syn: StyleSums) -> dict[str, float]:
    """Averaged over taps: mean_c (mu_s - mu_r)^2, mean_c (sigma_s - sigma_r)^2 and sum (G_s - G_r)^2, each
    of the set averages of the per-sample statistics. Zero when both sets have the same statistics."""
    if real.count == 0 or syn.count == 0:
        raise ValueError("style_gap needs at least one sample on each side")
    out = {"mean_gap": [], "std_gap": [], "gram_gap": []}
    for rm, sm, rs, ss, rg, sg in zip(real.mean, syn.mean, real.std, syn.std, real.gram, syn.gram, strict=True):
        out["mean_gap"].append(float(((sm / syn.count - rm / real.count) ** 2).mean()))
        out["std_gap"].append(float(((ss / syn.count - rs / real.count) ** 2).mean()))
        out["gram_gap"].append(float(((sg / syn.count - rg / real.count) ** 2).sum()))
    return {name: float(np.mean(values)) for name, values in out.items()}


def distances(embeddings: Tensor) -> Tensor:
    """Exact pairwise Euclidean distances (n, n) in float64 (no matmul shortcut: identical rows give 0)."""
    e = embeddings.double().flatten(1)
    return torch.cdist(e, e, compute_mode="donot_use_mm_for_euclid_dist")


def mean_pairwise_distance(embeddings: Tensor) -> float | None:
    """Mean Euclidean distance over the ordered pairs i != j; None for fewer than two samples."""
    n = embeddings.shape[0]
    if n < 2:
        return None
    return float(distances(embeddings).sum() / (n * (n - 1)))


def mean_knn_distance(embeddings: Tensor, k: int) -> float | None:
    """Mean over samples of the mean distance to their k nearest OTHER samples; None where n <= k."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    n = embeddings.shape[0]
    if n <= k:
        return None
    d = distances(embeddings)
    d.diagonal().fill_(float("inf"))
    return float(d.topk(k, dim=1, largest=False).values.mean())


def diversity(embeddings: Tensor, k: int) -> dict[str, float | None]:
    return {"pairwise": mean_pairwise_distance(embeddings), "knn": mean_knn_distance(embeddings, k)}


def mean_of(values: Sequence[float | None]) -> float | None:
    """Mean of the values that are defined (None where none is)."""
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


# ----------------------------------------------------------------------------------------------- features
# Where style is measured: each block's conv output, or DDM's taps named as DDM's `style_tap` option names them
# (the norm output, or after its ReLU). "norm" is the name diagnose gave DDM's default taps before (post_relu).
TAPS = ("conv", "pre_relu", "post_relu")
TAP_ALIASES = {"norm": "post_relu"}


def embed_and_style_taps(net: nn.Module, x: Tensor, taps: str = "conv") -> tuple[Tensor, list[Tensor]]:
    """Embedding and style taps of a ConvNet in one forward pass.

    `conv`: each block's convolution output. This is where a sample's style shows: an instance-norm ConvNet
    normalises every channel of every sample to mean 0 and std 1 right after, so at its norm outputs the
    per-sample moments are the same for any image. `post_relu` / `pre_relu`: DDM's taps, as its `style_tap`
    option names them (each block's norm output after its ReLU, what DDM matches by default, or before it),
    where only what the norm (and the ReLU) keep of a sample's style shows. `norm` is the old name of post_relu.
    """
    taps = TAP_ALIASES.get(taps, taps)
    if taps in ("pre_relu", "post_relu"):
        if not hasattr(net, "embed_and_taps"):
            raise UsageError(f"{type(net).__name__} has no style taps (embed_and_taps); diagnose with a ConvNet")
        emb, found = net.embed_and_taps(x, taps)
        return emb, list(found)
    if taps != "conv":
        raise UsageError(f"taps {taps!r}: choose one of {', '.join(TAPS)}")
    convs = getattr(net, "convs", None)
    if not isinstance(convs, nn.ModuleList):
        raise UsageError(f"{type(net).__name__} has no per-block convolutions (convs); diagnose with a ConvNet")
    found: list[Tensor] = []
    hooks = [conv.register_forward_hook(lambda _m, _i, out: found.append(out)) for conv in convs]
    try:
        emb = net.embed(x)
    finally:
        for hook in hooks:
            hook.remove()
    return emb, found


def features(net: nn.Module, images: Tensor, batch_size: int, taps: str = "conv") -> tuple[Tensor, StyleSums]:
    """Embeddings (N, D) and style sums of `images`, in chunks (the taps of a large batch are big)."""
    embeddings, style = [], empty_style()
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            emb, found = embed_and_style_taps(net, images[start:start + batch_size], taps)
            embeddings.append(emb.double().cpu())
            style = style + StyleSums.of(found)
    return torch.cat(embeddings), style


def measure(net: nn.Module, images: Tensor, reference: StyleSums, k: int, batch_size: int,
            taps: str = "conv") -> dict[str, float | None]:
    """Style gap to the reference statistics and diversity of one class's images, in one network."""
    embeddings, style = features(net, images, batch_size, taps)
    return {**style_gap(reference, style), **diversity(embeddings, k)}


# ----------------------------------------------------------------------------------------------- records
@dataclass
class DiagnoseConfig:
    seeds: int = 3  # freshly initialised networks
    k: int = 2  # neighbours of the k-NN distance
    real_per_class: int = 500  # real images per class for the real statistics (all if fewer)
    network: str = "convnet"  # a ConvNet variant (style taps)
    width: int | None = None  # ConvNet width; None: the network's default (128)
    taps: str = "conv"  # where style is measured: "conv" outputs, or DDM's taps ("post_relu", "pre_relu")
    seed: int = 0  # network seeds and real draws derive from it
    device: str = "auto"
    data_dir: str | None = None
    batch_size: int = 256

    def validate(self) -> None:
        check_seed(self.seed)
        if self.seeds < 1:
            raise UsageError(f"--seeds {self.seeds}: use at least 1 network")
        if self.k < 1:
            raise UsageError(f"--k {self.k}: use at least 1 neighbour")
        if self.real_per_class < 1:
            raise UsageError(f"--real {self.real_per_class}: use at least 1 real image per class")
        if TAP_ALIASES.get(self.taps, self.taps) not in TAPS:
            raise UsageError(f"--taps {self.taps!r}: choose one of {', '.join(TAPS)}")
        if self.width is not None and self.width < 1:
            raise UsageError(f"--width {self.width}: use at least 1 channel")
        check_width(self.network, self.width)
        if self.batch_size < 1:
            raise UsageError(f"batch size {self.batch_size}: use at least 1")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise UsageError(f"--data-dir {self.data_dir}: no such folder; create it or point to your data")


@dataclass
class CondensedSet:
    label: str  # "set 0" (static) or "order 0" (continual memory)
    images: Tensor
    labels: Tensor


def condensed_sets(record: dict[str, Any], record_path: Path) -> list[CondensedSet]:
    """The synthetic sets of a static record, or the final memory of each order of a continual record."""
    kind = record.get("kind", "continual")
    if kind == "static":
        entries = [(f"set {s['set']}", s.get("synthetic_file")) for s in record.get("sets", [])]
    else:
        entries = [(f"order {o['order']}", o.get("memory_file")) for o in record.get("orders", [])]
    entries = [(label, file) for label, file in entries if file]
    if not entries:
        raise UsageError(f"{record_path}: the record has no saved condensed set yet "
                         f"({'no finished set' if kind == 'static' else 'no finished order'})")
    out = []
    for label, file in entries:
        path = record_path.parent / file
        try:
            state = load_tensor_file(path)
        except FileNotFoundError:
            raise UsageError(f"{path}: the {label} tensors named by {record_path.name} are missing") from None
        except (OSError, UnreadableTensorFile) as exc:  # a damaged or foreign file
            raise UsageError(f"{path}: cannot read the {label} tensors ({exc})") from None
        if not isinstance(state, dict) or "images" not in state or "labels" not in state:
            raise UsageError(f"{path}: expected a dict with 'images' and 'labels'")
        out.append(CondensedSet(label, state["images"].float(), state["labels"].long()))
    return out


def record_label(record: dict[str, Any]) -> dict[str, Any]:
    c = record.get("config", {})
    return {"run_id": record.get("run_id"), "kind": record.get("kind", "continual"),
            "condenser": c.get("condenser"), "dataset": c.get("dataset"),
            "ipc": c.get("ipc") if record.get("kind") == "static" else c.get("memory")}


def _class_generator(seed: int, c: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, c, 0x5EED]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)
    return torch.Generator().manual_seed(int(state))


def network_seeds(seed: int, count: int) -> list[int]:
    from clbench.core.seeding import derive_seed

    return [derive_seed(seed, i, 0, "network") for i in range(count)]


class RealPool:
    """The real images of each class, drawn once: a reference sample and, per count, a random subset."""

    def __init__(self, images: Tensor, labels: Tensor, real_per_class: int, seed: int):
        self.images, self.labels = images, labels
        self.real_per_class, self.seed = real_per_class, seed
        self._index = {int(c): torch.nonzero(labels == c).flatten().cpu() for c in labels.unique().tolist()}

    def _draw(self, c: int) -> tuple[torch.Generator, Tensor]:
        if c not in self._index:
            raise UsageError(f"class {c} of the condensed set has no real training images")
        return _class_generator(self.seed, c), self._index[c]

    def reference(self, c: int) -> Tensor:
        gen, idx = self._draw(c)
        take = torch.randperm(idx.numel(), generator=gen)[: self.real_per_class]
        return self.images[idx[take].to(self.images.device)]

    def subset(self, c: int, n: int) -> Tensor:
        """n distinct real images of class c (all of them if it has fewer), drawn after the reference."""
        gen, idx = self._draw(c)
        torch.randperm(idx.numel(), generator=gen)  # the reference's draw
        take = torch.randperm(idx.numel(), generator=gen)[:n]
        return self.images[idx[take].to(self.images.device)]


ProgressFn = Callable[[int, int, str], None]


def diagnose_sets(sets: list[CondensedSet], pool: RealPool, make_network: Callable[[int], nn.Module],
                  seeds: list[int], k: int, batch_size: int, device: torch.device, taps: str = "conv",
                  progress: ProgressFn | None = None) -> list[dict[str, Any]]:
    """Per set and class: the metrics of the synthetic images and of a real subset of the same count, each
    averaged over the networks."""
    per: dict[tuple[int, int], dict[str, list[dict]]] = {}
    total, done = len(seeds) * len(sets), 0
    for seed in seeds:
        net = make_network(seed).eval()
        references: dict[int, StyleSums] = {}
        real_cache: dict[tuple[int, int], dict] = {}
        for s, cs in enumerate(sets):
            for c in cs.labels.unique().tolist():
                if c not in references:
                    references[c] = features(net, pool.reference(c), batch_size, taps)[1]
                syn = cs.images[cs.labels == c].to(device)
                n = syn.shape[0]
                if (c, n) not in real_cache:
                    real_cache[(c, n)] = measure(net, pool.subset(c, n), references[c], k, batch_size, taps)
                slot = per.setdefault((s, c), {"synthetic": [], "real": [], "n": n})
                slot["synthetic"].append(measure(net, syn, references[c], k, batch_size, taps))
                slot["real"].append(real_cache[(c, n)])
            done += 1
            if progress is not None:
                progress(done, total, cs.label)
    out = []
    for s, cs in enumerate(sets):
        classes = {}
        for c in cs.labels.unique().tolist():
            slot = per[(s, c)]
            classes[str(c)] = {"n": slot["n"], **{side: {m: mean_of([r[m] for r in slot[side]]) for m in METRICS}
                                                   for side in ("synthetic", "real")}}
        out.append({"label": cs.label, "classes": classes})
    return out


def summarise_diagnosis(sets: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over sets and classes of every metric, for the synthetic and the real side, and their ratios."""
    rows = [cls for s in sets for cls in s["classes"].values()]
    synthetic = {m: mean_of([r["synthetic"][m] for r in rows]) for m in METRICS}
    real = {m: mean_of([r["real"][m] for r in rows]) for m in METRICS}
    return {"synthetic": synthetic, "real": real, "ratio": {m: ratio(synthetic[m], real[m]) for m in METRICS},
            "sets": len(sets), "classes": len({c for s in sets for c in s["classes"]})}


def diagnose(paths: list[str | Path], config: DiagnoseConfig, progress: ProgressFn | None = None) -> dict[str, Any]:
    """The diagnosis of every record in `paths` (the same networks and real draws for all, so that records
    of one dataset are compared on equal terms)."""
    from clbench.data.datasets import load_dataset
    from clbench.nets.networks import build_network
    from clbench.protocol.resolve import resolve_device
    from clbench.records.record import load_record
    from clbench.records.writer import document_header

    config.validate()
    if not paths:
        raise UsageError("give at least one record")
    device = resolve_device(config.device)
    seeds = network_seeds(config.seed, config.seeds)
    loaded = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"{path}: no such record file")
        record = load_record(path)
        loaded.append((path, record, condensed_sets(record, path)))
    pools: dict[str, tuple[Any, RealPool]] = {}
    results = []
    for path, record, sets in loaded:
        name = record["config"]["dataset"]
        if name not in pools:
            ds = load_dataset(name, config.data_dir)
            images, labels = ds.normalised("train", device)
            pools[name] = (ds, RealPool(images, labels, config.real_per_class, config.seed))
        ds, pool = pools[name]
        for cs in sets:
            if tuple(cs.images.shape[1:]) != (ds.channels, ds.image_size, ds.image_size):
                raise UsageError(f"{path}: {cs.label} has images of shape {tuple(cs.images.shape[1:])}, "
                                 f"but {name} images are {(ds.channels, ds.image_size, ds.image_size)}")

        def make_network(seed: int, ds=ds) -> nn.Module:
            return build_network(config.network, ds.channels, ds.num_classes, ds.image_size, seed=seed,
                                 device=device, width=config.width)

        start = time.perf_counter()
        report = (lambda done, total, label, p=path: progress(done, total, f"{p.name} {label}")) \
            if progress is not None else None
        per_set = diagnose_sets(sets, pool, make_network, seeds, config.k, config.batch_size, device, config.taps,
                                report)
        results.append({"record": str(path), **record_label(record), "sets": per_set,
                        "summary": summarise_diagnosis(per_set), "seconds": time.perf_counter() - start})
    header = document_header(SCHEMA, SCHEMA_VERSION,
                             {**dataclasses.asdict(config), "device": str(device), "network_seeds": seeds}, str(device))
    return {**header, "records": results}
