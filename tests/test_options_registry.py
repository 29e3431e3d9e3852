from __future__ import annotations

from dataclasses import dataclass

import pytest

from clbench.core.errors import UsageError
from clbench.core.options import build_options, option, parse_assignments
from clbench.core.registry import Registry


@dataclass
class Opts:
    iterations: int = option(20000, "iterations", quick=100)
    lr: float = option(1.0, "lr")
    init: str = option("real", "init")
    dsa: bool = option(True, "dsa")
    layers: tuple[int, ...] = option((0, 1, 2), "layers")


def test_build_options_profiles_and_overrides():
    assert build_options(Opts, {}, "paper").iterations == 20000
    assert build_options(Opts, {}, "quick").iterations == 100
    o = build_options(Opts, parse_assignments(["lr=0.5", "dsa=false", "iterations=7", "layers=0,2"]), "quick")
    assert (o.lr, o.dsa, o.iterations, o.layers) == (0.5, False, 7, (0, 2))


@pytest.mark.parametrize(
    "pairs, message",
    [(["nope=1"], "unknown option 'nope'"), (["lr=fast"], "expected float"), (["dsa=maybe"], "boolean"),
     (["iterations=1.5"], "expected int"), (["lr"], "key=value")],
)
def test_bad_options(pairs, message):
    with pytest.raises(UsageError, match=message):
        build_options(Opts, parse_assignments(pairs), "paper")


def test_registry_collision_suggestion_and_module_path():
    reg = Registry("thing")
    reg.add("herding", object)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("herding", int)
    with pytest.raises(UsageError, match="Did you mean herding"):
        reg.get("hearding")
    assert reg.get("collections:OrderedDict").__name__ == "OrderedDict"
    with pytest.raises(UsageError, match="cannot import module"):
        reg.get("no_such_module_xyz:Thing")
    with pytest.raises(UsageError, match="has no attribute"):
        reg.get("collections:NoSuchThing")


def test_builtin_condensers_registered():
    from clbench.condensers import CONDENSERS, load_builtins

    load_builtins()
    assert {"random", "herding"} <= set(CONDENSERS.names())
    for entry in CONDENSERS.entries():
        if entry.origin == "built-in":
            assert entry.load().name == entry.name


def test_options_made_in_python_meet_the_bounds_declared_in_their_fields():
    """Options built in Python skip build_options; the condensers and the trainer check them against the same
    declared bounds and types (each bound is written once, in its option(...))."""
    import torch

    from clbench.condensers.dm import DM, DMOptions
    from clbench.condensers.dsa import DSACondenser, DSAOptions
    from clbench.core.errors import UsageError
    from clbench.nets.augment import make_augment
    from clbench.nets.networks import build_network
    from clbench.testing import make_task
    from clbench.training.recipe import TrainRecipe, train_network

    task = make_task(classes=(0, 1), ipc=1, per_class=10)
    with pytest.raises(UsageError, match=r"option iterations must be >= 0, got -1"):
        DM(DMOptions(iterations=-1)).condense(task)
    with pytest.raises(UsageError, match=r"option batch_real must be >= 1, got 0"):
        DM(DMOptions(batch_real=0)).condense(task)
    with pytest.raises(UsageError, match=r"option distance must be one of ours, mse, cos, got \"l1\""):
        DSACondenser(DSAOptions(distance="l1")).condense(task)
    net = build_network("convnet", 1, 10, 8, seed=1)
    x, y = torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    with pytest.raises(UsageError, match=r"training recipe: option epochs must be >= 1, got 0"):
        train_network(net, x, y, TrainRecipe(epochs=0), make_augment(""), torch.Generator())
