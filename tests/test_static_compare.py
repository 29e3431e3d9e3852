from __future__ import annotations

from clbench.report.compare import static_pivot


def test_static_pivot_puts_ipc_and_networks_in_columns():
    rows = [
        {"dataset": "d", "condenser": "dm", "profile": "quick", "ipc": 10, "network": "convnet", "mean": 50.0, "std": 1.0},
        {"dataset": "d", "condenser": "dm", "profile": "quick", "ipc": 1, "network": "convnet", "mean": 20.0, "std": 2.0},
        {"dataset": "d", "condenser": "ddm", "profile": "quick", "ipc": 10, "network": "convnet", "mean": 55.5, "std": 0.5},
    ]
    headers, cells, flat = static_pivot(rows)
    assert headers == ["dataset", "condenser", "profile", "ipc 1 convnet", "ipc 10 convnet"]
    assert cells == [["d", "ddm", "quick", "-", "55.50 ± 0.50"], ["d", "dm", "quick", "20.00 ± 2.00", "50.00 ± 1.00"]]
    assert flat[1]["ipc 10 convnet mean"] == 50.0 and flat[0]["ipc 1 convnet mean"] is None
