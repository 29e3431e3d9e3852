"""Bad input, refused before work starts: a corpus run through the real `clbench` command, one process each.

Every case is a command line (plus the files it reads, written into an empty folder first) and what the user
must get: the exit code (2 for bad input; 1 for a plugin that breaks the contract mid-run, or 0 for a warning),
no traceback, a message naming the problem, and, unless the case documents otherwise, nothing written or
changed on disk (the folder's files and their hashes, before and after).

Plus property tests (hypothesis): random TOML at the config loader and random JSON at the record reader load or
raise the project's own error (ClbenchError), nothing else.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN = ["run", "--dataset", "digits", "--steps", "2", "--orders", "1", "--memory", "3ipc", "--profile", "quick",
       "--device", "cpu", "--train", "epochs=1", "--out", "out"]
FAULTY = "tests.faulty_condensers"


def _record(**changes) -> str:
    """A valid two-step record (tests/test_report.py's), with top-level `changes` (None deletes a key)."""
    from tests.test_report import make_record

    record = make_record("random", {0: [50.0, 52.0]})
    for key, value in changes.items():
        record[key] = value
    return json.dumps(record)


GOOD = _record()
STATIC_ONLY = {"schema": "clbench.run", "schema_version": 1}


def _dist(name: str, entry_points: str) -> dict[str, str]:
    """An installed distribution, as importlib.metadata finds it on the path: METADATA and entry_points.txt."""
    folder = f"site/{name.replace('-', '_')}-1.0.dist-info"
    return {f"{folder}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
            f"{folder}/entry_points.txt": f"[clbench.condensers]\n{entry_points}\n"}


def _idx(values: list[int], shape: tuple[int, ...]) -> bytes:
    """An uncompressed idx file of unsigned bytes (the MNIST format: magic 0x08 and the dimensions' sizes)."""
    head = bytes([0, 0, 8, len(shape)]) + b"".join(n.to_bytes(4, "big") for n in shape)
    return head + bytes(values)


def _fashion_mnist_without(missing: int) -> dict[str, bytes]:
    """Valid Fashion-MNIST files of 20 training images in which class `missing` never occurs."""
    train = [c if c != missing else (c + 1) % 10 for c in range(10)] * 2
    return {"data/fashion-mnist/train-images-idx3-ubyte": _idx([7] * 20 * 784, (20, 28, 28)),
            "data/fashion-mnist/train-labels-idx1-ubyte": _idx(train, (20,)),
            "data/fashion-mnist/t10k-images-idx3-ubyte": _idx([7] * 10 * 784, (10, 28, 28)),
            "data/fashion-mnist/t10k-labels-idx1-ubyte": _idx(list(range(10)), (10,))}


IDM_FACTOR = ("'idm' on digits", "factor=3", "(8x8 px)", "use one of 1, 2, 4, 8")
CLASH = {**_dist("clbench-alpha", f"clash = {FAULTY}:NoName"), **_dist("clbench-beta", f"clash = {FAULTY}:Slow")}


@dataclass
class Case:
    id: str
    argv: list[str]
    says: tuple[str, ...]  # fragments the error (stderr) must contain
    code: int = 2
    files: dict[str, str | bytes] = field(default_factory=dict)
    writes: bool = False  # documented: the run started, its record keeps the error
    lines: int = 1  # lines on stderr for exit code 2 (0: typer's own usage message, a usage line and a box)
    site: bool = False  # put tmp/site on the path (installed plugin distributions)


CASES = [
    # -- run: the training recipe (--train), checked against TrainRecipe's fields and bounds
    Case("train-epochs-0", RUN + ["--train", "epochs=0"], ("epochs", ">= 1", "0")),
    Case("train-lr-negative", RUN + ["--train", "lr=-1"], ("lr", "> 0", "-1")),
    Case("train-batch-0", RUN + ["--train", "batch_size=0"], ("batch_size", ">= 1")),
    Case("train-epochs-float", RUN + ["--train", "epochs=1.5"], ("epochs", "int", "1.5")),
    Case("train-lr-nan", RUN + ["--train", "lr=nan"], ("lr", "finite")),
    Case("train-momentum-2", RUN + ["--train", "momentum=2"], ("momentum", "<= 1")),
    Case("train-decay-at", RUN + ["--train", "decay_at=1.5"], ("decay_at", "<= 1")),
    Case("train-weight-decay", RUN + ["--train", "weight_decay=-0.1"], ("weight_decay", ">= 0")),
    Case("train-unknown-key", RUN + ["--train", "epochz=3"], ("epochz", "known options", "epochs")),
    Case("train-not-assignment", RUN + ["--train", "epochs"], ("key=value",)),
    Case("train-dsa-strategy", RUN + ["--train", "dsa_strategy=spin"], ("dsa_strategy", "spin")),
    Case("train-amp-maybe", RUN + ["--train", "amp=maybe"], ("amp", "maybe")),
    # -- run: condenser options (--opt)
    Case("opt-no-options", RUN + ["--condenser", f"{FAULTY}:SeesAugment", "--opt", "nosuchkey=1"],
         ("SeesAugment", "has no options")),
    Case("opt-random-unknown", RUN + ["--opt", "nosuchkey=1"], ("nosuchkey", "known options: draw")),
    Case("opt-unknown", RUN + ["--condenser", "dm", "--opt", "iters=5"], ("iters", "known options", "iterations")),
    Case("opt-range", RUN + ["--condenser", "dm", "--opt", "lr=0"], ("lr", "> 0")),
    Case("opt-literal", RUN + ["--condenser", "dm", "--opt", "init=blue"], ("init", "blue", "real")),
    Case("opt-bool", RUN + ["--condenser", "dsa", "--opt", "dsa=perhaps"], ("dsa", "boolean")),
    Case("opt-herding-batch", RUN + ["--condenser", "herding", "--opt", "batch_size=-1"], ("batch_size", ">= 0")),
    # the dataset's images (digits: 8x8 px) cannot be cut into 3x3 parts: refused before the record is written
    Case("opt-idm-factor", RUN + ["--condenser", "idm", "--opt", "factor=3"], IDM_FACTOR),
    # -- run: names and sizes
    Case("condenser-unknown", RUN + ["--condenser", "dn"], ("unknown condenser", "'dn'", "dm")),
    Case("condenser-no-module", RUN + ["--condenser", "nosuch.module:X"], ("cannot import", "nosuch.module")),
    Case("condenser-no-class", RUN + ["--condenser", f"{FAULTY}:Missing"], ("no attribute", "Missing")),
    Case("condenser-not-a-class", RUN + ["--condenser", f"{FAULTY}:NOT_A_CONDENSER"], ("not a condenser",)),
    Case("dataset-unknown", RUN + ["--dataset", "digitz"], ("unknown dataset", "digitz", "digits")),
    Case("network-unknown", RUN + ["--network", "convnot"], ("--network", "convnot")),
    Case("memory-bad", RUN + ["--memory", "lots"], ("--memory", "lots")),
    Case("memory-0ipc", RUN + ["--memory", "0ipc"], ("--memory", "0ipc")),
    Case("steps-0", RUN + ["--steps", "0"], ("--steps", "at least 1")),
    Case("steps-not-divisor", RUN + ["--steps", "3"], ("3", "10")),
    Case("orders-0", RUN + ["--orders", "0"], ("--orders", "at least 1")),
    Case("first-order-negative", RUN + ["--first-order", "-1"], ("--first-order",)),
    Case("profile-unknown", RUN + ["--profile", "fast"], ("--profile", "fast", "quick")),
    Case("device-unknown", RUN + ["--device", "tpu9"], ("--device", "tpu9")),
    Case("width-0", RUN + ["--width", "0"], ("--width", "positive")),
    Case("nets-0", RUN + ["--nets", "0"], ("--nets", "at least 1")),
    Case("jobs-0", RUN + ["--jobs", "0"], ("--jobs", "at least 1")),
    Case("orders-not-int", RUN + ["--orders", "two"], ("--orders", "integer"), lines=0),
    Case("data-dir-missing", RUN + ["--data-dir", "nowhere"], ("--data-dir", "nowhere")),
    # -- sets made elsewhere: precomputed and export
    Case("precomputed-no-path", RUN + ["--condenser", "precomputed"], ("precomputed", "--opt path=FILE")),
    Case("precomputed-missing-file", RUN + ["--condenser", "precomputed", "--opt", "path=gone.pt"],
         ("gone.pt", "no such file")),
    Case("precomputed-not-tensors", RUN + ["--condenser", "precomputed", "--opt", "path=set.pt"],
         ("set.pt", "cannot read it"), files={"set.pt": "not a tensor file"}),
    Case("export-missing", ["export", "gone.json", "--format", "clbench", "--out", "m.pt"], ("gone.json",)),
    Case("export-format", ["export", "r.json", "--format", "npz", "--out", "m.pt"],
         ("--format npz", "reference-cl"), files={"r.json": GOOD}),
    Case("out-is-a-file", RUN[:-1] + ["afile"], ("--out afile", "a file, not a folder"), files={"afile": "x"}),
    Case("out-below-a-file", RUN[:-1] + ["afile/sub"], ("--out afile/sub", "a file, not a folder (afile is)"),
         files={"afile": "x"}),
    Case("condense-out-is-a-file", ["condense", "--dataset", "digits", "--profile", "quick", "--device", "cpu",
                                    "--out", "afile"], ("--out afile", "a file, not a folder"), files={"afile": "x"}),
    # valid files in which a class has no training images: named, not "use at most 0ipc" (or a crash later)
    Case("data-class-missing", RUN + ["--dataset", "fashion-mnist", "--data-dir", "data"],
         ("no training images of class 7 (Sneaker)", "incomplete"), files=_fashion_mnist_without(7)),
    Case("data-class-missing-static", ["condense", "--dataset", "fashion-mnist", "--data-dir", "data", "--ipc", "1",
                                        "--profile", "quick", "--device", "cpu", "--out", "out"],
         ("no training images of class 7 (Sneaker)",), files=_fashion_mnist_without(7)),
    Case("data-class-missing-joint", RUN + ["--dataset", "fashion-mnist", "--data-dir", "data", "--learner", "joint"],
         ("no training images of class 7",), files=_fashion_mnist_without(7)),
    # -- run: --config files
    Case("config-missing", RUN + ["--config", "run.toml"], ("--config", "run.toml", "no such file")),
    Case("config-invalid", RUN + ["--config", "run.toml"], ("--config", "not valid TOML"),
         files={"run.toml": "orders = \n"}),
    Case("config-orders-str", RUN + ["--config", "run.toml"],
         ('--config run.toml: orders must be an integer, got "two"',), files={"run.toml": 'orders = "two"\n'}),
    Case("config-steps-str", ["run", "--config", "run.toml"], ("steps must be an integer", '"2"'),
         files={"run.toml": 'steps = "2"\n'}),
    Case("config-unknown-key", RUN + ["--config", "run.toml"], ("unknown keys", "epochs"),
         files={"run.toml": "epochs = 3\n"}),
    Case("config-train-not-table", RUN + ["--config", "run.toml"], ("train must be a table", "3"),
         files={"run.toml": "train = 3\n"}),
    Case("config-epochs-float", ["run", "--config", "run.toml"], ("epochs must be an integer", "1.5"),
         files={"run.toml": 'dataset = "digits"\n[train]\nepochs = 1.5\n'}),
    Case("config-batch-float", RUN + ["--config", "run.toml"], ("batch_size must be an integer", "1.5"),
         files={"run.toml": "[train]\nbatch_size = 1.5\n"}),
    Case("config-dsa-int", RUN + ["--config", "run.toml"], ("dsa must be true or false", "1"),
         files={"run.toml": "[train]\ndsa = 1\n"}),
    Case("config-lr-negative", RUN + ["--config", "run.toml"], ("lr must be > 0", "-0.5"),
         files={"run.toml": "[train]\nlr = -0.5\n"}),
    Case("config-opt-no-options", RUN + ["--condenser", f"{FAULTY}:SeesAugment", "--config", "run.toml"],
         ("SeesAugment", "has no options"),
         files={"run.toml": "[opt]\nk = 3\n"}),
    Case("config-width-bool", RUN + ["--config", "run.toml"], ("width must be", "true"),
         files={"run.toml": "width = true\n"}),
    # -- run / resume: records
    Case("run-resume-missing", RUN + ["--resume", "gone.json"], ("gone.json", "cannot read")),
    Case("resume-missing", ["resume", "gone.json"], ("gone.json", "cannot read")),
    Case("resume-not-json", ["resume", "r.json"], ("r.json", "not valid JSON"), files={"r.json": "{oops"}),
    Case("resume-orders-null", ["resume", "r.json"], ("damaged", '"orders" must be a list, got null'),
         files={"r.json": _record(orders=None)}),
    Case("resume-no-run-config", ["resume", "r.json"], ("does not hold the options",),
         files={"r.json": _record(complete=False)}),
    Case("resume-run-config-type", ["resume", "r.json"], ("damaged", 'orders must be an integer, got "two"'),
         files={"r.json": _record(complete=False, run_config={"orders": "two", "dataset": "digits"})}),
    # -- compare
    Case("compare-orders-null", ["compare", "."], ("warning: skipped", "bad.json", '"orders" must be a list'),
         code=0, files={"good.json": GOOD, "bad.json": _record(orders=None)}),
    Case("compare-config-list", ["compare", "."], ("warning: skipped", '"config" must be an object'), code=0,
         files={"good.json": GOOD, "bad.json": _record(config=[1, 2])}),
    Case("compare-accuracy-str", ["compare", "."], ("warning: skipped", "accuracies[1]", "must be a number"), code=0,
         files={"good.json": GOOD, "bad.json": GOOD.replace("52.0", '"52"')}),
    Case("compare-only-bad", ["compare", "."], ("warning: skipped", "no run records found"), lines=2,
         files={"bad.json": _record(orders=None)}),
    Case("compare-missing", ["compare", "gone"], ("gone", "no such file")),
    Case("compare-format", ["compare", ".", "--format", "xml"], ("--format", "xml"), files={"good.json": GOOD}),
    Case("compare-baseline", ["compare", ".", "--baseline", "dn"], ("--baseline", "dn", "random"),
         files={"good.json": GOOD}),
    Case("compare-kind", ["compare", "."], ("warning: skipped", '"kind"'), code=0,
         files={"good.json": GOOD, "bad.json": _record(kind="weird")}),
    # -- plot
    Case("plot-curve-missing", ["plot", "curve", "gone", "--out", "c.png"], ("gone", "no such file")),
    Case("plot-memory-not-record", ["plot", "memory", "r.json", "--out", "m.png"], ("r.json", "not a clbench"),
         files={"r.json": json.dumps({"hello": 1})}),
    # -- condensers
    Case("condensers-unknown", ["condensers", "dn"], ("unknown condenser", "'dn'", "dm")),
    Case("condensers-clash", ["condensers", "clash"], ("clash", "clbench-alpha", "clbench-beta"), files=CLASH,
         site=True),
    Case("run-clash", RUN + ["--condenser", "clash"], ("clash", "clbench-alpha", "clbench-beta"), files=CLASH,
         site=True),
    # -- condense (static)
    Case("condense-ipc-0", ["condense", "--dataset", "digits", "--ipc", "0", "--device", "cpu"], ("--ipc",)),
    Case("condense-eval-nets", ["condense", "--dataset", "digits", "--eval-nets", "convnet,nosuch", "--device",
                                "cpu"], ("nosuch",)),
    Case("condense-train", ["condense", "--dataset", "digits", "--train", "lr=0", "--device", "cpu"],
         ("lr", "> 0")),
    Case("condense-idm-factor", ["condense", "--dataset", "digits", "--condenser", "idm", "--opt", "factor=3",
                                 "--device", "cpu", "--out", "out"], IDM_FACTOR),
    # -- diagnose
    Case("diagnose-missing", ["diagnose", "gone.json"], ("gone.json",)),
    Case("diagnose-damaged", ["diagnose", "r.json"], ("damaged", '"orders"'), files={"r.json": _record(orders=7)}),
    Case("diagnose-width-not-convnet", ["diagnose", "r.json", "--network", "resnet18", "--width", "16"],
         ("--width applies to ConvNet only", "resnet18"), files={"r.json": _record()}),
    Case("width-not-convnet", RUN + ["--network", "alexnet", "--width", "16"], ("--width applies to ConvNet only",)),
    # -- sweep
    Case("sweep-missing", ["sweep", "gone.toml"], ("gone.toml", "no such file")),
    Case("sweep-bad-type", ["sweep", "s.toml", "--dry-run"], ("orders", "two"),
         files={"s.toml": 'condenser = "random"\ndataset = "digits"\norders = "two"\n'}),
    Case("sweep-unknown-key", ["sweep", "s.toml", "--dry-run"], ("epochz",),
         files={"s.toml": 'dataset = "digits"\nepochz = 3\n'}),
    Case("sweep-train-range", ["sweep", "s.toml", "--dry-run"], ("epochs", ">= 1"),
         files={"s.toml": 'dataset = "digits"\n[train]\nepochs = 0\n'}),
    Case("sweep-launcher", ["sweep", "s.toml", "--launcher", "mpi"], ("launcher", "mpi"),
         files={"s.toml": 'dataset = "digits"\n'}),
    # -- round two (issue 30): seeds numpy would refuse mid-run, files that are not UTF-8 TOML, spec types
    Case("seed-negative-run", RUN + ["--seed", "-5"], ("--seed -5", "0 to 4294967295")),
    Case("seed-too-big-run", RUN + ["--seed", str(2**32)], ("--seed 4294967296", "0 to 4294967295")),
    Case("seed-negative-condense", ["condense", "--dataset", "digits", "--seed", "-5", "--device", "cpu"],
         ("--seed -5",)),
    Case("seed-negative-config", RUN + ["--config", "c.toml"], ("--seed -5",), files={"c.toml": "seed = -5\n"}),
    Case("seed-negative-sweep", ["sweep", "s.toml", "--dry-run"], ("--seed -5",),
         files={"s.toml": 'dataset = "digits"\nseed = [0, -5]\n'}),
    Case("first-order-past-numpy", RUN + ["--first-order", str(2**32)], ("--first-order 4294967296", "at most")),
    Case("config-not-utf8", RUN + ["--config", "c.toml"], ("c.toml", "not valid TOML", "not UTF-8 at byte 11"),
         files={"c.toml": b"seed = 1\n# \xff\xfe\n"}),
    Case("sweep-not-utf8", ["sweep", "s.toml", "--dry-run"], ("not UTF-8 at byte 0",), files={"s.toml": b"\xff"}),
    Case("config-a-folder", RUN + ["--config", "conf"], ("--config", "a folder, not a TOML file"),
         files={"conf/x.toml": ""}),
    Case("sweep-variant-opt", ["sweep", "s.toml", "--dry-run"], ("[[variants]] opt must be a table",),
         files={"s.toml": 'dataset = "digits"\n[[variants]]\nopt = 3\n'}),
    Case("sweep-folder-number", ["sweep", "s.toml", "--dry-run"], ("[sweep] folder = 3", "give a path"),
         files={"s.toml": 'dataset = "digits"\n[sweep]\nfolder = 3\n'}),
    # -- plugins that break the contract mid-run: named, exit 1; the record keeps the error (documented)
    Case("plugin-float64", RUN + ["--condenser", f"{FAULTY}:Float64Images"],
         ("float64-images", "dtype torch.float64", "float32"), code=1, writes=True),
    Case("plugin-modifies-real", RUN + ["--condenser", f"{FAULTY}:ModifiesRealImages"],
         ("modifies-real-images", "in place"), code=1, writes=True),
    Case("plugin-not-a-set", RUN + ["--condenser", f"{FAULTY}:NotASet"], ("not-a-set", "not a SyntheticSet"),
         code=1, writes=True),
    Case("plugin-sys-exit", RUN + ["--condenser", f"{FAULTY}:Exits"], ("'exits'", "sys.exit(0)"), code=1,
         writes=True),
    Case("plugin-init-raises", RUN + ["--condenser", f"{FAULTY}:BrokenInit"],
         ("condenser 'broken-init' could not be built", "RuntimeError: needs a license server")),
    Case("plugin-option-without-default", RUN + ["--condenser", f"{FAULTY}:NoDefault"],
         ("option 'strength'", "NoDefaultOptions has no default", "give it one")),
    Case("condensers-option-without-default", ["condensers", f"{FAULTY}:NoDefault"],
         ("option 'strength'", "has no default")),
    Case("plugin-duck-typed", RUN + ["--condenser", f"{FAULTY}:DuckTyped"],
         ("is not a Condenser", "subclass clbench.condensers.base.Condenser")),
    Case("plugin-bad-shrink", RUN[:RUN.index("--memory")] + ["--memory", "10"] + RUN[RUN.index("--memory") + 2:]
         + ["--condenser", f"{FAULTY}:BadShrink"], ("'bad-shrink'", "shrink(images of 2, keep=1)", "0..1"),
         code=1, writes=True),
    Case("diagnose-over-a-record", ["diagnose", "r.json", "--out", "r.json"], ("--out r.json", "not a diagnosis"),
         files={"r.json": '{"schema": "clbench.run", "kind": "continual"}'}),
]


def _listing(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _write_files(case: Case, folder: Path) -> dict[str, str]:
    """The case's files written into `folder`; the listing before the command runs."""
    folder.mkdir(parents=True)
    for name, content in case.files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return _listing(folder)


def _env(case: Case, folder: Path) -> dict[str, str]:
    path = [str(REPO)] + ([str(folder / "site")] if case.site else [])
    return {"PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> dict:
    """Every selected case, each in its own `clbench` process: forked, $CLBENCH_TEST_WORKERS at a time (2 by
    default: the development machine has 2 cores), from one process that imported torch and clbench once
    (tests/fork_runner.py: a case is otherwise mostly start-up); a case with plugin distributions on its path
    runs as a plain subprocess. Returns {id: (result, listing before, listing after, folder)}."""
    selected = {item.callspec.params["case"].id: item.callspec.params["case"] for item in request.session.items
                if item.module is request.module and getattr(item, "originalname", "") == "test_bad_input"}
    root = tmp_path_factory.mktemp("bad-inputs")
    streams = tmp_path_factory.mktemp("bad-inputs-streams")  # outside the case folders, which are compared
    before = {cid: _write_files(case, root / cid) for cid, case in selected.items()}
    done: dict[str, subprocess.CompletedProcess] = {}
    forked = [{"id": cid, "argv": case.argv, "cwd": str(root / cid), "env": _env(case, root / cid),
               "stdout": str(streams / f"{cid}.out"), "stderr": str(streams / f"{cid}.err")}
              for cid, case in selected.items() if not case.site]
    if forked:
        workers = os.environ.get("CLBENCH_TEST_WORKERS", "2")
        runner = subprocess.run([sys.executable, "-m", "tests.fork_runner", workers],
                                input=json.dumps(forked), cwd=REPO, capture_output=True, text=True, timeout=1800,
                                env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
        assert runner.returncode == 0, runner.stderr
        codes = json.loads(runner.stdout.strip().splitlines()[-1])
        for case in forked:
            cid = case["id"]
            done[cid] = subprocess.CompletedProcess(case["argv"], codes[cid], Path(case["stdout"]).read_text(),
                                                    Path(case["stderr"]).read_text())
    for cid, case in selected.items():
        if case.site:
            done[cid] = subprocess.run([sys.executable, "-m", "clbench", *case.argv], cwd=root / cid,
                                       env={**os.environ, **_env(case, root / cid)}, capture_output=True, text=True,
                                       timeout=600)
    return {cid: ((done[cid], before[cid], _listing(root / cid)), root / cid) for cid in selected}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, outcomes: dict) -> None:
    (done, before, after), folder = outcomes[case.id]
    err = done.stderr
    assert "Traceback" not in err, err
    assert done.returncode == case.code, (done.returncode, err, done.stdout[-2000:])
    for fragment in case.says:
        assert fragment in err, (fragment, err)
    if case.code == 2 and case.lines:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == case.lines and lines[-1].startswith("error: "), err  # one line (after any warning)
    if not case.writes:
        assert after == before, "files were written or changed"
    else:
        records = list((folder / "out").glob("*.json"))
        assert len(records) == 1 and json.loads(records[0].read_text())["error"]["type"] == "CondenserError"


def test_corpus_size() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


# -- property tests: the config loader and the record reader raise nothing but ClbenchError -------------------
hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                     st.text(max_size=8))
_keys = st.sampled_from(["condenser", "dataset", "memory", "steps", "orders", "first_order", "profile", "device",
                         "seed", "network", "networks_per_step", "width", "opt", "train", "out", "data_dir",
                         "jobs", "epochs", "lr", "batch_size", "dsa", "amp", "iterations", "x"])
_toml_values = st.recursive(st.one_of(st.booleans(), st.integers(-10**6, 10**6),
                                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)),
                            lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                    st.dictionaries(_keys, inner, max_size=3)), max_leaves=8)


