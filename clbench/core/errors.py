"""The exceptions the CLI turns into one-line messages.

Library code raises these; only `clbench.cli` prints them and chooses the exit code.
"""
from __future__ import annotations

import signal
from pathlib import Path


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


class OutputError(ClbenchError):
    """A record, checkpoint or snapshot could not be written (disk full, folder removed, permissions)."""


# -- what a run can end with besides a record ---------------------------------------------------------------
class Interrupted(ClbenchError):
    """SIGINT/SIGTERM stopped the run at a safe point; everything completed is saved and resumable.

    The exit code is 128 + the signal's number, as a shell reports a process killed by it.
    """

    def __init__(self, record_path: Path, signal_name: str, steps_done: int, steps_total: int, jobs: int = 1,
                 unit: str = "steps"):
        self.record_path, self.signal_name = Path(record_path), signal_name
        self.steps_done, self.steps_total, self.jobs = steps_done, steps_total, jobs
        self.exit_code = 128 + int(getattr(signal, signal_name, signal.SIGINT))
        super().__init__(f"interrupted by {signal_name}: {steps_done} of {steps_total} {unit} are saved in "
                         f"{record_path}")

    @property
    def resume_command(self) -> str:
        return f"clbench resume {self.record_path}" + (f" --jobs {self.jobs}" if self.jobs > 1 else "")


class AlreadyComplete(ClbenchError):
    """A resume of a record whose every order is done: nothing to do (not a failure)."""

    exit_code = 0

    def __init__(self, record_path: Path):
        self.record_path = Path(record_path)
        super().__init__(f"{record_path} is already complete; nothing to resume")
