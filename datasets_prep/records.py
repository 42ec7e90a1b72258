"""The two things a reader yields: a normalized ``Conversation`` or a ``Reject``.

Readers only read and normalize. Everything after that (placeholder filling, system prompt policy,
validation, dedupe, split, score, writing) is shared by every source and lives in ``pipeline``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

from datasets_prep.oserrors import shown

Message = dict[str, Any]  # {"role": ..., "content": ...}; content is checked later by validate.py


@dataclass(slots=True)
class Conversation:
    """One input record turned into chat turns.

    ``system`` is the data's own system prompt (``None`` when the record has none); ``turns`` holds the
    user/assistant messages in order, not yet validated. ``tag`` is ``"zh"``/``"en"`` where the data says
    (ms-swift self-cognition rows), used to pick the placeholder language. ``split`` forces the record into
    ``"train"`` or ``"val"`` (Muice's test.jsonl) instead of the hash split. ``score`` is the record's own rating
    (``--score-from``), set by the shared conversion step from the raw object, not by the reader; ``None``
    without it (the pipeline then draws a placeholder).
    """

    file: str
    line: int
    raw: Union[str, bytes]  # bytes for JSON Lines (decoded only if the record is rejected)
    system: Optional[str]
    turns: list[Message]
    tag: Optional[str] = None
    split: Optional[str] = None
    actions: Optional[list[str]] = field(default=None)
    score: Optional[float] = None


@dataclass(slots=True)
class Reject:
    """An input record that cannot be used, with where it came from and why."""

    file: str
    line: int
    reason: str
    raw: Union[str, bytes]

    def as_json(self) -> dict[str, Any]:
        """The rejects.jsonl row; every text valid Unicode, so that the row itself can always be written."""
        raw = self.raw.rstrip(b"\r\n").decode("utf-8", "replace") if isinstance(self.raw, bytes) else shown(self.raw)
        return {"file": shown(self.file), "line": self.line, "reason": shown(self.reason), "raw": raw}


class FieldError(ValueError):
    """Raised by reader helpers; the message becomes the Reject reason."""


def require_str(obj: dict[str, Any], key: str, *, optional: bool = False) -> Optional[str]:
    """``obj[key]`` as a string; a missing or non-string field raises ``FieldError`` naming it."""
    if key not in obj or obj[key] is None:
        if optional:
            return None
        raise FieldError(f"missing field '{key}'")
    value = obj[key]
    if not isinstance(value, str):
        raise FieldError(f"field '{key}' is {type(value).__name__}, expected a string")
    return value