def _toml(table: dict, prefix: str = "") -> str:
    """A dict as TOML (enough of it for these tests: scalars, arrays, nested tables)."""
    lines, tables = [], []
    for key, value in table.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {json.dumps(value) if not isinstance(value, bool) else str(value).lower()}")
    out = "\n".join(lines) + "\n"
    for key, value in tables:
        name = f"{prefix}{key}"
        out += f"[{name}]\n" + _toml(value, f"{name}.")
    return out


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(st.dictionaries(_keys, _toml_values, max_size=6))
def test_random_config_files(tmp_path_factory, data: dict) -> None:
    from clbench.core.errors import ClbenchError
    from clbench.core.options import build_options
    from clbench.protocol import config as cfg
    from clbench.training.recipe import TrainRecipe

    path = tmp_path_factory.mktemp("toml") / "run.toml"
    path.write_text(_toml(data))
    try:
        config = cfg.merge(cfg.RunConfig(), cfg.load_toml(path))
        config.validate()
        build_options(TrainRecipe, config.train, "quick", owner="--train")
    except ClbenchError:
        pass


_json = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                     max_leaves=10)


def _mutations():
    """A valid record with one field somewhere replaced by random JSON."""
    record = json.loads(GOOD)
    paths = [("orders",), ("config",), ("summary",), ("orders", 0), ("orders", 0, "steps"),
             ("orders", 0, "steps", 1, "accuracies"), ("orders", 0, "steps", 0, "class_accuracy"),
             ("orders", 0, "order"), ("config", "condenser"), ("kind",), ("run_id",), ("environment",)]
    return st.tuples(st.sampled_from(paths), _json).map(lambda pv: _replace(record, *pv))


