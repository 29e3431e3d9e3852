"""The names a plugin imports, from one place that internal moves do not break.

A condenser plugin, a protocol plugin, or a script that gives an Avalanche strategy a condensed memory needs
only this module: `from clbench.api import Condenser, CondenseTask, SyntheticSet, option`. Each name is
defined where its concern lives (the table below says where, for readers of the code); when a definition
moves, this module follows it and plugins keep working. tests/test_api.py imports every name listed here and
in docs/writing-a-condenser.md.

    Condenser, CondenseTask, SyntheticSet, stack_by_class, register   clbench.condensers.base
    option                                                           clbench.core.options
    ClbenchError, UsageError, CondenserError, NonFiniteError         clbench.core.errors
    DM, DMOptions (a DM-family base), Batch, Features                clbench.condensers.dm, clbench.matching.statistics
    check_condenser, make_task (the contract check)                  clbench.testing
    ContinualProtocol, OrderRun, StepResult (a protocol plugin)      clbench.protocol.base, clbench.records.schema
    CondensedBuffer (Avalanche storage policy; imports Avalanche)    clbench.strategies.condensed_buffer
"""
from __future__ import annotations

from typing import Any

from clbench.condensers.base import Condenser, CondenseTask, SyntheticSet, register, stack_by_class
from clbench.condensers.dm import DM, DMOptions
from clbench.core.errors import ClbenchError, CondenserError, NonFiniteError, UsageError
from clbench.core.options import option
from clbench.matching.statistics import Batch, Features
from clbench.protocol.base import ContinualProtocol, OrderRun
from clbench.records.schema import StepResult
from clbench.testing import check_condenser, make_task

__all__ = [
    "Batch", "ClbenchError", "CondensedBuffer", "Condenser",  # noqa: F822 (CondensedBuffer: __getattr__)
    "CondenserError", "CondenseTask", "ContinualProtocol",
    "DM", "DMOptions", "Features", "NonFiniteError", "OrderRun", "StepResult", "SyntheticSet", "UsageError",
    "check_condenser", "make_task", "option", "register", "stack_by_class",
]


def __getattr__(name: str) -> Any:
    if name == "CondensedBuffer":  # imported on first use: it needs Avalanche, the rest does not
        from clbench.strategies.condensed_buffer import CondensedBuffer

        return CondensedBuffer
    raise AttributeError(f"module 'clbench.api' has no attribute {name!r}")
