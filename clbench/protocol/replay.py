"""The `replay` protocol (`clbench run --learner replay`): ONE network trained continually, with condensed replay.

Where the default `retrain` learner trains fresh networks from scratch on the memory alone at every step, this
learner is the usual continual-learning set-up: Avalanche's `Naive` strategy trains a single network on each new
experience's real data, with Avalanche's `ReplayPlugin` mixing a minibatch of the memory into every minibatch;
the memory is clbench's condensed storage policy (clbench.strategies.condensed_buffer), which condenses each
experience's classes after training on it. After every experience the network is tested on every class seen.

The training recipe applies: `epochs` per experience, SGD `lr`/`momentum`/`weight_decay`, `batch_size` (for
the new data and for the memory), the lr x0.1 after `decay_at` of each experience's epochs, `dsa` on every
batch (new and replayed images alike), `amp`, `eval_batch_size`. Seeds follow (seed, order, step): the network
is initialised with derive_seed(seed, order, 0, "network"); step t's shuffling and augmentation draw from
derive_seed(seed, order, t, "train"), and its memory from the same condense/shrink seeds as `retrain`.

After every step the order's checkpoint (clbench.protocol.checkpoint) holds the memory, the network's weights
and the optimizer's state (SGD momentum carries over between experiences), so a killed run resumes at the next
step with the numbers of an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from typing import Any, Callable, Iterator

import torch
from avalanche.core import SupervisedPlugin
from torch import Tensor, nn

from clbench.core.costs import PeakMeter
from clbench.core.errors import NonFiniteError, UsageError
from clbench.core.seeding import derive_seed, generator
from clbench.core.speed import tf32
from clbench.memory.store import Memory
from clbench.protocol.base import ContinualProtocol, OrderRun
from clbench.protocol.checkpoint import checkpoint_path
from clbench.records.record import RecordError, jsonable
from clbench.records.schema import StepResult
from clbench.strategies.memory_step import memory_bytes
from clbench.training.recipe import autocast, decay_lr, evaluate

RETRAIN_ONLY = ("micro_batch", "compile", "channels_last")  # recipe switches of the from-scratch trainer


class _Autocast(nn.Module):
    """The network's forward under the recipe's autocast (bf16 where `amp` asks for it)."""

    def __init__(self, net: nn.Module, device: torch.device, amp: Any):
        super().__init__()
        self.net, self.device, self.amp = net, device, amp

    def forward(self, x: Tensor) -> Tensor:
        with autocast(self.device, self.amp):
            return self.net(x).float()


class _Recipe(SupervisedPlugin):
    """The recipe's per-experience schedule and augmentation on Avalanche's hooks, seeded by (seed, order, step)."""

    def __init__(self, recipe: Any, seed: int, order: int, device: torch.device,
                 progress: Callable[[int, int], None], check_stop: Callable[[], None],
                 train_loss: Callable[[int, int, int, float], None] | None = None, step: int = 0,
                 optimizer_state: dict | None = None):
        super().__init__()
        self.recipe, self.seed, self.order, self.device = recipe, seed, order, device
        self.augment = recipe.augment()
        self.progress, self.check_stop, self.train_loss = progress, check_stop, train_loss
        self.step, self.epoch = step, 0
        self.optimizer_state = optimizer_state  # a resumed order's SGD momentum, loaded at its first experience
        self.generator: torch.Generator | None = None
        self.loss_sum, self.seen = torch.zeros(()), 0
        # training's peak memory: read after each epoch, before the storage policy condenses (after_training_exp)
        self.meter, self.train_peak_bytes = PeakMeter(device), None

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.epoch = 0
        self.meter.reset()
        self.generator = generator(derive_seed(self.seed, self.order, self.step, "train"), self.device)
        if self.optimizer_state is not None:  # after Avalanche's first make_optimizer, which clears the state
            strategy.optimizer.load_state_dict(self.optimizer_state)
            self.optimizer_state = None
        for group in strategy.optimizer.param_groups:
            group["lr"] = self.recipe.lr

    def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        decay_lr(strategy.optimizer, self.recipe, self.epoch)
        self.loss_sum, self.seen = torch.zeros((), device=self.device), 0

    def before_forward(self, strategy: Any, **kwargs: Any) -> None:
        if self.recipe.dsa:
            strategy.mbatch[0] = self.augment.train_batch(strategy.mb_x, self.generator)

    def after_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
        if not torch.isfinite(strategy.loss.detach()).all():
            raise NonFiniteError(f"training loss became non-finite at epoch {self.epoch + 1}")
        if self.train_loss is not None:
            self.loss_sum += strategy.loss.detach().sum() * len(strategy.mb_y)  # Avalanche's loss has shape [1]
            self.seen += len(strategy.mb_y)
        self.check_stop()

    def after_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        self.epoch += 1
        self.train_peak_bytes = self.meter.peak()
        if self.train_loss is not None:
            self.train_loss(0, self.epoch, self.recipe.total_epochs, float(self.loss_sum / max(self.seen, 1)))
        self.progress(self.epoch, self.recipe.total_epochs)

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.step += 1


@contextlib.contextmanager
def _seeded_cpu_rng(seed: int) -> Iterator[None]:
    """Avalanche's data loaders shuffle with the global CPU generator: seed it for one step, restore it after."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def _tensor_stream(data: Any, classes: list[int], steps: int):
    """A class-incremental Avalanche benchmark of (image, label, task 0) over the real images (CPU), each
    training sample carrying its row of the training images (clbench.protocol.tensor_batches). Avalanche's own
    loader (`fast_batches=False`) reads the uint8 images and normalises each one as it is fetched."""
    from avalanche.benchmarks import nc_benchmark
    from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset as tensors

    from clbench.data.types import normalise
    from clbench.protocol.tensor_batches import with_rows

    per_image = None if data.mean is None else (
        lambda image: normalise(image.unsqueeze(0), data.mean, data.std, image.device)[0])
    train = with_rows(tensors(data.train_pixels.cpu(), data.train_labels.cpu(), transform=per_image), "sample_index")
    test = tensors(data.test_pixels.cpu(), data.test_labels.cpu(), transform=per_image)
    return nc_benchmark(train, test, n_experiences=steps, task_labels=False, fixed_class_order=classes)