def _replace(record: dict, path: tuple, value) -> dict:
    record = json.loads(json.dumps(record))
    target = record
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return record


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(st.one_of(_json, st.dictionaries(st.text(max_size=8), _json, max_size=5), _mutations()))
def test_random_records(tmp_path_factory, record) -> None:
    from clbench.core.errors import ClbenchError
    from clbench.records.record import load_record
    from clbench.records.summary import summarise
    from clbench.report.rows import summary_rows

    path = tmp_path_factory.mktemp("rec") / "r.json"
    path.write_text(json.dumps(record))
    try:
        loaded = load_record(path)
    except ClbenchError:
        return
    if loaded.get("kind", "continual") == "continual":
        summarise(loaded["orders"])  # what a reader does next: must not raise for a record that loaded
        summary_rows([loaded])


def test_union_types_are_shown_as_users_type_them() -> None:
    from clbench.core.options import describe
    from clbench.training.recipe import TrainRecipe

    types = {row["name"]: row["type"] for row in describe(TrainRecipe)}
    assert types["amp"] == "bool | auto" and "Union" not in " ".join(types.values())
    assert dataclasses.is_dataclass(TrainRecipe)


# -- fast, in-process: provenance, one name per condenser, collisions, the harness's contract checks -----------
def test_condenser_source_names_the_code(tmp_path) -> None:
    from clbench.condensers import canonical_name, condenser_source

    assert canonical_name("clbench.condensers.dm:DM") == "dm" and canonical_name("dm") == "dm"
    built_in = condenser_source("clbench.condensers.dm:DM")
    assert built_in["name"] == "dm" and built_in["distribution"] == "clbench" and "sha256" not in built_in
    plugin = condenser_source(f"{FAULTY}:Slow")
    digest = hashlib.sha256((REPO / "tests" / "faulty_condensers.py").read_bytes()).hexdigest()
    assert plugin["name"] == f"{FAULTY}:Slow" and plugin["sha256"] == digest
    assert plugin["file"].endswith("faulty_condensers.py") and "distribution" not in plugin  # no package holds it


