"""Checks every output record passes, whatever source it came from."""
from __future__ import annotations

from typing import Any, Optional

_EXPECTED = ("user", "assistant")


def check_messages(messages: list[dict[str, Any]]) -> Optional[str]:
    """``None`` when ``messages`` is a trainable ms-swift record, else the reason it is not.

    Rules: a system message first, then at least one user/assistant exchange, roles alternating
    user/assistant and ending with assistant, every content a non-empty string. The first loop is the
    fast path every good record takes; ``_explain`` finds the reason for the rare bad one.
    """
    n = len(messages)
    if n < 3 or not n & 1 or messages[0]["role"] != "system" or type(messages[0]["content"]) is not str:
        return _explain(messages)
    for i in range(1, n, 2):
        user, assistant = messages[i], messages[i + 1]
        uc, ac = user["content"], assistant["content"]
        if (user["role"] != "user" or assistant["role"] != "assistant" or type(uc) is not str or type(ac) is not str
                or not uc or uc.isspace() or not ac or ac.isspace()):
            return _explain(messages)
    return None


def _explain(messages: list[dict[str, Any]]) -> str:
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
    return "conversation does not end with an assistant message"
