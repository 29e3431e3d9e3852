"""Differentiable Siamese augmentation (DSA): sample the parameters once, then apply pure ops.

As in torchvision v2, randomness is drawn first (`DSA.sample`, from an explicit generator) and applied by
pure functions (`brightness`, `crop`, ...). Siamese mode is then simply "the same parameters for every sample
of a group": the real and synthetic images of one class, given one group id, get the same op and the same
parameters, with no global reseeding. Every op is differentiable with respect to the images.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from clbench.core.errors import UsageError

DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"
TOKENS = ("color", "crop", "cutout", "flip", "scale", "rotate")

BRIGHTNESS = 1.0
SATURATION = 2.0
CONTRAST = 0.5
CROP_RATIO = 0.125
CUTOUT_RATIO = 0.5
FLIP_PROB = 0.5
SCALE_RATIO = 1.2
ROTATE_DEGREES = 15.0

# The help of every `dsa_align_corners` option (the training recipe's and the DSA-family condensers').
ALIGN_CORNERS_HELP = ("the align_corners argument of DSA's scale and rotate: false calls PyTorch as the reference "
                      "code does on PyTorch >= 1.3 (the paper profile); true is clbench's call until December 2026, "
                      "kept by the quick profile so that its committed records replay bit for bit. About the "
                      "centre the two grids are the same mapping: they differ by float rounding only "
                      "(docs/methods.md)")


def _per_sample(v: Tensor, x: Tensor) -> Tensor:
    return v.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


# ----------------------------------------------------------------------------------------------- pure ops


def brightness(x: Tensor, u: Tensor, strength: float = BRIGHTNESS) -> Tensor:
    """`x + (u - 0.5) * strength`, u ~ U[0, 1) per sample."""
    return x + (_per_sample(u, x) - 0.5) * strength


def saturation(x: Tensor, u: Tensor, strength: float = SATURATION) -> Tensor:
    """Scale each pixel's deviation from its channel mean by `u * strength`."""
    m = x.mean(dim=1, keepdim=True)
    return (x - m) * (_per_sample(u, x) * strength) + m


def contrast(x: Tensor, u: Tensor, offset: float = CONTRAST) -> Tensor:
    """Scale the deviation from the per-sample mean (over C, H, W) by `u + offset`."""
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - m) * (_per_sample(u, x) + offset) + m


def crop_shift(size: int, ratio: float = CROP_RATIO) -> int:
    """The largest translation of `crop`: `int(size * ratio + 0.5)` (4 px at 32 px)."""
    return int(size * ratio + 0.5)


def crop(x: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """Integer translation with zero fill: `out[n, :, i, j] = x[n, :, i + dy[n], j + dx[n]]` (0 outside).

    Done with two gathers on a 1-pixel zero-padded copy: out-of-range indices are clamped onto the padding.
    """
    n, c, h, w = x.shape
    pad = F.pad(x, (1, 1, 1, 1))
    dy = dy.to(device=x.device, dtype=torch.long).view(n, 1)
    dx = dx.to(device=x.device, dtype=torch.long).view(n, 1)
    rows = (torch.arange(h, device=x.device) + dy + 1).clamp(0, h + 1)  # (n, h)
    cols = (torch.arange(w, device=x.device) + dx + 1).clamp(0, w + 1)  # (n, w)
    out = pad.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w + 2))
    return out.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))


def cutout_size(size: int, ratio: float = CUTOUT_RATIO) -> int:
    """The side of the cutout square: `int(size * ratio + 0.5)` (16 px at 32 px)."""
    return int(size * ratio + 0.5)


def cutout(x: Tensor, cy: Tensor, cx: Tensor, size: int | None = None) -> Tensor:
    """Zero the square of side `size` whose rows start at `cy - size // 2` (same for columns), cut at the border."""
    n, _, h, w = x.shape
    sh = cutout_size(h) if size is None else size
    sw = cutout_size(w) if size is None else size
    y0 = cy.to(device=x.device, dtype=torch.long).view(n, 1) - sh // 2
    x0 = cx.to(device=x.device, dtype=torch.long).view(n, 1) - sw // 2
    r = torch.arange(h, device=x.device)
    q = torch.arange(w, device=x.device)
    in_rows = (r >= y0) & (r < y0 + sh)  # (n, h)
    in_cols = (q >= x0) & (q < x0 + sw)  # (n, w)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[:, None].to(x.dtype)


def flip(x: Tensor, do_flip: Tensor) -> Tensor:
    """Mirror left-right the samples where `do_flip` is true."""
    return torch.where(do_flip.to(x.device).view(-1, 1, 1, 1), x.flip(3), x)