def test_compare_keys_one_plugin_by_one_name(tmp_path, cli) -> None:
    from tests.test_report import make_record

    by_name = make_record("dm", {0: [60.0, 62.0]})
    by_path = make_record("clbench.condensers.dm:DM", {1: [58.0, 61.0]}, created="2026-01-02T00:00:00")
    (tmp_path / "a.json").write_text(json.dumps(by_name))
    (tmp_path / "b.json").write_text(json.dumps(by_path))
    code, out, err = cli("compare", str(tmp_path), "--format", "csv")
    assert code == 0, err
    rows = [line for line in out.splitlines()[1:] if line.strip()]
    assert len(rows) == 1 and rows[0].count("dm") >= 1 and "clbench.condensers" not in out


def test_collisions_are_listed_and_refused_by_name_only() -> None:
    from clbench.core.errors import UsageError
    from clbench.core.registry import Entry, Registry

    registry: Registry = Registry("condenser", entry_point_group=None)
    registry.add("dm", object)
    registry._collisions["dm"] = [registry._entries["dm"], Entry("dm", "package clbench-other", "other.mod:DM")]
    registry.add("random", int)
    assert registry.get("random") is int  # another name still works
    with pytest.raises(UsageError, match="registered twice: by built-in and package clbench-other"):
        registry.get("dm")
    assert list(registry.collisions()) == ["dm"]


