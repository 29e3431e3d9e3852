"""The networks condensers embed with and evaluation trains: ConvNet and the cross-architecture nets.

ConvNet follows docs/methods.md; AlexNet, VGG-11 and ResNet-18 are the small-image variants of the
dataset-condensation papers (Zhao & Bilen), made to work at 28, 32 and 64 px with 1 or 3 channels.
Every network has `embed(x)`, the flattened features the classifier reads; ConvNet also exposes the
style taps (each block's normalised activations, after or before the ReLU) that DDM matches. `NETWORKS`
names them all (a builder per name); `build_network` is the one way to make one.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clbench.core.errors import UsageError
from clbench.core.registry import Registry

NORMS = ("instance", "batch", "layer", "group", "none")
STYLE_TAPS = ("post_relu", "pre_relu")  # where ConvNet.embed_and_taps reads each block


def make_norm(kind: str, channels: int) -> nn.Module:
    """The normalisation layer named `kind` for `channels` feature maps (instance norm = one group per channel)."""
    if kind == "instance":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(4, channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise UsageError(f"unknown norm {kind!r}; known: {', '.join(NORMS)}")


def _first_padding(image_size: int, usual: int, extra: int) -> int:
    """28 px inputs get `extra` padding in the first conv, so the net sees them as 32 px (as the papers do)."""
    return usual + extra if image_size == 28 else usual


def _check_spatial(name: str, image_size: int, size: int) -> None:
    if size < 1:
        raise UsageError(f"{name} cannot take {image_size}x{image_size} images: its last feature map would be empty")


def default_convnet_depth(image_size: int) -> int:
    """3 blocks at 32 px (and 28, padded to act as 32), one more per doubling; fewer for small images, so that
    the last block's instance norm still sees a 4x4 map: on a 2x2 map it erases each channel's level, and the
    network barely trains (8x8 digits at 3 blocks: training loss ~2.2 after 60 epochs, 47-66% test; at 2
    blocks 95-96%)."""
    effective = 32 if image_size == 28 else image_size
    if effective < 2:
        raise UsageError(f"ConvNet needs images of at least 2x2 pixels, got {image_size}x{image_size}")
    by_size = 3 + max(0, round(math.log2(effective / 32)))
    return max(1, min(by_size, int(math.floor(math.log2(effective))) - 1))


def _pair_average(n: int, x: Tensor) -> Tensor:
    """(2n, n) with 0.5 at [2i, i] and [2i+1, i]: a row of 2n values times it gives the n averages of pairs."""
    i = torch.arange(2 * n, device=x.device)
    m = torch.zeros(2 * n, n, dtype=x.dtype, device=x.device)
    m[i, i // 2] = 0.5
    return m


def avg_pool_2x2(x: Tensor) -> Tensor:
    """`F.avg_pool2d(x, 2)` (odd sizes floored). On a CPU it is two plain matrix products, first over pairs of
    columns, then over pairs of rows (a row pair is one contiguous row of 2 * w values). That measured 1.3-1.9x
    faster forward and backward than avg_pool2d, with the ReLU before it (benchmarks/README.md); the values
    agree to float rounding."""
    if x.device.type != "cpu":
        return F.avg_pool2d(x, 2)
    n, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    if w % 2:
        x = x[..., : 2 * w2]
    cols = x.reshape(-1, 2 * w2) @ _pair_average(w2, x)  # (n * c * h, w2)
    # (2 * w2, w2): a row [a, b] times it gives (a + b) / 2
    stacked = torch.cat([torch.eye(w2, dtype=x.dtype, device=x.device)] * 2) * 0.5
    rows = cols.view(n, c, h, w2)[:, :, : 2 * h2].reshape(-1, 2 * w2) @ stacked
    return rows.view(n, c, h2, w2)


class ConvNet(nn.Module):
    """`depth` blocks of Conv3x3(width) -> norm -> ReLU -> AvgPool2d(2), then one linear classifier."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        width: int = 128,
        depth: int | None = None,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        if depth is None:
            depth = default_convnet_depth(image_size)
        if depth < 1:
            raise UsageError(f"ConvNet depth must be >= 1, got {depth}")
        self.depth = depth
        self.width = width
        self.norm_kind = norm
        size = image_size + 4 if image_size == 28 else image_size
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for d in range(depth):
            pad = _first_padding(image_size, 1, 2) if d == 0 else 1
            self.convs.append(nn.Conv2d(in_channels if d == 0 else width, width, 3, padding=pad))
            self.norms.append(make_norm(norm, width))
            size //= 2
        _check_spatial(f"ConvNet of depth {depth}", image_size, size)
        self.feature_shape = (width, size, size)
        self.embed_dim = width * size * size
        self.classifier = nn.Linear(self.embed_dim, num_classes)

    def _features(self, x: Tensor, taps: list[Tensor] | None, tap: str = "post_relu") -> Tensor:
        for conv, norm in zip(self.convs, self.norms):
            normed = norm(conv(x))
            active = F.relu(normed)  # not in place: a pre-ReLU tap must keep its values
            if taps is not None:
                taps.append(active if tap == "post_relu" else normed)
            x = avg_pool_2x2(active)
        return x.flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self._features(x, None))

    def embed(self, x: Tensor) -> Tensor:
        """The flattened output of the last block: what DM's mean embeddings compare."""
        return self._features(x, None)

    def embed_and_taps(self, x: Tensor, tap: str = "post_relu") -> tuple[Tensor, list[Tensor]]:
        """Embedding and style taps from one forward pass: each block's `relu(norm(conv(x)))` (`post_relu`, what
        the reference DDM code matches: it stores the norm output and then ReLUs that tensor in place), or the
        norm output itself (`pre_relu`)."""
        if tap not in STYLE_TAPS:
            raise UsageError(f"unknown style tap {tap!r}; known: {', '.join(STYLE_TAPS)}")
        taps: list[Tensor] = []
        return self._features(x, taps, tap), taps


