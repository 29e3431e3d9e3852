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
