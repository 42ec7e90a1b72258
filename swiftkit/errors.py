"""One exception type for problems a user can fix; the CLI prints it as one line and exits non-zero."""
from __future__ import annotations


class SwiftkitError(Exception):
    """A user-facing error: its message is one line naming the problem (file, line, field where known)."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
