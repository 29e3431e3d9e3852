"""The `joint` protocol (`clbench run --learner joint`): the upper bound every continual table is read against.

At every experience, fresh networks are trained from scratch on ALL the real training images of the classes
seen so far, with the run's training recipe, and tested on those classes' test images: what a learner that
could keep the whole past would reach. No condenser runs and no memory is kept; the record says condenser
"none" and memory "all", and each step's `memory_size` is the number of real images trained on.

Seeds follow the retrain protocol's: network k of step t is initialised with derive_seed(seed, order, t,
"network", k) and draws its minibatches and augmentation from derive_seed(seed, order, t, "train", k). The
recipe's epochs are sized for a memory of a few hundred images, so this protocol has its own defaults for the
real training set (`train_defaults`: 30 epochs of batch 256 in the paper profile, 2 in the quick one: clbench's
choice, no paper fixes them; the "halves" lr schedule, the reference's being for condensed sets), which `--train`
overrides like any recipe value.
"""
from __future__ import annotations

import torch

from clbench.core.costs import measured
from clbench.core.seeding import derive_seed, generator
from clbench.memory.store import stored_bytes
from clbench.protocol.base import ContinualProtocol, OrderRun
from clbench.records.schema import StepResult


class Joint(ContinualProtocol):
    name = "joint"
    summary = "upper bound: fresh networks trained on all real images of the classes seen so far, every step"
    uses_condenser = False
    train_defaults = {"paper": {"epochs": 30, "batch_size": 256, "schedule": "halves"},
                      "quick": {"epochs": 2, "batch_size": 256}}

    def run_order(self, run: OrderRun) -> None:
        from clbench.protocol.order import step_errors
        from clbench.training.batched import evaluate_networks, train_networks

        p, hooks, data, order, seed = run.p, run.hooks, run.data, run.order, run.p.config.seed
        augment = p.recipe.augment()
        epochs = p.recipe.total_epochs
        for t in range(run.start, len(run.groups)):
            hooks.check_stop()
            hooks.step_started(t, run.groups[t])
            seen = [c for g in run.groups[: t + 1] for c in g]
            with step_errors(run, t, "none"):
                with measured(p.device) as cost:
                    images, labels = data.of_classes("train", seen)
                    nets = [run.make_network(derive_seed(seed, order, t, "network", k))
                            for k in range(p.networks_per_step)]
                    gens = [generator(derive_seed(seed, order, t, "train", k), p.device)
                            for k in range(p.networks_per_step)]
                    train_networks(nets, images, labels, p.recipe, augment, gens, hooks.train_progress,
                                   None if hooks.train_loss is None else (
                                       lambda k, epoch, loss: hooks.train_loss(k, epoch, epochs, loss)))
                results = evaluate_networks(nets, *data.of_classes("test", seen), p.recipe)
            sizes = {c: int(n) for c, n in zip(seen, torch.bincount(labels, minlength=data.num_classes)[seen].tolist())}
            per_class = [class_acc for _, class_acc in results]
            result = StepResult(t, list(run.groups[t]), seen, min(sizes.values()), sizes,
                                [acc for acc, _ in results],
                                {c: sum(pc[c] for pc in per_class) / len(per_class) for c in per_class[0]},
                                0.0, cost.seconds, {},
                                stored_bytes(int(labels.numel()), tuple(images.shape[1:]), itemsize=1),  # uint8
                                train_peak_bytes=cost.peak_bytes)
            empty = {"images": images[:0].cpu(), "labels": labels[:0].cpu()}  # nothing to carry to the next step
            run.recorder.record(result, empty)
        return None

