"""Checks every output record passes, whatever source it came from."""
from __future__ import annotations

from typing import Any, Optional

_EXPECTED = ("user", "assistant")


def check_messages(messages: list[dict[str, Any]]) -> Optional[str]:
    """``None`` when ``messages`` is a trainable ms-swift record, else the reason it is not.

    Rules: a system message first, then at least one user/assistant exchange, roles alternating
    user/assistant and ending with assistant, every content a non-empty string.
    """
    if not messages or messages[0].get("role") != "system":
        return "first message is not the system message"
    if not isinstance(messages[0].get("content"), str):
        return "system content is not a string"
    if len(messages) < 3:
        return "no user/assistant exchange"
    for i, msg in enumerate(messages[1:], 1):
        role, content = msg.get("role"), msg.get("content")
        expected = _EXPECTED[(i - 1) % 2]
        if role != expected:
            return f"messages[{i}] role is {role!r}, expected {expected!r} (roles must alternate user/assistant)"
        if not isinstance(content, str):
            return f"messages[{i}] ({role}) content is {type(content).__name__}, expected a string"
        if not content.strip():
            return f"messages[{i}] ({role}) content is empty"
    if messages[-1]["role"] != "assistant":
        return "conversation does not end with an assistant message"
    return None