def test_harness_names_float64_and_in_place_changes() -> None:
    from clbench.core.errors import CondenserError
    from clbench.memory.checks import run_condenser
    from clbench.testing import make_task
    from tests.faulty_condensers import Float64Images, ModifiesRealImages

    for cls, message in ((Float64Images, "dtype torch.float64; expected torch.float32"),
                         (ModifiesRealImages, "changed the real images or labels it was given")):
        with pytest.raises(CondenserError, match=message.replace("(", r"\(")):
            run_condenser(cls(), make_task(ipc=2))


def test_non_finite_facts_are_written_as_null(tmp_path) -> None:
    """A plugin's facts holding NaN or infinity: the record stays JSON that a strict reader accepts."""
    from clbench.protocol.config import RunConfig
    from clbench.protocol.continual import run

    path, _ = run(RunConfig(condenser=f"{FAULTY}:NanFacts", dataset="digits", steps=2, orders=1, memory="2ipc",
                            profile="quick", device="cpu", width=8, train={"epochs": 1}, out=str(tmp_path)))

    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")

    record = json.loads(path.read_text(), parse_constant=refuse)
    facts = record["orders"][0]["steps"][0]["condenser_facts"]
    assert facts == {"loss": None, "losses": [1.0, None], "ok": 2.5}


