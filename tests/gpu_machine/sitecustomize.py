"""Makes this machine's Python look like the GPU machine's, for a rehearsal of benchmarks/gpu_check.sh.

    python tests/gpu_machine/sitecustomize.py SITE        # once: SITE, the packages the GPU machine has too
    python tests/gpu_machine/sitecustomize.py SITE CARRIED  # and CARRIED, benchmarks/gpu_wheels.txt installed
    CLBENCH_GPU_SITE=SITE PYTHONPATH=tests/gpu_machine python ...   # then Python starts with SITE instead

With that folder first on PYTHONPATH, Python imports this file at start-up (the `site` module's sitecustomize
hook), and it
- takes the editable install away (its finder and path entries): clbench is found only through the repository
  on sys.path, as gpu_check.sh puts it there;
- replaces site-packages by SITE, a folder of links to the installed packages that the GPU machine has too
  (GPU_PACKAGES); what a run needs beyond those must come from the wheels gpu_check.sh carries
  (benchmarks/gpu_wheels.txt).
"""
from __future__ import annotations

import os
import re
import sys
import sysconfig
from pathlib import Path

# What the GPU machine's Python holds (its package list in the device tool's notes, read there on 2026-11-17;
# nvidia-* are the CUDA libraries, absent from a CPU install): everything else installed here is hidden.
GPU_PACKAGES = {"absl-py", "accelerate", "aiofiles", "aiohappyeyeballs", "aiohttp", "aiosignal", "annotated-doc",
    "anyio", "attrs", "botorch", "build", "certifi", "charset-normalizer", "chex", "click", "cloudpickle", "cmake",
    "colorama", "contourpy", "coverage", "cuda-bindings", "cuda-core", "cuda-pathfinder", "cuda-toolkit",
    "cupy-cuda13x", "cycler", "cython", "diffrax", "e3nn", "einops", "equinox", "etils", "execnet", "filelock",
    "flatbuffers", "flax", "fonttools", "formulaic", "frozenlist", "fsspec", "gpytorch", "grpcio", "h11", "h5py",
    "hf-xet", "httpcore", "httpx", "huggingface-hub", "humanize", "hypothesis", "idna", "imageio", "iniconfig",
    "interface-meta", "jax", "jax-cuda13-pjrt", "jax-cuda13-plugin", "jaxlib", "jaxtyping", "jinja2", "joblib",
    "kiwisolver", "lazy-loader", "lightning", "lightning-utilities", "linear-operator", "lineax", "llvmlite", "lxml",
    "markdown", "markdown-it-py", "markupsafe", "matplotlib", "mdurl", "meson", "ml-dtypes", "mpi4py", "mpmath",
    "msgpack", "multidict", "multipledispatch", "mypy-extensions", "nanobind", "narwhals", "networkx", "ninja",
    "numba", "numba-cuda", "numpy", "numpyro", "nvidia-cublas", "nvidia-cuda-cupti", "nvidia-cuda-nvrtc",
    "nvidia-cuda-runtime", "nvidia-cudnn-cu13", "nvidia-cufft", "nvidia-cufile", "nvidia-curand", "nvidia-cusolver",
    "nvidia-cusparse", "nvidia-cusparselt-cu13", "nvidia-ml-py", "nvidia-nccl-cu13", "nvidia-nvjitlink",
    "nvidia-nvshmem-cu13", "nvidia-nvtx", "onnx", "onnx-ir", "onnxruntime", "onnxscript", "opencv-python-headless",
    "optax", "opt-einsum", "opt-einsum-fx", "optimistix", "orbax-checkpoint", "packaging", "pandas", "pathspec",
    "patsy", "peft", "pillow", "pip", "pluggy", "portalocker", "prometheus-client", "propcache", "protobuf",
    "psutil", "pyarrow", "pybind11", "py-cpuinfo", "pygments", "pyparsing", "pyproject-hooks", "pyre-extensions",
    "pytest", "pytest-benchmark", "pytest-cov", "pytest-mock", "pytest-timeout", "pytest-xdist", "python-dateutil",
    "pytorch-lightning", "pyyaml", "regex", "requests", "rich", "sacrebleu", "safetensors", "scikit-build-core",
    "scikit-image", "scikit-learn", "scipy", "seaborn", "sentencepiece", "sentence-transformers", "setuptools",
    "shellingham", "simplejson", "six", "sortedcontainers", "statsmodels", "sympy", "tabulate", "tensorboard",
    "tensorboard-data-server", "tensorstore", "threadpoolctl", "tifffile", "tiktoken", "timm", "tokenizers", "toolz",
    "torch", "torchaudio", "torchdiffeq", "torch-geometric", "torchmetrics", "torchvision", "tqdm", "transformers",
    "treescope", "triton", "typer", "typing-extensions", "typing-inspect", "urllib3", "uvloop", "wadler-lindig",
    "werkzeug", "wheel", "wrapt", "xarray", "xxhash", "yarl", "zipp"}

# Here the same packages may be newer and need more: typer 0.29 needs pydantic, which the GPU machine's typer
# (it has no pydantic) does not.
NEEDED_HERE = {"pydantic", "pydantic-core", "annotated-types", "typing-inspection"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def build(dest: Path, site: Path | None = None) -> Path:
    """DEST: a link to each top-level module and metadata folder in `site` (this Python's site-packages) of the
    distributions in GPU_PACKAGES and nothing else."""
    from importlib.metadata import distributions

    site = site or Path(sysconfig.get_paths()["purelib"])
    allowed = {_normal(n) for n in GPU_PACKAGES | NEEDED_HERE}
    dest.mkdir(parents=True, exist_ok=True)
    for dist in distributions(path=[str(site)]):
        if _normal(dist.metadata["Name"]) not in allowed:
            continue
        tops = {Path(f).parts[0] for f in dist.files or [] if ".." not in Path(f).parts}
        for top in tops - {"__pycache__", "bin"}:
            entry, link = site / top, dest / top
            if entry.exists() and not link.exists():
                link.symlink_to(entry)
    return dest


def carry(dest: Path, requirements: Path) -> Path:
    """DEST: the installed files of each distribution in `requirements` (benchmarks/gpu_wheels.txt), copied from
    this Python: what `pip install --target DEST` of their wheels gives, without the network. A version that
    differs from the pinned one is refused (the list and the environment would disagree)."""
    import shutil
    from importlib.metadata import distribution

    dest.mkdir(parents=True, exist_ok=True)
    for line in requirements.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _, version = line.strip().partition("==")
        dist = distribution(name)
        if dist.version != version:
            raise RuntimeError(f"{requirements}: {name}=={version}, but {dist.version} is installed here")
        for f in dist.files or []:
            source = Path(dist.locate_file(f))
            if ".." not in Path(f).parts and source.is_file():
                (dest / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest / f)
    return dest


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
    if len(sys.argv) > 2:
        print(carry(Path(sys.argv[2]), Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_wheels.txt"))
elif os.environ.get("CLBENCH_GPU_SITE"):
    purelib = {os.path.realpath(p) for p in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])}
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
    sys.path[:] = [p for p in sys.path if "__editable__" not in p and os.path.realpath(p) not in purelib]
    sys.path.append(os.environ["CLBENCH_GPU_SITE"])
