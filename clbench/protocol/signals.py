"""Stopping a run cleanly on SIGINT/SIGTERM: the first signal asks for a stop at the next safe point, a second
one exits at once.

The runner (and each `--jobs` worker) holds a StopSignals while it runs and calls `check()` at its safe points.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Callable, Iterator


class StopRequested(BaseException):
    """Raised at a safe point once a stop was asked for. A BaseException, so condensers' handlers let it pass."""


class StopSignals:
    """SIGINT/SIGTERM ask for a stop at the next safe point; a second one exits at once.

    Exiting at once is safe for the files: every write is a rename of a complete temporary file. `children` are
    worker processes to kill with it. Outside the main thread (where handlers cannot be set) only `event` and
    `request()` stop the run.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, notify: Callable[[str], None] | None = None, event: Any = None, parent: int | None = None):
        self.notify, self.event, self.parent = notify, event, parent  # parent: a worker's parent's pid
        self.signal_name: str | None = None
        self.children: list[Any] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal_name is not None:
            for child in self.children:
                with contextlib.suppress(Exception):
                    child.kill()
            os._exit(128 + signum)
        self.request(signal.Signals(signum).name)
        if self.notify is not None:
            with contextlib.suppress(Exception):
                self.notify(self.signal_name)

    def request(self, signal_name: str = "SIGINT") -> None:
        self.signal_name = self.signal_name or signal_name

    @property
    def requested(self) -> bool:
        if self.signal_name is None and self.event is not None and self.event.is_set():
            self.signal_name = "SIGINT"
        if self.signal_name is None and self.parent is not None and os.getppid() != self.parent:
            self.signal_name = "SIGHUP"  # the parent is gone: nobody gathers this worker's results
        return self.signal_name is not None

    def check(self) -> None:
        """The safe point: raise StopRequested when a stop was asked for."""
        if self.requested:
            raise StopRequested()


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """SIGINT/SIGTERM ignored inside (main thread only): spawned workers inherit it until their handlers are set."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in StopSignals.SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