def _affine(x: Tensor, a: Tensor, b: Tensor, c: Tensor, d: Tensor, align_corners: bool) -> Tensor:
    """Sample x on the grid `[[a, b, 0], [c, d, 0]]` (output -> input coordinates, zeros outside).

    `align_corners` is PyTorch's: True puts -1 and 1 on the centres of the corner pixels, False on their outer
    edges. The reference DSA code passes no value: True on the PyTorch 1.2 it was written for, False on every
    release since 1.3. Because affine_grid and grid_sample are given the same value and theta has no
    translation, output pixel i reads input position s * (i - c) + c (c the centre, in pixels) either way: the
    two settings differ by float rounding only (~1e-5 on normalised images; tests/test_reference_parity.py).
    """
    zero = torch.zeros_like(a)
    theta = torch.stack([torch.stack([a, b, zero], 1), torch.stack([c, d, zero], 1)], 1)
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=align_corners)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=align_corners)


def scale(x: Tensor, sx: Tensor, sy: Tensor, align_corners: bool = False) -> Tensor:
    """Rescale about the centre: input coordinates are the output ones times (sx, sy)."""
    zero = torch.zeros_like(sx)
    return _affine(x, sx, zero, zero, sy, align_corners)


def rotate(x: Tensor, angle: Tensor, align_corners: bool = False) -> Tensor:
    """Rotate about the centre by `angle` radians (pi/2 equals `torch.rot90(x, 1, (2, 3))` with
    align_corners=True, and on square images with False too)."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    return _affine(x, cos, -sin, sin, cos, align_corners)


# ----------------------------------------------------------------------------------------------- parameters


@dataclass
class DSAParams:
    """One draw for n samples: each sample's op (an index into the strategy's tokens) and every op's parameters.

    Every op's parameters are drawn (cheap), and each sample uses those of its token. Crop and cutout
    positions are stored as uniforms in [0, 1) and made integers at apply time, when the image size is known.
    """

    token: Tensor  # (n,) long, index into DSA.tokens
    brightness: Tensor  # (n,) U[0, 1)
    saturation: Tensor  # (n,) U[0, 1)
    contrast: Tensor  # (n,) U[0, 1)
    crop_y: Tensor  # (n,) U[0, 1) -> translation in [-s, s]
    crop_x: Tensor
    cutout_y: Tensor  # (n,) U[0, 1) -> centre
    cutout_x: Tensor
    flip: Tensor  # (n,) bool
    scale_x: Tensor  # (n,) U[1/1.2, 1.2]
    scale_y: Tensor
    rotate: Tensor  # (n,) radians, U[-15, 15] degrees

    def __len__(self) -> int:
        return self.token.shape[0]

    def select(self, index: Tensor) -> DSAParams:
        """The parameters of the samples at `index`."""
        return DSAParams(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})

    def to(self, device: torch.device | str) -> DSAParams:
        return DSAParams(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})


def _uniform_int(u: Tensor, low: int, count: int) -> Tensor:
    """Map U[0, 1) to integers low .. low + count - 1 uniformly (clamped against float rounding at 1)."""
    return (u * count).floor().long().clamp(0, count - 1) + low


# ----------------------------------------------------------------------------------------------- DSA


class DSA:
    """DSA with one op per group, drawn uniformly from the strategy's tokens (`color` = three ops in turn).

    `align_corners` is the resampling grid of scale and rotate (see `_affine`); False is what the reference
    computes on a current PyTorch.
    """

    def __init__(self, strategy: str = DEFAULT_STRATEGY, align_corners: bool = False) -> None:
        self.strategy = strategy
        self.align_corners = align_corners
        if strategy.strip().lower() in ("", "none"):
            self.tokens: tuple[str, ...] = ()
        else:
            self.tokens = tuple(strategy.split("_"))
            unknown = [t for t in self.tokens if t not in TOKENS]
            if unknown:
                raise UsageError(
                    f"unknown DSA token {unknown[0]!r} in strategy {strategy!r}; known: {', '.join(TOKENS)} or 'none'"
                )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.strategy!r}, align_corners={self.align_corners})"

    @property
    def is_identity(self) -> bool:
        return not self.tokens

    def sample(self, groups: Tensor, generator: torch.Generator, share_params: bool) -> DSAParams:
        """One token per group; parameters one set per group (`share_params`, Siamese) or one per sample.

        Everything is drawn from `generator`, on its device, with no loop over samples.
        """
        device = generator.device
        groups = groups.to(device).reshape(-1)
        n = groups.shape[0]
        unique, inverse = torch.unique(groups, return_inverse=True)
        num_groups = unique.shape[0]
        num_tokens = max(len(self.tokens), 1)
        token = torch.randint(0, num_tokens, (num_groups,), generator=generator, device=device)[inverse]

        def draw() -> Tensor:
            if share_params:
                return torch.rand(num_groups, generator=generator, device=device)[inverse]
            return torch.rand(n, generator=generator, device=device)

        low = 1.0 / SCALE_RATIO
        return DSAParams(
            token=token,
            brightness=draw(),
            saturation=draw(),
            contrast=draw(),
            crop_y=draw(),
            crop_x=draw(),
            cutout_y=draw(),
            cutout_x=draw(),
            flip=draw() < FLIP_PROB,
            scale_x=draw() * (SCALE_RATIO - low) + low,
            scale_y=draw() * (SCALE_RATIO - low) + low,
            rotate=(draw() - 0.5) * (2.0 * math.radians(ROTATE_DEGREES)),
        )

    def _apply_token(self, name: str, x: Tensor, p: DSAParams) -> Tensor:
        h, w = x.shape[2], x.shape[3]
        if name == "color":
            x = brightness(x, p.brightness)
            x = saturation(x, p.saturation)
            return contrast(x, p.contrast)
        if name == "crop":
            sy, sx = crop_shift(h), crop_shift(w)
            return crop(x, _uniform_int(p.crop_y, -sy, 2 * sy + 1), _uniform_int(p.crop_x, -sx, 2 * sx + 1))
        if name == "cutout":
            # Centres range over 0..H-1, plus H for even sides, as in the reference.
            ch, cw = cutout_size(h), cutout_size(w)
            cy = _uniform_int(p.cutout_y, 0, h + 1 - ch % 2)
            cx = _uniform_int(p.cutout_x, 0, w + 1 - cw % 2)
            return cutout(x, cy, cx)
        if name == "flip":
            return flip(x, p.flip)
        if name == "scale":
            return scale(x, p.scale_x, p.scale_y, self.align_corners)
        if name == "rotate":
            return rotate(x, p.rotate, self.align_corners)
        raise AssertionError(name)

    def apply(self, x: Tensor, params: DSAParams) -> Tensor:
        """Each sample through its token's op with its parameters, batched per token kind."""
        if self.is_identity or x.shape[0] == 0:
            return x
        if len(params) != x.shape[0]:
            raise UsageError(f"DSA parameters for {len(params)} samples, but {x.shape[0]} images")
        params = params.to(x.device)
        counts = torch.bincount(params.token, minlength=len(self.tokens)).tolist()
        present = [k for k, c in enumerate(counts) if c > 0]
        if len(present) == 1:
            return self._apply_token(self.tokens[present[0]], x, params)
        order = torch.argsort(params.token, stable=True)
        parts, start = [], 0
        for k, c in enumerate(counts):
            if c:
                idx = order[start:start + c]
                parts.append(self._apply_token(self.tokens[k], x[idx], params.select(idx)))
                start += c
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.shape[0], device=order.device)
        return torch.cat(parts)[inverse]

    def siamese(self, x: Tensor, groups: Tensor, generator: torch.Generator) -> Tensor:
        """Condensation mode: all samples of a group share one op and one parameter set."""
        return self.apply(x, self.sample(groups, generator, share_params=True))

    def train_batch(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Training mode: one op for the batch, parameters per sample."""
        groups = torch.zeros(x.shape[0], dtype=torch.long, device=generator.device)
        return self.apply(x, self.sample(groups, generator, share_params=False))


class NoAugment(DSA):
    """The identity with DSA's interface; it draws nothing, so it leaves the generator's stream alone."""

    def __init__(self, strategy: str = "none", align_corners: bool = False) -> None:
        super().__init__("none")

    def sample(self, groups: Tensor, generator: torch.Generator, share_params: bool) -> DSAParams:
        n = groups.reshape(-1).shape[0]
        zeros = torch.zeros(n, device=generator.device)
        fields = {f.name: zeros for f in dataclasses.fields(DSAParams)}
        fields["token"] = torch.zeros(n, dtype=torch.long, device=generator.device)
        fields["flip"] = torch.zeros(n, dtype=torch.bool, device=generator.device)
        return DSAParams(**fields)

    def apply(self, x: Tensor, params: DSAParams) -> Tensor:
        return x


def make_augment(strategy: str | None, align_corners: bool = False) -> DSA:
    """`None`, '' or 'none' -> NoAugment; otherwise a DSA over the strategy's tokens."""
    if strategy is None or strategy.strip().lower() in ("", "none"):
        return NoAugment()
    return DSA(strategy, align_corners)
