"""How DDM's loss terms balance as the network changes: gradient norms of each term, per width and resolution.

DDM's objective is `L_DM + lambda * (alpha * L_MM + L_CM) + beta * L_ICD` with the paper's lambda = 1e4 and
beta = 10, set for a width-128 ConvNet on 32x32 images (a 2048-d embedding). This script measures, on real
images, the norm of the gradient of each UNWEIGHTED term with respect to the synthetic images, averaged over
fresh random networks, for several widths and image sizes. The ratio style / DM at the paper's setting is the
baseline; a rule for lambda must keep that ratio where the network differs. Printed: each term's gradient
norm, the ratio of each to the paper setting's, and the embedding size D (the `balance=embedding` rule
scales lambda and beta by D / 2048).

    .venv/bin/python benchmarks/ddm_balance.py --dataset fashion-mnist --nets 8
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clbench.data.datasets import load_dataset  # noqa: E402
from clbench.matching import losses  # noqa: E402
from clbench.nets.networks import build_network  # noqa: E402


def term_gradients(net, real, syn, k: int, tap: str) -> dict[str, float]:
    """Norm of d(term)/d(syn) for each DDM term, one class, one network."""
    with torch.no_grad():
        r_emb, r_taps = net.embed_and_taps(real, tap)
    out = {}
    for name in ("dm", "mm", "cm", "icd"):
        x = syn.clone().requires_grad_(True)
        s_emb, s_taps = net.embed_and_taps(x, tap)
        if name == "dm":
            loss = losses.dm_loss(r_emb, s_emb)
        elif name == "mm":
            loss = losses.layer_mean(losses.moments_loss, r_taps, s_taps)
        elif name == "cm":
            loss = losses.layer_mean(losses.correlation_loss, r_taps, s_taps)
        else:
            loss = losses.diversity_loss(s_emb, k)
        (grad,) = torch.autograd.grad(loss, x)
        out[name] = float(grad.norm())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--widths", default="32,64,128")
    ap.add_argument("--sizes", default="0", help="image sizes to resize to (0 = the dataset's own)")
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--nets", type=int, default=8, help="random networks (and classes) averaged over")
    ap.add_argument("--tap", default="post_relu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset(args.dataset)
    train_x, train_y = ds.normalised("train")
    gen = torch.Generator().manual_seed(0)
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for width in [int(w) for w in args.widths.split(",")]:
            per_term: dict[str, list[float]] = {t: [] for t in ("dm", "mm", "cm", "icd")}
            dim = 0
            for i in range(args.nets):
                c = i % ds.num_classes
                idx = torch.nonzero(train_y == c).flatten()
                pick = idx[torch.randperm(len(idx), generator=gen)[: 256 + args.ipc]]
                images = train_x[pick]
                if size:
                    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
                real, syn = images[: -args.ipc], images[-args.ipc:]
                net = build_network("convnet", images.shape[1], ds.num_classes, images.shape[-1], seed=1000 + i,
                                    width=width).train()
                for p in net.parameters():
                    p.requires_grad_(False)
                dim = net.embed_dim
                for t, v in term_gradients(net, real, syn, 2, args.tap).items():
                    per_term[t].append(v)
            rows.append((size or ds.image_size, width, dim, {t: statistics.median(v) for t, v in per_term.items()}))
    base = next((r for r in rows if r[2] == 2048), rows[-1])
    print(f"{args.dataset}, ipc {args.ipc}, taps {args.tap}, median over {args.nets} nets; "
          f"ratios to size {base[0]} width {base[1]} (D={base[2]})")
    print(f"{'size':>4} {'width':>5} {'D':>5} | {'|g_dm|':>9} {'|g_mm|':>9} {'|g_cm|':>9} {'|g_icd|':>9} | "
          f"{'dm/base':>8} {'mm/base':>8} {'cm/base':>8} {'icd/base':>8} | {'D/2048':>6}")
    for size, width, dim, g in rows:
        ratio = {t: g[t] / base[3][t] if base[3][t] else float('nan') for t in g}
        print(f"{size:>4} {width:>5} {dim:>5} | {g['dm']:9.3g} {g['mm']:9.3g} {g['cm']:9.3g} {g['icd']:9.3g} | "
              f"{ratio['dm']:8.3f} {ratio['mm']:8.3f} {ratio['cm']:8.3f} {ratio['icd']:8.3f} | {dim / 2048:6.3f}")


if __name__ == "__main__":
    main()
