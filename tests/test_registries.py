"""Every named thing (networks, datasets, sweep launchers) is one Registry entry, and a misspelt name gets the
registry's one-line answer: the closest names, then all of them."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from clbench.core.errors import UsageError
from clbench.core.registry import Registry
from clbench.data import datasets as data
from clbench.data.datasets import DATASET_NAMES, DATASETS, DatasetSpec, load_dataset
from clbench.nets.networks import NETWORK_NAMES, NETWORKS, build_network
from clbench.sweep import spec as sw
from clbench.sweep.launchers import (
    LAUNCHERS,
    Launcher,
    LocalLauncher,
    RayLauncher,
    SlurmLauncher,
    engine_options,
    make_launcher,
)


# -- the registry itself ---------------------------------------------------------------------------------
def test_registry_without_paths_refuses_module_paths_and_says_nothing_of_them():
    reg = Registry("widget", paths=False)
    reg.add("sprocket", 1)
    with pytest.raises(UsageError) as info:
        reg.get("collections:OrderedDict")
    message = str(info.value)
    assert message.startswith("unknown widget 'collections:OrderedDict'.") and "module.path" not in message
    assert "collections:OrderedDict" not in reg


def test_registry_normalises_names_and_prefixes_where():
    reg = Registry("widget", normalise=lambda n: n.strip().lower())
    reg.add("sprocket", 1)
    assert reg.get(" SPROCKET ") == 1 and "Sprocket" in reg and reg.check("Sprocket") == "sprocket"
    with pytest.raises(UsageError) as info:
        reg.check("Sprockt", where="--widget")
    message = str(info.value)
    # the name as the user gave it; the suggestion computed on the normalised key
    assert message.startswith("--widget: unknown widget 'Sprockt'. Did you mean sprocket? Known: sprocket")
    assert len(message.splitlines()) == 1


def test_unknown_without_any_close_name_lists_the_known_ones_only():
    reg = Registry("widget", paths=False)
    reg.add("sprocket", 1)
    assert str(reg.unknown("zzz")) == "unknown widget 'zzz'. Known: sprocket"


# -- networks --------------------------------------------------------------------------------------------
def test_network_names_are_the_registry():
    assert NETWORK_NAMES == tuple(NETWORKS.names()) and len(NETWORK_NAMES) == 12
    assert all(entry.origin == "built-in" for entry in NETWORKS.entries())


@pytest.mark.parametrize("name", NETWORKS.names())
def test_every_registered_network_builds_a_classifier(name):
    net = build_network(name, 3, 7, 32, seed=0)
    assert isinstance(net, torch.nn.Module) and net.classifier.out_features == 7 and net.embed_dim > 0


def test_misspelt_network_gets_the_registry_suggestion():
    with pytest.raises(UsageError) as info:
        build_network("resnet81", 3, 10, 32)
    message = str(info.value)
    assert message.startswith("unknown network 'resnet81'. Did you mean resnet18")
    assert "Known: alexnet, alexnet_bn" in message and "module.path" not in message
    assert len(message.splitlines()) == 1
    with pytest.raises(UsageError, match="unknown network 'torch.nn:Linear'"):
        build_network("torch.nn:Linear", 3, 10, 32)  # a module path is no network name


def test_seeded_build_through_the_registry_matches_the_builder_by_hand():
    """build_network adds only the seeding around the registered builder: same draws as seeding by hand."""
    torch.manual_seed(11)
    by_hand = NETWORKS.get("convnet_bn")(1, 10, 28, 16)
    built = build_network("convnet_bn", 1, 10, 28, seed=11, width=16)
    for (key, a), (_, b) in zip(by_hand.state_dict().items(), built.state_dict().items()):
        assert torch.equal(a, b), key


# -- datasets --------------------------------------------------------------------------------------------
def test_dataset_names_are_the_registry():
    assert DATASET_NAMES == tuple(DATASETS.names())
    assert set(DATASET_NAMES) == {"fashion-mnist", "mnist", "cifar10", "cifar100", "tinyimagenet", "imagenette",
                                  "imagewoof", "imagenet64", "digits"}


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_entry_is_complete(name):
    spec = DATASETS.get(name)
    assert isinstance(spec, DatasetSpec) and spec.name == name
    assert spec.channels in (1, 3) and spec.num_classes >= 10 and spec.how_to_get
    if spec.mean is not None:
        assert len(spec.mean) == len(spec.std) == spec.channels
        assert all(0 < m < 1 for m in spec.mean) and all(0 < s < 1 for s in spec.std)
    assert (spec.layout is None) != (spec.bundled is None)
    if spec.layout is not None and hasattr(spec.layout, "classes"):  # idx files carry no names: the entry does
        assert len(spec.layout.classes) == spec.num_classes


def test_measured_normalisation_of_a_bundled_dataset_has_its_channel_count():
    spec = DATASETS.get("digits")
    ds = load_dataset("digits")
    assert spec.mean is None and len(ds.mean) == len(ds.std) == spec.channels == ds.channels
    assert ds.num_classes == spec.num_classes and ds.image_size == spec.image_size


def test_dataset_spec_refuses_a_wrong_channel_count():
    with pytest.raises(ValueError, match="mean/std need 3 values"):
        DatasetSpec("x", channels=3, image_size=32, num_classes=10, mean=(0.5,), std=(0.5,), how_to_get="-",
                    bundled=lambda: None)
    with pytest.raises(ValueError, match="either a layout"):
        DatasetSpec("x", channels=1, image_size=28, num_classes=10, mean=(0.5,), std=(0.5,), how_to_get="-")


def test_misspelt_dataset_gets_the_registry_suggestion_and_spelling_variants_load():
    with pytest.raises(UsageError) as info:
        load_dataset("CIFAR_1O")
    message = str(info.value)
    assert message.startswith("--dataset: unknown dataset 'CIFAR_1O'. Did you mean cifar10")
    assert ("Known: cifar10, cifar100, digits, fashion-mnist, imagenet64, imagenette, imagewoof, mnist, "
            "tinyimagenet") in message
    assert len(message.splitlines()) == 1
    assert load_dataset(" Digits ") is load_dataset("digits")


@pytest.mark.parametrize("name", [n for n in DATASETS.names() if DATASETS.get(n).layout is not None])
def test_not_found_says_what_the_entry_expects_and_how_to_get_it(tmp_path, monkeypatch, name):
    spec = DATASETS.get(name)
    monkeypatch.setattr(data, "SYSTEM_DATA_ROOT", tmp_path / "no-system")
    with pytest.raises(data.DataNotFoundError) as info:
        load_dataset(name, data_dir=tmp_path, download=False)
    message = str(info.value)
    assert spec.layout.expected(spec.name) in message and spec.how_to_get in message


# -- launchers -------------------------------------------------------------------------------------------
def test_launcher_names_are_the_registry_and_the_spec_accepts_the_same():
    assert LAUNCHERS.names() == ["local", "ray", "slurm"] and LAUNCHERS is sw.LAUNCHERS
    assert [LAUNCHERS.get(n) for n in LAUNCHERS.names()] == [LocalLauncher, RayLauncher, SlurmLauncher]
    for name in LAUNCHERS.names():
        cls = LAUNCHERS.get(name)
        assert issubclass(cls, Launcher) and cls.name == name and dataclasses.is_dataclass(cls.Options)


def test_misspelt_launcher_gets_the_registry_suggestion(tmp_path):
    spec = sw.parse_spec({}, folder=tmp_path)
    with pytest.raises(UsageError) as info:
        make_launcher("slurn", spec)
    message = str(info.value)
    assert message.startswith("--launcher: unknown launcher 'slurn'. Did you mean slurm?")
    assert "Known: local, ray, slurm" in message and len(message.splitlines()) == 1


@pytest.mark.parametrize("name", LAUNCHERS.names())
def test_each_launcher_builds_from_its_defaults_and_refuses_unknown_keys(tmp_path, name):
    spec = sw.parse_spec({}, folder=tmp_path)
    launcher = make_launcher(name, spec, retries=2, detach=LAUNCHERS.get(name).detaches)
    assert isinstance(launcher, LAUNCHERS.get(name)) and launcher.retries == 2
    bad = sw.parse_spec({name: {"colour": "blue"}}, folder=tmp_path)
    with pytest.raises(UsageError, match=rf"unknown keys in \[{name}\]: colour; known: "):
        make_launcher(name, bad)


def test_launcher_options_reach_the_engine(tmp_path):
    spec = sw.parse_spec({"slurm": {"partition": "gpu", "time": "1-00:00:00", "array_parallelism": 3},
                          "ray": {"cpus_per_job": 2, "address": "auto"}, "local": {"gpus": [0, 2]}},
                         folder=tmp_path)
    slurm = make_launcher("slurm", spec, slurm={"partition": "debug", "time": None})
    assert (slurm.partition, slurm.timeout_min, slurm.array_parallelism) == ("debug", 1440, 3)
    assert make_launcher("slurm", spec, max_parallel=5).array_parallelism == 5  # the command line's wins
    ray = make_launcher("ray", spec, ray_address="ray://head:10001")
    assert (ray.address, ray.cpus_per_job, ray.max_retries) == ("ray://head:10001", 2, 2)
    assert make_launcher("local", spec).gpus == ["0", "2"]
    assert engine_options(spec, LAUNCHERS.get("local")).gpus == [0, 2]


def test_detach_only_where_the_engine_detaches(tmp_path):
    spec = sw.parse_spec({}, folder=tmp_path)
    with pytest.raises(UsageError, match="--detach is for --launcher slurm: local jobs end with their driver"):
        make_launcher("local", spec, detach=True)