def test_compare_opens_only_regular_files_and_counts_the_rest(tmp_path, cli) -> None:
    """A FIFO named *.json (opening it would block), a link to /dev/zero (reading it never ends), a file over
    the size cap, and many junk files: each skipped, ten warnings shown and the rest counted."""
    import os

    from clbench.records import record as rec

    (tmp_path / "good.json").write_text(GOOD)
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    for i in range(30):
        (tmp_path / f"junk{i:02}.json").write_text("[]")
    code, out, err = cli("compare", str(tmp_path))
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert code == 0 and "random" in out
    assert len(warnings) == 11  # 32 skipped: 30 junk, the FIFO and the link
    assert warnings[-1] == "warning: ... and 22 more files skipped for the same kinds of reasons"
    for name, why in (("fifo.json", "a FIFO"), ("zero.json", "a character device")):
        with pytest.raises(rec.RecordError, match=f"not a regular file \\({why}\\)"):
            rec.load_record(tmp_path / name)
    code, _, err = cli("resume", str(tmp_path / "fifo.json"))
    assert code == 2 and "not a regular file" in err
    big = tmp_path / "big.json"
    big.write_text(" " * 64)
    original = rec.MAX_RECORD_BYTES
    rec.MAX_RECORD_BYTES = 32
    try:
        with pytest.raises(rec.RecordError, match="is 64 bytes, more than the 32 bytes"):
            rec.load_record(big)
    finally:
        rec.MAX_RECORD_BYTES = original


