"""clbench: a continual-learning benchmark harness whose rehearsal memory is built by dataset condensation.

The subpackages follow the data flow of a run, each importing only those listed before it:

    core        errors, the one registry, options, seeds, speed switches
    data        datasets and class-incremental streams
    nets        networks and differentiable Siamese augmentation
    condense    loss terms, per-class batch statistics, the add-ons (style matching, diversity) of
                distribution-matching condensers, the checks applied to every condenser's result
    condensers  the built-in condensers, one module each (the repository's condensers/ folder)
    memory      the rehearsal memory and its budget
    training    the evaluation recipe: train from scratch, test
    records     the JSON record and the snapshots beside it
    strategies  the Avalanche strategy that turns a condenser into a memory, and the storage policy that gives
                any Avalanche strategy a condensed replay memory (the repository's strategies/)
    protocol    configuration, the continual and static protocols, parallel orders, checkpoints
    report      comparison tables, statistics, plots, diagnosis
    sweep       grids of runs on local, Ray or Slurm engines
    cli         the `clbench` command: parse, call the library, print

`clbench.testing` is the plugin author's contract check. tests/test_layout.py enforces the order.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

# The built-in condensers and the strategy live in the repository's top-level folders `condensers/` and
# `strategies/`; an install maps them to `clbench.condensers` and `clbench.strategies` (pyproject.toml). Run
# from a checkout that is not installed (the repository on sys.path, as on a GPU machine where nothing can be
# installed), this finder maps them the same way. It is consulted last, so an install always wins.
_SOURCE_FOLDERS = {"clbench.condensers": "condensers", "clbench.strategies": "strategies"}


class _CheckoutFolders(importlib.abc.MetaPathFinder):
    def __init__(self, root: Path):
        self.root = root

    def find_spec(self, name, path=None, target=None):
        folder = _SOURCE_FOLDERS.get(name)
        if folder is None or not (self.root / folder / "__init__.py").is_file():
            return None
        return importlib.util.spec_from_file_location(name, self.root / folder / "__init__.py",
                                                      submodule_search_locations=[str(self.root / folder)])


_root = Path(__file__).resolve().parent.parent
if (_root / "pyproject.toml").is_file() and not any(isinstance(f, _CheckoutFolders) for f in sys.meta_path):
    sys.meta_path.append(_CheckoutFolders(_root))