class AlexNet(nn.Module):
    """Five convs (128, 192, 256, 192, 192), three 2x2 max-pools, one linear classifier.

    Instance norm after each conv by default, as docs/methods.md asks of the cross-architecture nets; `alexnet_bn`
    has BatchNorm, and `alexnet_nonorm` none, like the reference code's AlexNet (which barely trains in a
    short recipe: 13% on Fashion-MNIST in 50 epochs).
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int, norm: str = "instance") -> None:
        super().__init__()
        pad = _first_padding(image_size, 2, 2)
        spec = [(in_channels, 128, 5, pad, True), (128, 192, 5, 2, True), (192, 256, 3, 1, False),
                (256, 192, 3, 1, False), (192, 192, 3, 1, True)]
        layers: list[nn.Module] = []
        size = image_size
        for cin, cout, k, p, pool in spec:
            layers += [nn.Conv2d(cin, cout, k, padding=p), make_norm(norm, cout), nn.ReLU(inplace=True)]
            size = size + 2 * p - k + 1
            if pool:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        _check_spatial("AlexNet", image_size, size)
        self.features = nn.Sequential(*layers)
        self.embed_dim = 192 * size * size
        self.classifier = nn.Linear(self.embed_dim, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))


VGG11_CFG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG11(nn.Module):
    """VGG-11 with 3x3 convs, a norm after each, five 2x2 max-pools and one linear classifier."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int, norm: str = "instance") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin, size = in_channels, image_size
        for i, item in enumerate(VGG11_CFG):
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                size //= 2
                continue
            pad = _first_padding(image_size, 1, 2) if i == 0 else 1
            layers += [nn.Conv2d(cin, int(item), 3, padding=pad), make_norm(norm, int(item)), nn.ReLU(inplace=True)]
            size += 2 * pad - 2
            cin = int(item)
        _check_spatial("VGG-11", image_size, size)
        self.features = nn.Sequential(*layers)
        self.embed_dim = cin * size * size
        self.classifier = nn.Linear(self.embed_dim, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (1x1 conv + norm when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm1 = make_norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = make_norm(norm, cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), make_norm(norm, cout))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for small images: 3x3 stride-1 stem, BasicBlocks [2, 2, 2, 2], global average pool.

    The reference pools with a fixed 4x4 window (1x1 left at 28/32 px); a global pool gives the same there
    and keeps the classifier at 512 inputs at any size.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int, norm: str = "instance") -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, padding=1, bias=False), make_norm(norm, 64), nn.ReLU())
        blocks: list[nn.Module] = []
        cin = 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(cin, cout, stride, norm), BasicBlock(cout, cout, 1, norm)]
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.embed_dim = 512
        self.classifier = nn.Linear(512, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))


