"""Reading JSON Lines: one record per ``\\n``-terminated line.

Not ``str.splitlines()``: it also splits on U+2028, U+2029, U+0085 and other characters that JSON writers (with
``ensure_ascii=False``) leave raw inside strings, so a record holding one would be cut in two.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from swiftkit.core.errors import SwiftkitError


def read_lines(path: str | Path) -> list[tuple[int, str]]:
    """``(line number, line)`` for each ``\\n``-terminated line of a UTF-8 file, blank lines skipped; one-line
    SwiftkitError when the file cannot be read or is not UTF-8."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SwiftkitError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise SwiftkitError(f"{path}: unreadable ({exc.strerror or exc})") from exc
    return [(number, line) for number, line in enumerate(text.split("\n"), 1) if line.strip()]


def read_jsonl(path: str | Path) -> list[Any]:
    """Every record of ``path`` (blank lines skipped); one-line SwiftkitError naming file:line on bad JSON."""
    records = []
    for number, line in read_lines(path):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise SwiftkitError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
    return records
