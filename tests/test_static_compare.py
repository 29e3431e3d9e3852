from __future__ import annotations

import io

from clbench.report.compare import render_static, static_table
from clbench.report.table import render_text

ROWS = [
    {"dataset": "d", "condenser": "dm", "profile": "quick", "ipc": 10, "network": "convnet", "mean": 50.0, "std": 1.0},
    {"dataset": "d", "condenser": "dm", "profile": "quick", "ipc": 1, "network": "convnet", "mean": 20.0, "std": 2.0},
    {"dataset": "d", "condenser": "ddm", "profile": "quick", "ipc": 10, "network": "convnet", "mean": 55.5, "std": 0.5},
]


def test_static_table_puts_ipc_and_networks_in_columns():
    table = static_table(ROWS)
    assert table.headers() == ["dataset", "condenser", "profile", "ipc 1 convnet", "ipc 10 convnet"]
    assert table.cells == [["d", "ddm", "quick", "-", "55.50 ± 0.50"],
                           ["d", "dm", "quick", "20.00 ± 2.00", "50.00 ± 1.00"]]
    assert table.data[1]["ipc 10 convnet mean"] == 50.0 and table.data[0]["ipc 1 convnet mean"] is None
    assert table.fields == ["dataset", "condenser", "profile", "ipc 1 convnet mean", "ipc 1 convnet std",
                            "ipc 10 convnet mean", "ipc 10 convnet std"]
    assert [c.numeric for c in table.columns] == [False, False, False, True, True]


def test_static_markdown_and_latex_carry_the_caption():
    table = static_table(ROWS)
    assert render_text(table, "markdown").endswith(
        "\n\ntest accuracy (%) on the full test set, mean ± std over synthetic sets x evaluation trainings.\n")
    assert r"\footnotesize test accuracy (\%) on the full test set, mean $\pm$ std" in render_text(table, "latex")


def test_static_table_is_whole_in_an_80_column_log():
    from rich.console import Console

    rows = [dict(r, dataset="fashion-mnist") for r in ROWS]
    buffer = io.StringIO()
    render_static(rows, "table", Console(file=buffer, width=80, force_terminal=False))
    out = buffer.getvalue()
    assert "…" not in out and "fashion-mnist" in out and "55.50 ± 0.50" in out and "static condensation" in out


def _record(condenser: str, options: dict, accuracy: float, run_id: str) -> dict:
    return {"kind": "static", "run_id": run_id, "complete": True,
            "config": {"dataset": "fashion-mnist", "condenser": condenser, "ipc": 10, "profile": "quick",
                       "eval_nets": ["convnet"], "network": "convnet", "width": 32, "train": {"epochs": 60},
                       "condenser_options": options},
            "sets": [{"set": 0, "complete": True, "condense_seconds": 1.0, "train_seconds": {"convnet": 1.0},
                      "accuracies": {"convnet": [accuracy]}}]}


def test_an_option_added_after_a_record_counts_as_its_default_or_its_legacy_value():
    from clbench.condensers.dm import DM
    from clbench.core.options import build_options
    from clbench.report.rows import static_rows, static_variant

    now = {k: v for k, v in vars(build_options(DM.Options, {}, "quick")).items()}
    now = {k: list(v) if isinstance(v, tuple) else v for k, v in now.items()}
    old = {k: v for k, v in now.items() if k not in ("sm", "icd", "lambda_", "style_tap", "balance")}
    # a DM record from before the add-ons ran as DM runs now with them off: one variant, no name for it
    assert static_variant(_record("dm", old, 70.0, "a")) == static_variant(_record("dm", now, 71.0, "b"))
    rows = static_rows([_record("dm", old, 70.0, "a"), _record("dm", now, 72.0, "b"),
                        _record("dm", {**now, "sm": True}, 74.0, "c")])
    names = {r["condenser"]: r["mean"] for r in rows}
    assert names == {"dm [opt.sm=False]": 71.0, "dm [opt.sm=True]": 74.0}
    # a DDM record from before the fidelity options read its taps before the ReLU, with literal weights
    ddm_old = static_variant(_record("ddm", {"lambda_": 1e4}, 70.0, "d"))
    assert (ddm_old["opt.style_tap"], ddm_old["opt.balance"]) == ("pre_relu", "none")
