"""swiftkit's error vocabulary, defined once in ``datasets_prep.errors`` (the package swiftkit builds on; the
dependency runs one way, swiftkit -> datasets_prep): ``SwiftkitError`` is a problem the user can fix, printed by the
CLI as one line; ``Terminated`` is SIGTERM/SIGHUP turned into a KeyboardInterrupt."""
from __future__ import annotations

from datasets_prep.errors import (
    ProblemsError,
    SwiftkitError,
    Terminated,
    raise_on_termination,
)

__all__ = ["ProblemsError", "SwiftkitError", "Terminated", "raise_on_termination"]
