"""The add-ons (style matching, intra-class diversity) compose with any DM-family base: DDM is DM with both on,
to the bit; a base that is not DM-family refuses them with one line; requests for style taps merge."""
from __future__ import annotations

import itertools

import pytest
import torch

from clbench.condensers.base import CondenseTask
from clbench.condensers.ddm import DDM
from clbench.condensers.dm import DM
from clbench.core.errors import UsageError
from clbench.core.options import build_options
from clbench.data.datasets import load_dataset
from clbench.matching.statistics import StyleTaps
from clbench.nets.augment import DSA
from clbench.nets.networks import build_network


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits").normalised("train")


def condense(cls, digits, **opts):
    images, labels = digits
    seeds = itertools.count(1000)

    def new_network(seed=None):
        return build_network("convnet", 1, 10, 8, seed=next(seeds) if seed is None else seed, width=16)

    task = CondenseTask(images, labels, (0, 3, 8), 5, torch.Generator().manual_seed(0), new_network, DSA(),
                        torch.device("cpu"), 10)
    return cls(build_options(cls.Options, {"iterations": 6, "batch_real": 32, **opts})).condense(task)


def test_dm_with_both_addons_is_ddm_to_the_bit(digits):
    composed = condense(DM, digits, sm=True, icd=True)
    ddm = condense(DDM, digits)
    assert torch.equal(composed.images, ddm.images)
    assert composed.facts["final_losses"] == ddm.facts["final_losses"]
    assert composed.facts["weights"] == ddm.facts["weights"]
    assert list(ddm.facts["weights"]) == ["dm", "mm", "cm", "icd"]


def test_each_addon_alone_adds_only_its_terms(digits):
    plain = condense(DM, digits)
    sm = condense(DM, digits, sm=True)
    icd = condense(DM, digits, icd=True)
    assert set(plain.facts["final_losses"]) == {"dm", "total"}
    assert set(sm.facts["final_losses"]) == {"dm", "mm", "cm", "total"}
    assert set(icd.facts["final_losses"]) == {"dm", "icd", "total"}
    # width 16, 8x8 images, 2 blocks: D = 16 * 2 * 2 = 64, so lambda and beta are scaled by 64 / 2048
    assert sm.facts["weights"] == pytest.approx({"dm": 1.0, "mm": 1e4 / 32, "cm": 1e4 / 32})
    assert icd.facts["weights"] == pytest.approx({"dm": 1.0, "icd": 10.0 / 32})
    # DDM without its add-ons is DM
    assert torch.equal(condense(DDM, digits, sm=False, icd=False).images, plain.images)


def test_addon_options_are_checked_when_the_condenser_is_made():
    with pytest.raises(UsageError, match="dm: k must be at least 1"):
        DM(build_options(DM.Options, {"icd": "true", "k": "0"}))
    with pytest.raises(UsageError, match="style_layers"):
        DM(build_options(DM.Options, {"sm": "true", "style_layers": "-1"}))


def test_style_tap_requests_merge_or_refuse():
    maps = StyleTaps((0, 1), maps=True, grams=False)
    grams = StyleTaps((0, 1), maps=False, grams=True)
    assert StyleTaps.union([]) is None
    assert StyleTaps.union([maps, grams]) == StyleTaps((0, 1), maps=True, grams=True)
    with pytest.raises(UsageError, match="one pass"):
        StyleTaps.union([maps, StyleTaps((2,))])
    with pytest.raises(UsageError, match="one pass"):
        StyleTaps.union([maps, StyleTaps((0, 1), where="pre_relu")])


@pytest.mark.parametrize("condenser", ["random", "herding", "dsa"])
def test_a_base_outside_the_dm_family_refuses_an_addon(cli, tmp_path, condenser):
    code, out, err = cli("run", "--condenser", condenser, "--dataset", "digits", "--opt", "sm=true",
                         "--out", str(tmp_path))
    assert code == 2
    assert f"condenser {condenser!r} cannot take the add-on 'sm'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_clbench_condensers_lists_the_addon_options_under_dm(cli):
    code, out, _ = cli("condensers", "dm")
    assert code == 0
    for name in ("sm", "lambda_", "style_tap", "icd", "beta", "balance"):
        assert name in out


@pytest.mark.parametrize("addons", [{}, {"sm": True}, {"icd": True}, {"sm": True, "icd": True}])
@pytest.mark.parametrize("cls", [DM, DDM])
def test_the_contract_check_passes_with_and_without_addons(cls, addons):
    from clbench.testing import check_condenser

    check_condenser(cls, ipc=3, options={"iterations": 3, **addons})
