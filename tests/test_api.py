"""The plugin surface: every name clbench.api lists, and every name the plugin guide imports, imports; the old
paths of moved modules still work, with a deprecation warning."""
from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_api_name_imports_and_is_what_its_home_defines():
    import clbench.api as api
    from clbench.condensers.base import Condenser
    from clbench.core.options import option

    for name in api.__all__:
        assert getattr(api, name) is not None, name
    assert api.Condenser is Condenser and api.option is option
    assert api.CondensedBuffer.__name__ == "CondensedBuffer"  # the lazily imported one
    with pytest.raises(AttributeError):
        api.NoSuchName  # noqa: B018


def _documented_imports() -> list[tuple[str, str]]:
    """(module, name) of every `from clbench... import ...` line and table row in the guide and README."""
    found = []
    for doc in (ROOT / "docs" / "writing-a-condenser.md", ROOT / "README.md", ROOT / "docs" / "how-a-run-flows.md"):
        text = doc.read_text()
        for module, names in re.findall(r"^from (clbench[\w.]*) import ([\w, ]+)$", text, flags=re.M):
            found += [(module, n.strip()) for n in names.split(",") if n.strip()]
        for names, module in re.findall(r"^\| ([^|]+) \| `(clbench[\w.]*)` \|$", text, flags=re.M):
            found += [(module, n) for n in re.findall(r"`(\w+)`", names)]
    return found


def test_every_documented_import_works():
    documented = _documented_imports()
    assert len(documented) >= 8  # the parser found the guide's imports
    for module, name in documented:
        assert hasattr(importlib.import_module(module), name), f"{module}.{name}"


@pytest.mark.parametrize("old, new, name", [("clbench.options", "clbench.core.options", "option"),
                                            ("clbench.errors", "clbench.core.errors", "UsageError")])
def test_old_paths_work_with_a_deprecation_warning(old, new, name):
    code = (f"import warnings; warnings.simplefilter('error')\n"
            f"try:\n    from {old} import {name}\nexcept DeprecationWarning as w:\n    print('warned:', w)\n"
            f"warnings.simplefilter('ignore')\nfrom {old} import {name} as a\nfrom {new} import {name} as b\n"
            f"assert a is b\nprint('same')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert f"warned: {old} has moved: import from clbench.api" in done.stdout and "same" in done.stdout


MOVED = [("clbench.condense.statistics", "clbench.matching.statistics", "Batch"),
         ("clbench.condense.losses", "clbench.matching.losses", "gram"),
         ("clbench.condense.addons", "clbench.matching.addons", "AddOnOptions"),
         ("clbench.condense.checks", "clbench.memory.checks", "run_condenser"),
         ("clbench.condense.setfiles", "clbench.data.setfiles", "read_set_file")]


def test_the_condense_support_package_moved_and_its_old_paths_work():
    """Each old module path gives the very module (and names) of its new home, after one deprecation warning;
    one fresh interpreter for all of them (the warning comes once, at the package's first import)."""
    checks = "".join(f"from {old} import {name} as a\nfrom {new} import {name} as b\n"
                     f"assert a is b and importlib.import_module('{old}') is importlib.import_module('{new}')\n"
                     for old, new, name in MOVED)
    code = (f"import importlib, warnings; warnings.simplefilter('error')\n"
            f"try:\n    import {MOVED[0][0]}\nexcept DeprecationWarning as w:\n    print('warned:', w)\n"
            f"warnings.simplefilter('ignore')\n{checks}print('same')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "warned: clbench.condense has moved" in done.stdout and "same" in done.stdout
