"""Protocols are registered components behind one interface (clbench.protocol.base): the joint upper bound is
one, computed here independently of it; a protocol defined in a test module runs through the same session
(record, checkpoints, resume) with no change to the harness."""
from __future__ import annotations

import json

import pytest
import torch

from clbench.protocol.config import RunConfig

JOINT = dict(condenser="random", dataset="digits", steps=2, orders=1, width=8, profile="quick", device="cpu",
             learner="joint", train={"epochs": 2, "batch_size": 128})


@pytest.fixture(scope="module")
def joint_record(tmp_path_factory):
    from clbench.protocol.continual import run

    path, record = run(RunConfig(out=str(tmp_path_factory.mktemp("joint")), **JOINT))
    return path, record


def test_joint_trains_fresh_networks_on_every_real_image_seen(joint_record):
    """Each step's accuracy is that of a network built, trained and tested by hand with the documented seeds
    on the real images of the classes seen so far."""
    from clbench.core.seeding import derive_seed, generator
    from clbench.data.datasets import load_dataset
    from clbench.data.streams import class_order, split_classes
    from clbench.nets.networks import build_network
    from clbench.protocol.resolve import train_recipe
    from clbench.training.recipe import evaluate, train_network

    _, record = joint_record
    ds = load_dataset("digits")
    train_x, train_y = ds.normalised("train")
    test_x, test_y = ds.normalised("test")
    recipe = train_recipe({"epochs": 2, "batch_size": 128}, "quick")
    groups = split_classes(class_order(0, ds.num_classes), 2)
    steps = record["orders"][0]["steps"]
    for t, entry in enumerate(steps):
        seen = [c for g in groups[: t + 1] for c in g]
        keep = torch.isin(train_y, torch.tensor(seen))
        net = build_network("convnet", ds.channels, ds.num_classes, ds.image_size,
                            seed=derive_seed(0, 0, t, "network", 0), width=8)
        train_network(net, train_x[keep], train_y[keep], recipe, recipe.augment(),
                      generator(derive_seed(0, 0, t, "train", 0), torch.device("cpu")))
        shown = torch.isin(test_y, torch.tensor(seen))
        accuracy, _ = evaluate(net, test_x[shown], test_y[shown], recipe)
        assert entry["accuracies"] == [accuracy]
        assert entry["seen_classes"] == seen
        assert entry["memory_size"] == int(keep.sum())  # every real image of the classes seen
        assert entry["ipc"] == int(torch.bincount(train_y[keep])[seen].min())


def test_joint_record_says_what_it_is(joint_record):
    path, record = joint_record
    c = record["config"]
    assert (c["learner"], c["condenser"], c["memory"], c["condenser_options"]) == ("joint", "none", "all", {})
    assert c["train"]["epochs"] == 2 and path.name.startswith("digits-joint-")
    assert record["complete"] and record["orders"][0]["memory_file"] is None  # no memory to save
    assert all(s["condense_seconds"] == 0.0 for s in record["orders"][0]["steps"])


def test_protocol_defaults_sit_under_the_users_train_options():
    from clbench.protocol.joint import Joint
    from clbench.protocol.prepare import prepare

    quick = prepare(RunConfig(**{**JOINT, "train": {}})).recipe
    assert (quick.epochs, quick.batch_size) == (Joint.train_defaults["quick"]["epochs"],
                                                Joint.train_defaults["quick"]["batch_size"])
    mine = prepare(RunConfig(**{**JOINT, "train": {"epochs": 7}})).recipe
    assert (mine.epochs, mine.batch_size) == (7, Joint.train_defaults["quick"]["batch_size"])
    retrain = prepare(RunConfig(**{**JOINT, "learner": "retrain", "train": {}})).recipe
    assert retrain.epochs == 60  # the recipe's own quick value: joint's defaults are joint's alone


class EveryOther:
    """A protocol written as a plugin would write one: trains nothing, records each step with a fixed score."""

    name = "every-other"
    summary = "test protocol"
    uses_condenser = True
    train_defaults: dict = {}

    def check(self, config, recipe) -> None:
        if config.steps != 2:
            from clbench.core.errors import UsageError

            raise UsageError("--steps: every-other runs 2 steps")

    def networks_per_step(self, config, profile) -> int:
        return 1

    def run_order(self, run):
        from clbench.records.schema import StepResult

        empty = {"images": torch.zeros(0, 1, 8, 8), "labels": torch.zeros(0, dtype=torch.long)}
        for t in range(run.start, len(run.groups)):
            run.hooks.step_started(t, run.groups[t])
            run.recorder.record(StepResult(t, run.groups[t], run.groups[t], 0, {}, [float(10 * (t + 1))]), empty)
            if t == 0 and getattr(EveryOther, "stop_after_first", False):
                raise KeyboardInterrupt  # a crash after the first step's checkpoint
        return None


