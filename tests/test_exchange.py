"""Sets made elsewhere and sets made here: `clbench export` writes a record's memories in the reference layouts
(read back with the plain indexing the reference code uses), and `--condenser precomputed` evaluates such files
under clbench's protocols: a DM memory exported and evaluated again gives the record's accuracies exactly."""
from __future__ import annotations

import copy

import pytest
import torch

from clbench.core.errors import UsageError
from clbench.protocol.config import RunConfig

TINY = dict(dataset="digits", steps=2, orders=2, memory="3ipc", width=8, profile="quick", device="cpu",
            train={"epochs": 3})


@pytest.fixture(scope="module")
def dm_run(tmp_path_factory):
    from clbench.protocol.continual import run

    out = tmp_path_factory.mktemp("dm")
    return run(RunConfig(condenser="dm", out=str(out), opt={"iterations": 3}, **TINY))


def test_export_reference_cl_is_indexed_as_the_reference_indexes_it(dm_run, tmp_path):
    from clbench.records.export import export_record

    path, record = dm_run
    files = export_record(path, "reference-cl", str(tmp_path / "cl_DM_digits_2steps_seed{order}.pt"))
    assert [f.name for f in files] == ["cl_DM_digits_2steps_seed0.pt", "cl_DM_digits_2steps_seed1.pt"]
    for entry, file in zip(record["orders"], files):
        memory = torch.load(path.parent / entry["memory_file"], weights_only=True)
        data = torch.load(file)["data"]  # CL_DM.py: data[step][0] images, data[step][1] labels
        assert len(data) == 2
        for step, group in enumerate(entry["steps"]):
            images, labels = data[step][0], data[step][1]
            assert sorted(set(labels.tolist())) == sorted(group["classes"]) and len(labels) == 3 * len(group["classes"])
            for c in group["classes"]:
                assert torch.equal(images[labels == c], memory["images"][memory["labels"] == c])


def test_exported_memory_evaluated_with_precomputed_gives_the_records_accuracies(dm_run, tmp_path):
    from clbench.protocol.continual import run
    from clbench.records.export import export_record

    path, record = dm_run
    export_record(path, "reference-cl", str(tmp_path / "dm-order{order}.pt"))
    _, again = run(RunConfig(condenser="precomputed", out=str(tmp_path / "eval"),
                             opt={"path": str(tmp_path / "dm-order{order}.pt")}, **TINY))
    for mine, theirs in zip(again["orders"], record["orders"]):
        assert [s["accuracies"] for s in mine["steps"]] == [s["accuracies"] for s in theirs["steps"]]
        assert [s["class_accuracy"] for s in mine["steps"]] == [s["class_accuracy"] for s in theirs["steps"]]
        assert mine["steps"][0]["condenser_facts"]["format"] == "reference-cl"


def test_export_never_replaces_a_file_and_needs_the_placeholder(dm_run, tmp_path):
    from clbench.records.export import export_record

    path, _ = dm_run
    with pytest.raises(UsageError, match=r"put \{order\} in the name"):
        export_record(path, "reference-cl", str(tmp_path / "one.pt"))
    assert not (tmp_path / "one.pt").exists()
    (tmp_path / "o1.pt").write_text("mine")
    with pytest.raises(UsageError, match="o1.pt exists"):
        export_record(path, "clbench", str(tmp_path / "o{order}.pt"))
    assert (tmp_path / "o1.pt").read_text() == "mine" and not (tmp_path / "o0.pt").exists()
    with pytest.raises(UsageError, match="continual record"):
        export_record(path, "reference-static", str(tmp_path / "s.pt"))