def _real_rows(data: Any) -> Callable[[Any], tuple[Tensor, Tensor] | None]:
    """The storage policy's reader: an experience's images at once, by their rows of the resident tensors."""
    from clbench.protocol.tensor_batches import rows_of

    def read(dataset: Any) -> tuple[Tensor, Tensor] | None:
        rows = rows_of(dataset, "sample_index")
        if rows is None:
            return None
        rows = rows.to(data.train_labels.device)
        return data.train(rows), data.train_labels[rows]

    return read


class Replay(ContinualProtocol):
    name = "replay"
    summary = "one network trained continually on each experience plus the replayed memory (Avalanche Naive)"
    # The reference's schedule (epochs + 1, momentum reset) is how it evaluates condensed sets; a network trained
    # continually on real data plus the memory keeps `epochs` per experience, as joint does.
    train_defaults = {"paper": {"schedule": "halves"}}

    def check(self, config: Any, recipe: Any) -> None:
        """Options that make no sense for one continually trained network: one UsageError naming them."""
        if config.networks_per_step not in (None, 1):
            raise UsageError(f"--nets {config.networks_per_step}: the replay learner trains one network "
                             f"continually; remove --nets (or use --learner retrain)")
        defaults = type(recipe)()
        for key in RETRAIN_ONLY:
            if getattr(recipe, key) != getattr(defaults, key):
                raise UsageError(f"--train {key}={getattr(recipe, key)}: applies to the retrain learner only; "
                                 f"remove it for --learner replay")

    def networks_per_step(self, config: Any, profile: str) -> int:
        return 1

    def run_order(self, run: OrderRun) -> Memory:
        if run.start and run.state.learner is None:
            raise RecordError(f"checkpoint {checkpoint_path(run.record_path, run.order)} has no network for the "
                              f"replay learner; delete it to redo order {run.order} from its first step")
        return run_replay_order(run)


