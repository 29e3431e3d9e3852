"""The README's condenser example is real code: it must keep passing the plugin contract check."""
from __future__ import annotations

import re
import sys
import types
from pathlib import Path


def test_readme_condenser_example_keeps_the_contract(monkeypatch):
    from clbench.testing import check_condenser

    text = (Path(__file__).parent.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    example = next(b for b in blocks if "class MeanShift(Condenser)" in b)
    module = types.ModuleType("readme_example")
    monkeypatch.setitem(sys.modules, "readme_example", module)  # dataclasses look their module up
    exec(compile(example, "README.md", "exec"), module.__dict__)
    check_condenser(module.MeanShift)