def test_json_that_is_not_utf8_or_nested_too_deeply_is_skipped_by_every_reader(tmp_path, cli) -> None:
    """Bytes that are not UTF-8 and an array nested 100000 deep raise UnicodeDecodeError and RecursionError, not
    JSON errors: compare, report and sweep --status must still name the file in one line."""
    (tmp_path / "good.json").write_text(GOOD)
    (tmp_path / "latin.json").write_bytes(b"\xff\xfe{}")
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000)
    code, out, err = cli("compare", str(tmp_path))
    assert code == 0 and "random" in out
    assert "latin.json is not valid JSON (not UTF-8 at byte 0)" in err and "deep.json is not valid JSON (nested" in err
    code, out, err = cli("report", str(tmp_path), "--out", str(tmp_path / "page.html"))
    assert code == 0, err
    assert "latin.json" in err and "deep.json" in err and "1 record(s)" in out
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / ".sweep.json").write_bytes(b"\xff")
    code, _, err = cli("sweep", "--status", str(sweep))
    assert code == 2 and "not a sweep folder" in err


def test_control_characters_from_records_are_shown_escaped(tmp_path, cli) -> None:
    """A record whose condenser name holds an ANSI escape (clear screen) and a bidi override: compare shows
    them as visible escapes, never sends them to the terminal; an error message quoting one does the same."""
    from clbench.core.text import printable

    assert printable("dm\x1b[2J\u202eevil\n") == "dm\\x1b[2J\\u202eevil\n"
    assert printable("a\tb\nc", multiline=False) == "a\\x09b\\x0ac" and printable("héllo wörld") == "héllo wörld"
    (tmp_path / "r.json").write_text(_record(config={**json.loads(GOOD)["config"], "condenser": "dm\x1b[2J\u202eevil"}))
    code, out, err = cli("compare", str(tmp_path))
    assert code == 0 and "\x1b" not in out + err and "\u202e" not in out + err
    assert "\\x1b" in out  # shown, escaped
    code, _, err = cli("run", "--condenser", "no\x1bsuch", "--dataset", "digits")
    assert code == 2 and "\x1b" not in err and "no\\x1bsuch" in err
