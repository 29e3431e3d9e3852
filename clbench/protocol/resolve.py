"""The one resolve step every command goes through: names and `key=value` options -> the objects a run uses.

`resolve` turns what the user gave (device, profile, condenser and its options, training recipe, dataset,
networks) into a `Resolved`: the device, the profile (`auto` -> paper on CUDA, quick otherwise), the condenser
class with its checked options, the training recipe, the loaded dataset, and the networks, each built once on
the CPU so that a network that cannot take the dataset's image size fails here, before any work, as do
condenser options that cannot work on the dataset (`Condenser.check_data`). Bad input raises one UsageError
naming the option and the fix.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from clbench.core.errors import UsageError
from clbench.core.options import build_options
from clbench.protocol.profiles import CONVNET_WIDTH
from clbench.training.recipe import TrainRecipe


@dataclass
class Resolved:
    """What every command needs, resolved and checked."""

    device: torch.device
    profile: str  # paper or quick
    condenser_cls: type
    condenser_options: Any  # the options dataclass, or None for a condenser without options
    recipe: TrainRecipe
    dataset: Any  # clbench.data.datasets.ImageDataset
    width: int  # the width of every ConvNet of the run (build_network: the others keep their own)

    def new_condenser(self) -> Any:
        from clbench.condensers import new_condenser

        return new_condenser(self.condenser_cls, self.condenser_options)

    def condenser_options_dict(self) -> dict[str, Any]:
        options = self.condenser_options
        return dataclasses.asdict(options) if dataclasses.is_dataclass(options) else {}


class PreparedRun:
    """What a prepared run of any kind (continual, static) offers from its `resolved` part, by name."""

    resolved: Resolved

    @property
    def device(self) -> torch.device:
        return self.resolved.device

    @property
    def profile(self) -> str:
        return self.resolved.profile

    @property
    def recipe(self) -> TrainRecipe:
        return self.resolved.recipe

    @property
    def dataset(self) -> Any:
        return self.resolved.dataset

    @property
    def width(self) -> int:
        return self.resolved.width


def resolve(*, condenser: str, opt: dict[str, Any], train: dict[str, Any], dataset: str, data_dir: str | None,
            device: str, profile: str, network: str, width: int | None,
            eval_networks: tuple[str, ...] = (),
            train_defaults: dict[str, dict[str, Any]] | None = None) -> Resolved:
    """Resolve and check everything a run of any kind needs (see the module docstring). The plain values the
    configuration holds (profile name, width, data folder) are its `validate()`'s to check, before this.
    `train_defaults` (profile -> recipe values) are a protocol's own defaults, under the user's `train`."""
    from clbench.data.datasets import load_dataset

    torch_device = resolve_device(device)
    resolved_profile = resolve_profile(profile, torch_device)
    condenser_cls, options = condenser_and_options(condenser, opt, resolved_profile)
    recipe = train_recipe({**(train_defaults or {}).get(resolved_profile, {}), **train}, resolved_profile)
    data = load_dataset(dataset, data_dir)
    resolved = Resolved(torch_device, resolved_profile, condenser_cls, options, recipe, data,
                        width or CONVNET_WIDTH[resolved_profile])
    check_networks(resolved, (network, *eval_networks), {network: "--network"})
    check_condenser_data(resolved.new_condenser(), data, condenser)
    return resolved


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available here; use --device cpu")
    return device


def resolve_profile(profile: str, device: torch.device) -> str:
    if profile == "auto":
        return "paper" if device.type == "cuda" else "quick"
    return profile


def train_recipe(train: dict[str, Any], profile: str) -> TrainRecipe:
    """The evaluation recipe for `profile` with the `--train` overrides."""
    return build_options(TrainRecipe, train, profile, owner="the training recipe (--train)")


def condenser_and_options(name: str, opt: dict[str, Any], profile: str) -> tuple[type, Any]:
    """The condenser class and its options for `profile` with the `--opt` overrides (None if it has none)."""
    from clbench.condensers import condenser_options, get_condenser

    condenser_cls = get_condenser(name)
    return condenser_cls, condenser_options(condenser_cls, name, opt, profile)


def check_condenser_data(condenser: Any, data: Any, name: str) -> None:
    """The condenser's options against the dataset (`Condenser.check_data`: e.g. IDM's factor must divide the
    image size); `data` is the loaded dataset or, on a sweep's driver, its registry entry (both say channels,
    image_size, num_classes). A plugin without the hook accepts every dataset."""
    check = getattr(condenser, "check_data", None)
    if check is None:
        return
    try:
        check((data.channels, data.image_size, data.image_size), data.num_classes)
    except UsageError as exc:
        raise UsageError(f"condenser {name!r} on {data.name}: {exc}") from None


def check_unloaded(config: Any) -> None:
    """What `resolve` would refuse in a configuration (RunConfig or StaticConfig) that needs no dataset loaded:
    the condenser's options for each profile `auto` may become, their fit to the dataset's registry entry, the
    training recipe and the network's name. A sweep's driver runs it, so a typo fails there, not in a job."""
    from clbench.condensers import new_condenser
    from clbench.data.datasets import dataset_spec
    from clbench.nets.networks import NETWORKS

    for profile in ["paper", "quick"] if config.profile == "auto" else [config.profile]:
        condenser = new_condenser(*condenser_and_options(config.condenser, config.opt, profile))
        check_condenser_data(condenser, dataset_spec(config.dataset), config.condenser)
        train_recipe(config.train, profile)
    NETWORKS.check(config.network, where="network")


def check_networks(resolved: Resolved, names: tuple[str, ...], flags: dict[str, str]) -> None:
    """Build each network once on the CPU: an unknown name, or a net that cannot take the dataset's image
    size, fails now. `flags` names the option each network came from, for the message."""
    from clbench.nets.networks import NETWORKS, build_network

    ds = resolved.dataset
    for name in dict.fromkeys(names):
        NETWORKS.check(name, where=flags.get(name, "--eval-nets"))
        try:
            build_network(name, ds.channels, ds.num_classes, ds.image_size, seed=0, width=resolved.width)
        except UsageError as exc:
            flag = flags.get(name, "--eval-nets")
            raise UsageError(f"{flag} {name!r}: {ds.name} ({ds.image_size}x{ds.image_size} px): {exc}") from None
