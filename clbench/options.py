"""The old home of clbench.core.options (before the package layout): kept, with a deprecation warning, for plugins
written against it. New code imports from clbench.api."""
from __future__ import annotations

import warnings
from typing import Any

import clbench.core.options as _moved

warnings.warn("clbench.options has moved: import from clbench.api (or clbench.core.options); the old path goes in a "
              "later release", DeprecationWarning, stacklevel=2)


def __getattr__(name: str) -> Any:
    return getattr(_moved, name)
