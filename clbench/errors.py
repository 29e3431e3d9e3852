"""The old home of clbench.core.errors (before the package layout): kept, with a deprecation warning, for plugins
written against it. New code imports from clbench.api."""
from __future__ import annotations

import warnings
from typing import Any

import clbench.core.errors as _moved

warnings.warn("clbench.errors has moved: import from clbench.api (or clbench.core.errors); the old path goes in a "
              "later release", DeprecationWarning, stacklevel=2)


def __getattr__(name: str) -> Any:
    return getattr(_moved, name)