_Builder = Callable[[int, int, int, "int | None"], nn.Module]


def _convnet(norm: str) -> _Builder:
    def build(c: int, k: int, s: int, width: int | None) -> nn.Module:
        return ConvNet(c, k, s, width=128 if width is None else width, norm=norm)

    build.takes_width = True  # type: ignore[attr-defined]
    return build


def _fixed(cls: type[nn.Module], norm: str) -> _Builder:
    def build(c: int, k: int, s: int, width: int | None) -> nn.Module:
        return cls(c, k, s, norm=norm)  # no width to set: it keeps its own (a run's width is the ConvNets')

    return build


# name -> builder(in_channels, num_classes, image_size, width); the names records and the command line use.
NETWORKS: Registry[_Builder] = Registry("network", paths=False)
NETWORKS.add("convnet", _convnet("instance"))
NETWORKS.add("convnet_bn", _convnet("batch"))
NETWORKS.add("convnet_ln", _convnet("layer"))
NETWORKS.add("convnet_gn", _convnet("group"))
NETWORKS.add("convnet_nonorm", _convnet("none"))
NETWORKS.add("alexnet", _fixed(AlexNet, "instance"))
NETWORKS.add("alexnet_bn", _fixed(AlexNet, "batch"))
NETWORKS.add("alexnet_nonorm", _fixed(AlexNet, "none"))
NETWORKS.add("vgg11", _fixed(VGG11, "instance"))
NETWORKS.add("vgg11_bn", _fixed(VGG11, "batch"))
NETWORKS.add("resnet18", _fixed(ResNet18, "instance"))
NETWORKS.add("resnet18_bn", _fixed(ResNet18, "batch"))
NETWORK_NAMES: tuple[str, ...] = tuple(NETWORKS.names())


def takes_width(name: str) -> bool:
    """Whether network `name` is built with a width (the ConvNets): the builder says, not the name."""
    return getattr(NETWORKS.get(name, where="--network"), "takes_width", False)


def check_width(network: str, width: int | None, where: str = "--width") -> None:
    """A width asked for a network that has none is the user's mistake (build_network would ignore it): one
    UsageError. Every command that takes both checks here."""
    if width is not None and not takes_width(network):
        raise UsageError(f"{where} applies to ConvNet only, not to --network {network}")


def build_network(
    name: str,
    in_channels: int,
    num_classes: int,
    image_size: int,
    *,
    seed: int | None = None,
    device: torch.device | str | None = None,
    width: int | None = None,
) -> nn.Module:
    """A fresh network by name; with `seed`, its default init is reproducible and the global RNG untouched.

    `width` is the ConvNet width (the CPU-sized profiles use narrow nets); a network built without one (AlexNet,
    VGG, ResNet) keeps its own, as timm's `create_model` drops options a model does not take: the builder
    decides, so callers pass the run's width for every network. (Refusing `--width` for such a `--network` is
    the command line's check, clbench.protocol.prepare.)
    """
    builder = NETWORKS.get(name)
    if seed is None:
        net = builder(in_channels, num_classes, image_size, width)
    else:
        # Only the CPU generator is seeded (modules are initialised on the CPU), so CUDA streams stay as they were.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            net = builder(in_channels, num_classes, image_size, width)
    return net.to(device) if device is not None else net


def set_norm(net: nn.Module, kind: str) -> nn.Module:
    """A ConvNet's norm layers replaced, in place, by fresh ones of `kind` (their initialisation draws nothing,
    so the convolutions keep the weights their seed gave them)."""
    if not isinstance(net, ConvNet):
        raise UsageError(f"only a ConvNet's norm can be changed, not a {type(net).__name__}'s")
    device = next(net.parameters()).device
    net.norms = nn.ModuleList(make_norm(kind, net.width) for _ in net.norms).to(device)
    net.norm_kind = kind
    return net


def samples_are_independent(net: nn.Module) -> bool:
    """True when no layer mixes samples (no BatchNorm), so several classes may share one forward pass exactly."""
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
