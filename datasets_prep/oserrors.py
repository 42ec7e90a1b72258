"""OS errors as the one-line ``SwiftkitError`` the CLI prints: what could not be done, to which path, and why.

Each call site that touches the file system converts the ``OSError`` of that one operation, so the message names
the path the user gave (or the file inside it) instead of a traceback; anything else is left to propagate.
"""
from __future__ import annotations

import os

from datasets_prep.errors import SwiftkitError


def shown(text: str | os.PathLike[str]) -> str:
    """A path (or any text from the OS) as valid Unicode: an undecodable byte becomes ``\\xNN``, a lone surrogate
    ``\\uNNNN``.

    File names and arguments are decoded with surrogateescape on POSIX; written as they are they would make
    every JSON or UTF-8 writer fail.
    """
    text = os.fspath(text)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join(_escape(ch) if "\ud800" <= ch <= "\udfff" else ch for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def os_failure(what: str | os.PathLike[str], action: str, exc: OSError) -> SwiftkitError:
    """``"{what}: cannot {action}: {reason}"``, e.g. ``data/x/train.jsonl: cannot write: No space left on device``."""
    reason = os.strerror(exc.errno) if exc.errno else exc.strerror or str(exc) or type(exc).__name__
    return SwiftkitError(f"{shown(what)}: cannot {action}: {' '.join(reason.split())}")
