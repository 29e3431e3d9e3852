"""A stand-in for wandb on the GPU machine, which has no wandb and no package index (benchmarks/gpu_check.sh puts
this folder on the path only where `import wandb` fails).

avalanche-lib imports wandb when it is imported (avalanche/evaluation/metrics/confusion_matrix.py), only to draw
confusion matrices for its Weights & Biases logger, which clbench never uses. The real wandb is 62 MB installed
with a dozen packages of its own, more than the working tree that travels can spare; anything that uses this
stand-in is told so.
"""


def __getattr__(name: str):
    raise ImportError(f"wandb.{name}: this is benchmarks/gpu_stubs/wandb, a stand-in for the GPU check; install "
                      f"wandb to use Weights & Biases")
