"""Every condensation runs in full fp32 on CUDA unless a condenser's own `tf32` option says otherwise: the
harness wraps each call in one place (condense.checks.run_condenser, which the continual and static protocols
call through strategies.memory_step.condense, and the contract check itself), and every condenser with a
`tf32` option (the DM family, IDM included, and DSA) honours it.
Only the flags are observed, so no GPU is needed: the task says "cuda", its tensors stay on the CPU."""
from __future__ import annotations

import contextlib
import inspect

import pytest
import torch

import clbench.testing as testing
from clbench.condensers.base import CondenseTask, SyntheticSet
from clbench.memory.checks import run_condenser
from clbench.testing import make_task


class FlagProbe:
    """Records whether TF32 was on while it condensed; returns the first `ipc` images of each class."""

    name = "flag-probe"
    seen: list[bool] = []

    def condense(self, task):
        self.seen.append(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32)
        picked = torch.cat([torch.nonzero(task.labels == c).flatten()[:task.ipc] for c in task.classes])
        return SyntheticSet(task.images[picked].clone(), task.labels[picked].clone())


def test_the_harness_condenses_in_fp32_even_where_tf32_was_on():
    images, labels = torch.randn(12, 1, 4, 4), torch.arange(3).repeat_interleave(4)
    task = CondenseTask(images, labels, (0, 1, 2), 2, torch.Generator(), lambda seed=None: None, None,
                        torch.device("cuda"), 3)
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        probe = FlagProbe()
        probe.seen.clear()
        run_condenser(probe, task)
        assert probe.seen == [False]
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32  # restored after
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_every_path_that_condenses_goes_through_one_function(monkeypatch, tmp_path):
    """The continual learners, the static protocol and the contract check make their tasks with
    memory_step.new_task, and the protocols run them with run_condenser (fp32 on CUDA, the result checked)."""
    from clbench.data.streams import class_order, split_classes
    from clbench.protocol.config import RunConfig
    from clbench.protocol.continual import run
    from clbench.protocol.static import StaticConfig, run_static
    from clbench.strategies import memory_step
    from clbench.testing import make_task

    made, ran = [], []
    new_task, run_condenser = memory_step.new_task, memory_step.run_condenser
    monkeypatch.setattr(memory_step, "new_task", lambda *a, **k: made.append(a[2]) or new_task(*a, **k))
    monkeypatch.setattr(memory_step, "run_condenser",
                        lambda c, task: ran.append(task.classes) or run_condenser(c, task))
    tiny = dict(dataset="digits", profile="quick", device="cpu", train={"epochs": 1})
    for learner in ("retrain", "replay"):
        run(RunConfig(condenser="random", steps=2, orders=1, memory="2ipc", learner=learner,
                      out=str(tmp_path / learner), **tiny))
    run_static(StaticConfig(condenser="random", ipc=2, sets=1, evals=1, out=str(tmp_path / "static"), **tiny))
    make_task(classes=(0, 1), ipc=1)
    groups = [tuple(g) for g in split_classes(class_order(0, 10), 2)]
    assert [tuple(c) for c in made] == [*groups, *groups, tuple(range(10)), (0, 1)]  # retrain, replay, static, check
    assert len(ran) == 5  # every protocol's condensation (the contract check runs its tasks itself, in fp32)
    assert "with tf32(False, task.device)" in inspect.getsource(testing._run)


@pytest.mark.parametrize("name, module", [("dm", "clbench.condensers.dm"), ("idm", "clbench.condensers.dm"),
                                          ("datadam", "clbench.condensers.dm"), ("dsa", "clbench.condensers.dsa")])
@pytest.mark.parametrize("enabled", [True, False])
def test_each_tf32_option_is_honoured(monkeypatch, name, module, enabled):
    import importlib

    from clbench.condensers import get_condenser
    from clbench.core.options import build_options

    calls = []

    @contextlib.contextmanager
    def recorder(on, device):
        calls.append(on)
        yield

    monkeypatch.setattr(importlib.import_module(module), "tf32", recorder)
    cls = get_condenser(name)
    opts = {"iterations": "1", "tf32": str(enabled).lower()}
    if name == "dsa":
        opts["loops"] = "1,1"
    condenser = cls(build_options(cls.Options, opts, "quick", owner=name))
    task = make_task(classes=(0, 1), ipc=1, per_class=8, width=8)
    result = condenser.condense(task)
    assert calls == [enabled] and result.facts["tf32"] is False  # asked for; but on a CPU there is no TF32
