"""The condensed storage policy inside Avalanche's own Naive + ReplayPlugin (digits, 3 experiences of 3 classes)."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("avalanche")

from avalanche.benchmarks import nc_benchmark  # noqa: E402
from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset  # noqa: E402
from avalanche.core import SupervisedPlugin  # noqa: E402
from avalanche.training import Naive  # noqa: E402
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin  # noqa: E402

from clbench.core.errors import UsageError  # noqa: E402
from clbench.core.seeding import derive_seed  # noqa: E402
from clbench.data.datasets import load_dataset  # noqa: E402
from clbench.nets.networks import build_network  # noqa: E402
from clbench.strategies.condensed_buffer import CondensedBuffer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:No loggers specified")  # an EvaluationPlugin that prints nothing
CLASSES = [3, 1, 4, 0, 5, 2, 8, 7, 6]  # 9 of the 10 digits, 3 experiences of 3


class Snapshot(SupervisedPlugin):
    """After ReplayPlugin has updated the buffer: its sizes, tensors and length, per experience."""

    def __init__(self, policy: CondensedBuffer):
        super().__init__()
        self.policy, self.seen = policy, []

    def after_training_exp(self, strategy, **kwargs):
        images, labels = self.policy.memory.tensors()
        self.seen.append({"sizes": self.policy.sizes(), "images": images.clone(), "labels": labels.clone(),
                          "length": len(self.policy.buffer)})


def real_data():
    ds = load_dataset("digits")
    return ds.normalised("train"), ds.normalised("test")


def replay_run(condenser: str, memory: str, seed: int = 0, **opt) -> tuple[CondensedBuffer, list[dict]]:
    (train_x, train_y), (test_x, test_y) = real_data()
    keep_train, keep_test = train_y != 9, test_y != 9

    def dataset(x, y):
        return _make_taskaware_tensor_classification_dataset(x, y)

    benchmark = nc_benchmark(dataset(train_x[keep_train], train_y[keep_train]),
                             dataset(test_x[keep_test], test_y[keep_test]), n_experiences=3, task_labels=False,
                             fixed_class_order=CLASSES)
    policy = CondensedBuffer(condenser, memory, num_classes=10, opt=opt, width=8, seed=seed, order=2,
                             class_order=CLASSES)
    model = build_network("convnet", 1, 10, 8, seed=seed, width=8)
    snapshot = Snapshot(policy)
    strategy = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                     criterion=torch.nn.CrossEntropyLoss(), train_mb_size=32, train_epochs=1, eval_mb_size=256,
                     plugins=[ReplayPlugin(policy.max_size, storage_policy=policy), snapshot],
                     evaluator=EvaluationPlugin())
    for experience in benchmark.train_stream:
        strategy.train(experience)
    return policy, snapshot.seen


@pytest.fixture(scope="module")
def dm_runs():
    first = replay_run("dm", "4ipc", seed=0, iterations=3)
    again = replay_run("dm", "4ipc", seed=0, iterations=3)
    return first, again


def test_buffer_grows_by_ipc_per_class_and_stays_balanced(dm_runs):
    (policy, seen), _ = dm_runs
    assert policy.max_size == 40  # ReplayPlugin checks mem_size == max_size: 4 ipc x 10 classes
    for t, snap in enumerate(seen):
        expected = CLASSES[: 3 * (t + 1)]
        assert list(snap["sizes"]) == expected  # classes in stream order, each condensed once
        assert set(snap["sizes"].values()) == {4}
        assert snap["length"] == 4 * len(expected)
    item = policy.buffer[0]
    assert len(item) == 3 and item[2] == 0  # (image, label, task label), like the experiences' items
    assert sorted(policy.buffer.targets) == sorted(seen[-1]["labels"].tolist())


def test_buffer_holds_only_synthetic_images(dm_runs):
    (_, seen), _ = dm_runs
    (train_x, _), _ = real_data()
    images = seen[-1]["images"]
    flat = train_x.flatten(1)
    for image in images:  # DM moved every image away from the real image it started from
        assert (flat - image.flatten()).abs().amax(dim=1).min() > 1e-4


def test_same_seed_order_and_step_give_the_same_buffer(dm_runs):
    (_, first), (_, again) = dm_runs
    for a, b in zip(first, again):
        assert torch.equal(a["labels"], b["labels"])
        assert torch.equal(a["images"], b["images"])


def test_a_total_budget_shrinks_older_classes_equally():
    policy, seen = replay_run("random", "18")
    assert policy.max_size == 18
    assert [set(s["sizes"].values()) for s in seen] == [{6}, {3}, {2}]
    assert [s["length"] for s in seen] == [18, 18, 18]
    (train_x, _), _ = real_data()
    flat = train_x.flatten(1)
    for image in seen[-1]["images"]:  # random selection keeps real images: each is one of the training set
        assert (flat - image.flatten()).abs().amax(dim=1).min() == 0


def test_seeds_are_clbench_seeds():
    # a buffer condensing its first experience uses derive_seed(seed, order, 0, "condense"), like clbench run
    from clbench.condensers import get_condenser
    from clbench.condensers.base import CondenseTask
    from clbench.core.seeding import generator
    from clbench.nets.augment import DSA

    (train_x, train_y), _ = real_data()
    mask = (train_y == 3) | (train_y == 1)
    policy = CondensedBuffer("random", "5ipc", num_classes=10, seed=7, order=1, class_order=[3, 1])

    class Exp:
        classes_in_this_experience = [1, 3]
        dataset = _make_taskaware_tensor_classification_dataset(train_x[mask], train_y[mask])

    policy.add_experience(Exp())
    gen = generator(derive_seed(7, 1, 0, "condense"))
    task = CondenseTask(images=train_x[mask], labels=train_y[mask], classes=(3, 1), ipc=5, generator=gen,
                        new_network=None, augment=DSA(), device=torch.device("cpu"), num_classes=10)
    direct = get_condenser("random")().condense(task)
    images, labels = policy.memory.tensors()
    assert torch.equal(labels, direct.labels) and torch.equal(images, direct.images)
    assert policy.step == 1


def test_bad_arguments_are_usage_errors():
    with pytest.raises(UsageError, match="memory"):
        CondensedBuffer("random", "0ipc", num_classes=10)
    with pytest.raises(UsageError, match="unknown option"):
        CondensedBuffer("dm", "2ipc", num_classes=10, opt={"nope": 1})
    with pytest.raises(UsageError):
        CondensedBuffer("no-such-condenser", "2ipc", num_classes=10)
