"""The package's layout is a promise: each subpackage imports only those before it in the data flow, no two
modules import each other (directly or around a circle), and the built-ins are named after their modules."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the data flow, lowest first; a subpackage may import only those before it (and itself)
LAYERS = ["core", "data", "nets", "matching", "condensers", "memory", "training", "records", "strategies",
          "protocol", "report", "sweep", "testing", "api", "cli", "__main__"]
# the old homes of moved modules, kept for plugins (clbench.options, clbench.errors, clbench.condense): they sit
# with the api
OLD_PATHS = {"options", "errors", "condense"}
FOLDERS = {"condensers": ROOT / "condensers", "strategies": ROOT / "strategies"}  # installed as clbench.<name>


def modules() -> dict[str, Path]:
    """Every module of the installed package by dotted name, from the source tree."""
    found = {}
    for path in sorted((ROOT / "clbench").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for name, folder in FOLDERS.items():
        for path in sorted(folder.glob("*.py")):
            stem = path.stem
            found[f"clbench.{name}" if stem == "__init__" else f"clbench.{name}.{stem}"] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The clbench modules `path` imports anywhere in it (deferred imports included: they cycle just the same)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        out |= {n for n in names if n in known}
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, set(mods)) - {name} for name, path in mods.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else "clbench"
    return "api" if name in OLD_PATHS else name


def test_each_subpackage_imports_only_earlier_ones():
    bad = []
    for src, targets in graph().items():
        if layer(src) == "clbench":
            continue
        for dst in targets:
            if dst == "clbench" or layer(dst) == layer(src):
                continue
            if LAYERS.index(layer(dst)) > LAYERS.index(layer(src)):
                bad.append(f"{src} imports {dst}")
    assert not bad, "imports against the data flow:\n" + "\n".join(sorted(bad))


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules, or None (depth-first search, colours)."""
    colour, stack = {}, []

    def visit(node: str) -> list[str] | None:
        colour[node] = "grey"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a package and its own modules
            if colour.get(nxt) == "grey":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in colour and (found := visit(nxt)):
                return found
        colour[node] = "black"
        stack.pop()
        return None

    for start in sorted(edges):
        if start not in colour and (found := visit(start)):
            return found
    return None


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_module_is_too_long():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > 450}
    assert not long, f"modules over 450 lines (split them by concern): {long}"


def test_every_builtin_condenser_is_named_after_its_module():
    from clbench.condensers import CONDENSERS, load_builtins

    load_builtins()
    for name in CONDENSERS.names():
        cls = CONDENSERS.get(name)
        if cls.__module__.startswith("clbench.condensers."):
            assert cls.__module__ == f"clbench.condensers.{name}", f"{name!r} lives in {cls.__module__}"


@pytest.mark.parametrize("name", ["condensers", "strategies"])
def test_top_level_folders_are_not_importable_packages_of_their_own(name):
    # they are installed as clbench.condensers / clbench.strategies; nothing may import the bare name
    bare = [f"{mod} imports {name}" for mod, path in modules().items()
            if any(n == name or n.startswith(name + ".") for n in _raw_imports(path))]
    assert not bare, "\n".join(bare)


def _raw_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_the_install_lists_every_subpackage_and_nothing_outside_clbench():
    """pyproject.toml lists the packages by hand (two are mapped from top-level folders): a new subpackage
    left out would be missing from every install but this checkout; a name outside `clbench.` would land in
    site-packages beside other projects."""
    import tomllib

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    assert all(name == "clbench" or name.startswith("clbench.") for name in listed)
    present = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "clbench").rglob("__init__.py")}
    present |= {f"clbench.{name}" for name in FOLDERS}
    assert listed == present
    assert tool["package-dir"] == {f"clbench.{name}": name for name in FOLDERS}
