"""What a protocol is, and the one registry of them.

A protocol is one way of running an experiment, registered under a name in `PROTOCOLS`. The continual
protocols (`clbench run --learner NAME`: `retrain`, `replay`, `joint`, and any plugin's) share everything but
how one class order's steps run: the resolve step, the record, checkpoints and resume, `--jobs`, sweeps,
progress and logs are clbench.protocol's machinery and know nothing of which protocol they serve. So a
continual protocol is a small class, one module each:

    name, summary           how it is listed and recorded (the record's `config.learner`)
    uses_condenser          False for a protocol that keeps no condensed memory (the record says "none")
    train_defaults          training-recipe values it needs by profile, under the user's --train
    check(config, recipe)   what it refuses in the configuration, as one UsageError, before any work
    networks_per_step(...)  how many networks each step trains (the record's `networks_per_step`)
    run_order(run)          the steps of one order from `run.state` on, each handed to `run.recorder`;
                            returns the final memory (a Memory, saved beside the record) or None

`OrderRun` is everything an order is given. A plugin protocol registers through the entry-point group
`clbench.protocols` (name = module:Class); docs/how-a-run-flows.md shows a whole one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torch import nn

from clbench.core.registry import Registry
from clbench.protocol.profiles import NETWORKS_PER_STEP

KIND = "continual"  # the record kind every continual protocol writes


@dataclass
class OrderRun:
    """One class order as its protocol runs it."""

    p: Any  # clbench.protocol.prepare.Prepared: the resolved run
    state: Any  # clbench.protocol.checkpoint.OrderState: the steps done so far (and their memory)
    classes: list[int]  # the class order
    groups: list[list[int]]  # groups[t]: the classes new at step t, in stream order
    data: Any  # clbench.data.datasets.RealData: the normalised tensors, resident on the run's device
    make_network: Callable[[int], nn.Module]  # a fresh network of the run's architecture from a seed
    recorder: Any  # clbench.protocol.hooks.StepRecorder: where each finished step goes
    hooks: Any  # clbench.protocol.hooks.Hooks: progress, logs, the stop flag
    record_path: Path

    @property
    def order(self) -> int:
        return self.state.order

    @property
    def task_extras(self) -> dict[str, Any]:
        """What a condenser is told beside its task (CondenseTask.extras): the dataset, the profile, and the class
        order the task belongs to (its number, its classes, each class's training images), which a condenser
        that reproduces the reference's numpy draws for an order needs (random's draw=reference)."""
        return {"dataset": self.p.config.dataset, "profile": self.p.profile, "order": self.order,
                "class_order": list(self.classes), "class_sizes": self.p.dataset.class_counts("train").tolist()}

    @property
    def start(self) -> int:
        """The first step still to run (a resumed order continues after its checkpoint)."""
        return len(self.state.steps)


class ContinualProtocol:
    """The interface of a continual protocol (see the module docstring); the defaults suit most."""

    name = ""
    summary = ""
    uses_condenser = True
    train_defaults: dict[str, dict[str, Any]] = {}  # profile -> recipe values, under the user's --train

    def check(self, config: Any, recipe: Any) -> None:
        """Refuse, with one UsageError, what this protocol cannot run."""

    def networks_per_step(self, config: Any, profile: str) -> int:
        return config.networks_per_step or NETWORKS_PER_STEP[profile]

    def run_order(self, run: OrderRun) -> Any:
        raise NotImplementedError


PROTOCOLS: Registry[type[ContinualProtocol]] = Registry("protocol", entry_point_group="clbench.protocols",
                                                        paths=False)
PROTOCOLS.add("retrain", "clbench.protocol.retrain:Retrain")
PROTOCOLS.add("replay", "clbench.protocol.replay:Replay")
PROTOCOLS.add("joint", "clbench.protocol.joint:Joint")
PROTOCOLS.add("task", "clbench.protocol.task_incremental:TaskIncremental")


def get_protocol(name: str) -> ContinualProtocol:
    """The protocol registered as `name`, ready to run; an unknown name is one UsageError (--learner)."""
    return PROTOCOLS.get(name, where="--learner")()