def _reference_static_file(path, ds, per_class: int, experiments: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A file in main_DM.py's layout, made by hand: real images of each class, normalised with the dataset's
    mean and std, one [image_syn, label_syn] pair per experiment."""
    x, y = ds.normalised("train")
    sets = []
    for e in range(experiments):
        picks = torch.cat([torch.nonzero(y == c).flatten()[e * per_class:(e + 1) * per_class] for c in range(10)])
        sets.append((x[picks].clone(), torch.arange(10).repeat_interleave(per_class)))
    torch.save({"data": [[a, b] for a, b in sets], "accs_all_exps": {"ConvNet": [0.5]}}, path)
    return sets


def test_a_reference_static_file_is_evaluated_under_the_static_protocol(tmp_path):
    """Its experiment K is the set evaluated, images as saved: the same accuracies as the same images given as a
    clbench file."""
    from clbench.data.datasets import load_dataset
    from clbench.protocol.static import StaticConfig, run_static

    ds = load_dataset("digits")
    sets = _reference_static_file(tmp_path / "res_DM_digits_ConvNet_2ipc.pt", ds, 2, 2)
    torch.save({"images": sets[1][0], "labels": sets[1][1]}, tmp_path / "mine.pt")
    common = dict(dataset="digits", ipc=2, sets=1, evals=1, width=8, profile="quick", device="cpu",
                  train={"epochs": 3})
    _, ref = run_static(StaticConfig(condenser="precomputed", out=str(tmp_path / "a"), **common,
                                     opt={"path": str(tmp_path / "res_DM_digits_ConvNet_2ipc.pt"), "experiment": 1}))
    _, own = run_static(StaticConfig(condenser="precomputed", out=str(tmp_path / "b"), **common,
                                     opt={"path": str(tmp_path / "mine.pt")}))
    assert ref["sets"][0]["accuracies"] == own["sets"][0]["accuracies"]
    assert ref["sets"][0]["condenser_facts"]["format"] == "reference-static"
    saved = torch.load(tmp_path / "a" / ref["sets"][0]["synthetic_file"], weights_only=True)
    assert torch.equal(saved["images"], sets[1][0])


@pytest.mark.parametrize("damage,says", [
    ("pixels", "look like pixels"),
    ("missing-class", "no images of class 9"),
    ("shape", "images of shape (1, 4, 4)"),
    ("not-a-set", "not a condensed-set file"),
    ("experiment", "experiment 5 asked for, but the file holds 1"),
])
def test_a_file_that_does_not_fit_is_one_line_before_any_work(damage, says, tmp_path):
    from clbench.protocol.static import StaticConfig, run_static

    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(20, 1, 8, 8, generator=g), torch.arange(10).repeat(2)
    opt = {"path": str(tmp_path / "set.pt")}
    if damage == "pixels":
        images = images.abs()
    elif damage == "missing-class":
        labels = torch.where(labels == 9, 8, labels)
    elif damage == "shape":
        images = images[:, :, :4, :4].contiguous()
    elif damage == "experiment":
        opt["experiment"] = 5
    data = {"weights": torch.zeros(3)} if damage == "not-a-set" else {"data": [[images, labels]]}
    torch.save(data, tmp_path / "set.pt")
    with pytest.raises(UsageError, match=says.replace("(", r"\(").replace(")", r"\)")):
        run_static(StaticConfig(condenser="precomputed", dataset="digits", ipc=2, sets=1, evals=1, width=8,
                                profile="quick", device="cpu", out=str(tmp_path / "out"), opt=opt))
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.json"))


def test_export_cli_writes_and_says_where(dm_run, tmp_path, cli):
    path, _ = dm_run
    code, out, err = cli("export", str(path), "--format", "clbench", "--out", str(tmp_path / "m{order}.pt"))
    assert code == 0, err
    assert f"wrote {tmp_path / 'm0.pt'}" in out and (tmp_path / "m1.pt").is_file()
    code, _, err = cli("export", str(path), "--format", "tfrecord", "--out", str(tmp_path / "x.pt"))
    assert code == 2 and "choose one of clbench, reference-static, reference-cl" in err


# -- what a memory costs ------------------------------------------------------------------------------------
def test_memory_bytes_count_images_at_their_stored_dtype(dm_run, tmp_path):
    """digits (1 x 8 x 8), 10 classes x 3 images after the last step: DM's float32 images take 4 bytes a value,
    random's real images 1 (the dataset's uint8), and every image an int64 label."""
    from clbench.protocol.continual import run
    from clbench.report.compare import continual_table
    from clbench.report.rows import summary_rows

    _, dm = dm_run
    steps = dm["orders"][0]["steps"]
    assert [s["memory_bytes"] for s in steps] == [15 * (64 * 4 + 8), 30 * (64 * 4 + 8)]
    _, rnd = run(RunConfig(condenser="random", out=str(tmp_path), **TINY))
    assert rnd["orders"][0]["steps"][-1]["memory_bytes"] == 30 * (64 + 8)
    rows = {r["condenser"]: r for r in summary_rows([dm, rnd])}
    assert rows["dm"]["memory_mib"] == pytest.approx(30 * 264 / 2**20)
    assert rows["random"]["memory_mib"] == pytest.approx(30 * 72 / 2**20)
    assert "memory (MiB)" in [c.title for c in continual_table(list(rows.values())).columns]
    dm, rnd = copy.deepcopy(dm), copy.deepcopy(rnd)  # the fixture's record stays as written
    for record in (dm, rnd):  # a record from before the count has no such column
        for order in record["orders"]:
            for step in order["steps"]:
                step.pop("memory_bytes")
    assert "memory (MiB)" not in [c.title for c in continual_table(summary_rows([dm, rnd])).columns]


def test_peak_memory_follows_an_allocation_and_is_reset_for_each_phase():
    """The CPU meter reads the process's RSS high-water mark since the phase began: a 256 MiB buffer touched
    inside one phase raises its peak by about that much, and the next phase, which allocates nothing, does not
    inherit it (the mark is reset, not read since the process started)."""
    from clbench.core.costs import measured

    with measured("cpu") as before:
        pass
    with measured("cpu") as big:
        buffer = torch.ones(64 * 2**20)  # 256 MiB, written, so resident
        del buffer
    with measured("cpu") as after:
        pass
    assert None not in (before.peak_bytes, big.peak_bytes, after.peak_bytes)
    assert big.peak_bytes - before.peak_bytes > 200 * 2**20
    assert after.peak_bytes < big.peak_bytes - 200 * 2**20


def test_every_protocol_records_each_phase_s_peak_memory_and_compare_shows_or_hides_it(dm_run, tmp_path):
    """retrain (dm_run), replay, joint and static each write condense/train peaks the size of a process (> the
    data), and compare's peak columns are the highest step's, hidden by --no-costs."""
    from clbench.protocol.continual import run
    from clbench.protocol.static import StaticConfig, run_static
    from clbench.report.compare import continual_table, static_table
    from clbench.report.rows import static_rows, summary_rows

    _, dm = dm_run
    _, replay = run(RunConfig(condenser="random", learner="replay", out=str(tmp_path), **TINY))
    _, joint = run(RunConfig(learner="joint", out=str(tmp_path), **TINY))
    for record, phases in ((dm, ("condense", "train")), (replay, ("condense", "train")), (joint, ("train",))):
        for order in record["orders"]:
            for step in order["steps"]:
                for phase in phases:
                    assert step[f"{phase}_peak_bytes"] > 50 * 2**20  # python + torch alone are more
    rows = summary_rows([dm])
    highest = max(s["train_peak_bytes"] for o in dm["orders"] for s in o["steps"]) / 2**20
    assert rows[0]["train_peak_mib"] == pytest.approx(highest)
    titles = [c.title for c in continual_table(rows).columns]
    assert "condense peak (MiB)" in titles and "train peak (MiB)" in titles and "memory (MiB)" in titles
    hidden = [c.title for c in continual_table(rows, costs=False).columns]
    assert not {"condense peak (MiB)", "train peak (MiB)", "memory (MiB)", "condense s/order"} & set(hidden)
    assert "final acc (%)" in hidden
    from clbench.report.compare import COST_KEYS
    from clbench.report.table import render_text

    for fmt in ("csv", "json"):  # the files too, not only the table's columns
        shown, without = render_text(continual_table(rows), fmt), render_text(continual_table(rows, costs=False), fmt)
        assert "train_peak_mib" in shown and not any(key in without for key in COST_KEYS)
        assert "final_accuracy_mean" in without

    _, static = run_static(StaticConfig(condenser="random", dataset="digits", ipc=2, sets=1, evals=1, width=8,
                                        eval_nets=("convnet",),
                                        profile="quick", device="cpu", out=str(tmp_path / "static"),
                                        train={"epochs": 1}))
    (entry,) = static["sets"]
    assert entry["condense_peak_bytes"] > 50 * 2**20 and entry["train_peak_bytes"] > 50 * 2**20
    table = static_table(static_rows([static]))
    assert "ipc 2 peak MiB" in [c.title for c in table.columns]
    assert "ipc 2 peak MiB" not in [c.title for c in static_table(static_rows([static]), costs=False).columns]


def test_a_file_lacking_a_later_steps_class_fails_at_the_first_step(dm_run, tmp_path):
    """Each order's file is checked against the whole class order when it is first read, not step by step."""
    from clbench.core.errors import ClbenchError
    from clbench.protocol.continual import run
    from clbench.records.export import export_record

    path, record = dm_run
    export_record(path, "clbench", str(tmp_path / "m{order}.pt"))
    last = record["orders"][0]["steps"][1]["classes"][0]  # a class of order 0's second step
    state = torch.load(tmp_path / "m0.pt", weights_only=True)
    keep = state["labels"] != last
    torch.save({"images": state["images"][keep], "labels": state["labels"][keep]}, tmp_path / "m0.pt")
    with pytest.raises(ClbenchError, match=f"no images of class {last}") as failure:
        run(RunConfig(condenser="precomputed", out=str(tmp_path / "eval"),
                      opt={"path": str(tmp_path / "m{order}.pt")}, **{**TINY, "orders": 1}))
    assert "step 0" in str(failure.value), str(failure.value)
