"""Your own Avalanche script, with a DDM-condensed replay memory (clbench's storage policy) instead of real samples.

    python examples/avalanche_condensed_replay.py            # Fashion-MNIST, 5 experiences, 10 ipc, LwF
    DATASET=digits EPOCHS=1 ITERATIONS=2 IPC=2 python examples/avalanche_condensed_replay.py   # seconds
"""
import os

import torch
from avalanche.benchmarks import nc_benchmark
from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset as tensor_dataset
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.logging import TextLogger
from avalanche.training import LwF
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin

from clbench.data.datasets import load_dataset
from clbench.nets.networks import build_network
from clbench.strategies.condensed_buffer import CondensedBuffer

env = os.environ.get
data = load_dataset(env("DATASET", "fashion-mnist"))  # offline: a local or system copy (digits ships with sklearn)
(train_x, train_y), (test_x, test_y) = data.normalised("train"), data.normalised("test")
benchmark = nc_benchmark(tensor_dataset(train_x, train_y), tensor_dataset(test_x, test_y),
                         n_experiences=int(env("STEPS", "5")), task_labels=False, seed=0)

model = build_network("convnet", data.channels, data.num_classes, data.image_size, seed=0, width=32)
memory = CondensedBuffer("ddm", f"{env('IPC', '10')}ipc", num_classes=data.num_classes, width=32,
                         opt={"iterations": int(env("ITERATIONS", "50"))})  # DDM, 50 iterations per experience
evaluator = EvaluationPlugin(accuracy_metrics(experience=True, stream=True), loggers=[TextLogger()])
strategy = LwF(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), torch.nn.CrossEntropyLoss(),
               alpha=1.0, temperature=2.0, train_mb_size=64, train_epochs=int(env("EPOCHS", "3")),
               eval_mb_size=256, plugins=[ReplayPlugin(memory.max_size, storage_policy=memory)], evaluator=evaluator)

for t, experience in enumerate(benchmark.train_stream):
    strategy.train(experience)
    results = strategy.eval(benchmark.test_stream[: t + 1])
    accuracy = results["Top1_Acc_Stream/eval_phase/test_stream/Task000"]
    print(f"experience {t}: classes {experience.classes_in_this_experience}, memory {len(memory.buffer)} "
          f"synthetic images, accuracy on the classes seen {100 * accuracy:.1f}%")
