"""The exceptions the CLI turns into one-line messages.

Library code raises these; only `clbench.cli` prints them and chooses the exit code.
"""
from __future__ import annotations


class ClbenchError(Exception):
    """Base class: an error whose message is meant for the user, not a traceback."""

    exit_code = 1


class UsageError(ClbenchError):
    """Bad input from the user: a wrong option, a missing file, an unknown name. Exit code 2."""

    exit_code = 2


class DataNotFoundError(ClbenchError):
    """A dataset is not on disk and cannot be downloaded."""

    exit_code = 2


class CondenserError(ClbenchError):
    """A condenser raised or returned something the harness cannot accept."""


class NonFiniteError(ClbenchError):
    """A loss or an image became NaN or infinite."""