def run_replay_order(run: OrderRun, fast_batches: bool = True) -> Memory:
    """The steps of one order from `run.start` with the replay learner (a resumed order's checkpoint holds the
    memory, the network's and the optimizer's state after step `start - 1`). After each step the recorder gets
    the step, the memory and the learner's state (what a checkpoint needs to continue). Returns the memory.
    `fast_batches=False` keeps Avalanche's sample-by-sample loading (the same numbers; benchmarks/replay.py)."""
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin

    from clbench.protocol.order import step_errors
    from clbench.protocol.tensor_batches import TensorBatches
    from clbench.strategies.condensed_buffer import CondensedBuffer

    p, hooks, data, order, start = run.p, run.hooks, run.data, run.order, run.start
    groups, learner_state = run.groups, run.state.learner
    recipe, seed, device = p.recipe, p.config.seed, p.device
    net = run.make_network(derive_seed(seed, order, 0, "network"))
    if learner_state is not None:
        net.load_state_dict(learner_state["network"])
    buffer = CondensedBuffer(p.resolved.new_condenser(), p.budget, num_classes=p.dataset.num_classes, seed=seed,
                             order=order, device=device, make_network=run.make_network, class_order=run.classes,
                             progress=hooks.condense_progress,
                             extras=run.task_extras,
                             reader=_real_rows(data) if fast_batches else None)
    if start and run.state.memory is not None:
        buffer.restore(start, Memory.from_state(run.state.memory, device))
    batches = [TensorBatches({"sample_index": lambda: (data.train, data.train_labels),
                              "memory_index": lambda: buffer.memory.tensors()})] if fast_batches else []
    schedule = _Recipe(recipe, seed, order, device, lambda done, total: hooks.train_progress(0, done, total),
                       hooks.check_stop, hooks.train_loss, start,
                       learner_state["optimizer"] if learner_state is not None else None)
    optimizer = torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No loggers specified": clbench reports, Avalanche stays quiet
        evaluator = EvaluationPlugin(loggers=[])
    strategy = Naive(model=_Autocast(net, device, recipe.amp), optimizer=optimizer,
                     criterion=nn.CrossEntropyLoss(), train_mb_size=recipe.batch_size, train_epochs=recipe.total_epochs,
                     eval_mb_size=recipe.eval_batch_size, device=device, evaluator=evaluator,
                     plugins=[ReplayPlugin(buffer.max_size, storage_policy=buffer), schedule, *batches])
    benchmark = _tensor_stream(data, run.classes, len(groups))
    for t, experience in enumerate(benchmark.train_stream):
        if t < start:
            continue
        hooks.check_stop()
        hooks.step_started(t, groups[t])
        with step_errors(run, t, buffer.condenser_name):
            began = time.perf_counter()
            # the recipe's TF32 switch (off: full fp32 on CUDA, the reference); condensation sets its own
            with _seeded_cpu_rng(derive_seed(seed, order, t, "train")), tf32(recipe.tf32, device):
                strategy.train(experience, num_workers=0)
            seconds = time.perf_counter() - began
            seen = [c for g in groups[: t + 1] for c in g]
            accuracy, class_accuracy = evaluate(net, *data.of_classes("test", seen), recipe)
        condensed = buffer.last_condense_cost
        result = StepResult(t, list(groups[t]), seen, buffer.last_ipc, buffer.sizes(), [accuracy], class_accuracy,
                            condensed.seconds, seconds - condensed.seconds, jsonable(buffer.last_facts),
                            memory_bytes(buffer.memory, buffer.condenser), condensed.peak_bytes,
                            schedule.train_peak_bytes)
        run.recorder.record(result, buffer.memory.state(),
                            {"network": net.state_dict(), "optimizer": optimizer.state_dict()})
    return buffer.memory