def test_a_new_protocol_is_one_class_and_a_registration(monkeypatch, tmp_path):
    from clbench.core.errors import UsageError
    from clbench.protocol import base
    from clbench.protocol.continual import resume, run

    monkeypatch.setattr(base.PROTOCOLS, "_entries", dict(base.PROTOCOLS._entries))
    base.PROTOCOLS.add("every-other", EveryOther, origin="test")
    config = RunConfig(condenser="random", dataset="digits", steps=2, orders=1, memory="2ipc", profile="quick",
                       device="cpu", learner="every-other", out=str(tmp_path))
    with pytest.raises(UsageError, match="every-other runs 2 steps"):
        run(RunConfig(**{**config.__dict__, "steps": 5}))
    monkeypatch.setattr(EveryOther, "stop_after_first", True, raising=False)
    with pytest.raises(KeyboardInterrupt):
        run(config)
    [path] = tmp_path.glob("*.json")
    assert [s["accuracies"] for s in json.loads(path.read_text())["orders"][0]["steps"]] == [[10.0]]
    monkeypatch.setattr(EveryOther, "stop_after_first", False)
    _, record = resume(path)  # from the checkpoint the one recorder wrote: step 1 only
    assert [s["accuracies"] for s in record["orders"][0]["steps"]] == [[10.0], [20.0]]
    assert record["complete"] and record["config"]["learner"] == "every-other"


def test_protocols_are_listed_by_the_registry():
    from clbench.protocol.base import PROTOCOLS

    assert {"retrain", "replay", "joint", "task"} <= set(PROTOCOLS.names())
    for name in ("retrain", "replay", "joint", "task"):
        cls = PROTOCOLS.get(name)
        assert cls.name == name and cls.summary


TASK = dict(condenser="random", dataset="digits", steps=2, orders=1, memory="5ipc", width=8, profile="quick",
            device="cpu", networks_per_step=2, train={"epochs": 3, "batch_size": 64, "amp": False})


@pytest.mark.parametrize("batched", [False, True])
def test_task_incremental_scores_the_retrain_networks_among_each_experiences_classes(tmp_path, batched):
    """`--learner task` trains what retrain trains (the same memory, so the same networks); each image is then
    classified among its own experience's classes: never below the class-incremental score, and at the last
    step exactly what the final memory's networks, rebuilt here by hand, give with their other outputs cut."""
    from clbench.core.seeding import derive_seed, generator
    from clbench.data.datasets import load_dataset
    from clbench.data.streams import class_order, split_classes
    from clbench.nets.networks import build_network
    from clbench.protocol.continual import run
    from clbench.protocol.resolve import train_recipe
    from clbench.training.batched import train_networks

    train = {**TASK["train"], "batched_networks": batched}
    _, retrain = run(RunConfig(out=str(tmp_path / "retrain"), **{**TASK, "train": train}))
    path, task = run(RunConfig(out=str(tmp_path / "task"), learner="task", **{**TASK, "train": train}))
    assert task["config"]["learner"] == "task" and task["complete"]
    ours, theirs = task["orders"][0], retrain["orders"][0]
    memory = torch.load(path.parent / ours["memory_file"], weights_only=True)
    same = torch.load(tmp_path / "retrain" / theirs["memory_file"], weights_only=True)
    assert torch.equal(memory["images"], same["images"]) and torch.equal(memory["labels"], same["labels"])
    for mine, class_il in zip(ours["steps"], theirs["steps"]):
        assert all(a >= b for a, b in zip(mine["accuracies"], class_il["accuracies"]))
        assert all(mine["class_accuracy"][c] >= class_il["class_accuracy"][c] for c in class_il["class_accuracy"])
    assert ours["steps"][-1]["accuracies"] != theirs["steps"][-1]["accuracies"]  # the heads changed something

    ds = load_dataset("digits")
    test_x, test_y = ds.normalised("test")
    groups = split_classes(class_order(0, ds.num_classes), 2)
    recipe = train_recipe(train, "quick")
    nets = [build_network("convnet", ds.channels, ds.num_classes, ds.image_size,
                          seed=derive_seed(0, 0, 1, "network", k), width=8) for k in range(2)]
    train_networks(nets, memory["images"], memory["labels"], recipe, recipe.augment(),
                   [generator(derive_seed(0, 0, 1, "train", k), torch.device("cpu")) for k in range(2)])
    for k, net in enumerate(nets):
        correct, total = 0, 0
        for classes in groups:
            shown = torch.isin(test_y, torch.tensor(classes))
            with torch.no_grad():
                logits = net.eval()(test_x[shown])[:, classes]
            predicted = torch.tensor(classes)[logits.argmax(1)]
            correct, total = correct + int((predicted == test_y[shown]).sum()), total + int(shown.sum())
        assert ours["steps"][-1]["accuracies"][k] == pytest.approx(100 * correct / total, abs=1e-5)  # float32 mean
