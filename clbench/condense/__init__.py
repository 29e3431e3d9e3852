"""The old home of the condensers' support code, kept so that plugins written against it keep working.

Its modules moved where a newcomer looks for them: `clbench.condense.losses`, `.statistics` and `.addons` are
now clbench.matching (the loss terms and per-class statistics of the matching condensers, and the add-ons);
`.checks` is clbench.memory.checks (what the harness checks on every set before it enters the memory, and
the one way a condenser is run); `.setfiles` is clbench.data.setfiles (condensed sets in the reference code's
file layouts). `import clbench.condense.losses` still gives the very module clbench.matching.losses, with a
deprecation warning.
"""
from __future__ import annotations

import importlib
import sys
import warnings

MOVED = {"losses": "clbench.matching.losses", "statistics": "clbench.matching.statistics",
         "addons": "clbench.matching.addons", "checks": "clbench.memory.checks", "setfiles": "clbench.data.setfiles"}

warnings.warn("clbench.condense has moved: its losses, statistics and addons are clbench.matching, its checks "
              "clbench.memory.checks, its setfiles clbench.data.setfiles; the old path goes in a later release",
              DeprecationWarning, stacklevel=2)
for _old, _new in MOVED.items():
    globals()[_old] = sys.modules[f"{__name__}.{_old}"] = importlib.import_module(_new)
