"""Stopping a prep cleanly: SIGINT, SIGTERM and SIGHUP become an exception, so every ``finally`` runs (temp files
removed, the ``--out`` lock released), and the commit of the outputs is never cut in half.

- ``stop_on_signals()`` (the CLI): SIGINT/SIGTERM/SIGHUP raise ``Interrupted`` (exit status 128 + signal: 130, 143).
  Only the first signal raises; one arriving while that unwinds is ignored, so it cannot cut the clean-up short.
- ``held()`` (the library, around the renames that publish the outputs): a signal arriving inside waits until
  the block has finished, then takes the effect it would have had (its handler runs; under the default action
  the process ends), so the outputs are all old or all new, never a mix.

A SIGKILL cannot be caught: its temp files are removed by the next prep into the same ``--out``.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

from datasets_prep.errors import Terminated

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(Terminated):
    """A stop signal arrived. A KeyboardInterrupt (through swiftkit's Terminated, the one stop exception of every
    swiftkit command), so no ``except Exception`` on the way turns it into an error and every clean-up Ctrl-C runs
    runs for it too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        self.args = (f"interrupted by {self.name}",)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Inside, SIGINT, SIGTERM and SIGHUP raise ``Interrupted``; the previous handlers come back on exit."""
    if not _main_thread():  # signal handlers can only be set from the main thread
        yield
        return
    raised = False

    def stop(signum: int, _frame: Any) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise Interrupted(signum)

    # a signal the caller ignores (nohup: SIGHUP) stays ignored
    previous = {s: signal.signal(s, stop) for s in SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Stop signals (SIGINT, SIGTERM, SIGHUP) arriving inside are delivered when the block ends."""
    if not _main_thread():
        yield
        return
    pending: list[int] = []

    def wait(signum: int, _frame: Any) -> None:
        pending.append(signum)

    previous = {s: signal.getsignal(s) for s in SIGNALS}
    previous = {s: h for s, h in previous.items() if h is not None}  # None: set outside Python, cannot be restored
    for s in previous:
        signal.signal(s, wait)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if pending:
            _deliver(pending[0], previous[pending[0]])


def _deliver(signum: int, handler: Any) -> None:
    if callable(handler):
        handler(signum, None)  # Python's SIGINT handler raises KeyboardInterrupt, stop_on_signals' Interrupted
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)  # the default action: the process ends, as it would have without the hold
