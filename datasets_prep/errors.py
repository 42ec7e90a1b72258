"""The user-facing errors of swiftkit and of datasets_prep, defined here because swiftkit builds on datasets_prep (never
the reverse): one exception type for problems a user can fix (the CLI prints it as one line and exits non-zero), and
one stop exception for SIGTERM/SIGHUP."""
from __future__ import annotations


class SwiftkitError(Exception):
    """A user-facing error: its message is one line naming the problem (file, line, field where known)."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ProblemsError(SwiftkitError):
    """Every problem found at once, one line each (a validator reports them all, not the first): the one shape of
    recipe, preflight, reward-option and prep-option errors. A subclass may set ``heading``: the problems are then
    indented under it."""

    heading = ""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        text = "\n".join(self.problems)
        if self.heading:
            text = self.heading + "\n  " + "\n  ".join(self.problems)
        super().__init__(text)


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) arrived. A KeyboardInterrupt, so every cleanup that Ctrl-C runs (temp files removed,
    child process groups stopped) runs for it too; the CLI exits with 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def raise_on_termination() -> None:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` in this (main) thread. A signal the caller set to be
    ignored stays ignored (``nohup swiftkit train ...`` must survive its terminal closing)."""
    import signal

    def handler(signum: int, _frame: object) -> None:
        raise Terminated(signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, handler)
