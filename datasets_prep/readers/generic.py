"""Generic shapes ms-swift also reads, for data that is not one of the named sources.

- ``messages``: ``{"messages": [{"role", "content"}, ...]}``
- ``sharegpt``: ``{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}, ...], "system"?: ...}``
- ``alpaca``: ``{"instruction", "input"?, "output", "system"?, "history"?}``; the user message is
  ``instruction + "\\n" + input`` when both are set (as ms-swift's AlpacaPreprocessor does)
- ``query_response``: ``{"query", "response", "history"?, "system"?, "tag"?}`` (ms-swift self-cognition rows carry
  ``tag`` "zh"/"en", which picks the language of the ``{{NAME}}``/``{{AUTHOR}}`` fill)
"""
from __future__ import annotations

from typing import Any

from datasets_prep.readers.base import history_pairs, messages_turns, pairs_to_turns
from datasets_prep.records import FieldError, require_str

_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def convert_messages(obj: dict[str, Any]) -> dict[str, Any]:
    system, turns = messages_turns(obj)
    return {"system": system, "turns": turns}


def convert_sharegpt(obj: dict[str, Any]) -> dict[str, Any]:
    conv = obj.get("conversations")
    if not isinstance(conv, list) or not conv:
        raise FieldError("field 'conversations' is missing or not a non-empty list")
    system = require_str(obj, "system", optional=True)
    turns = []
    for i, msg in enumerate(conv):
        if not isinstance(msg, dict) or "from" not in msg or "value" not in msg:
            raise FieldError(f"field 'conversations[{i}]' is not a {{from, value}} object")
        role = _SHAREGPT_ROLES.get(msg["from"])
        if role is None:
            raise FieldError(f"field 'conversations[{i}].from' is {msg['from']!r}, expected human/gpt/system")
        if role == "system" and i == 0:
            system = msg["value"]
            if not isinstance(system, str):
                raise FieldError("field 'conversations[0].value' (system) is not a string")
            continue
        turns.append({"role": role, "content": msg["value"]})
    return {"system": system, "turns": turns}


def convert_alpaca(obj: dict[str, Any]) -> dict[str, Any]:
    instruction = require_str(obj, "instruction", optional=True) or ""
    input_ = require_str(obj, "input", optional=True) or ""
    if not instruction and not input_:
        raise FieldError("missing field 'instruction' (and 'input' is empty)")
    query = f"{instruction}\n{input_}" if instruction and input_ else instruction or input_
    pairs = history_pairs(obj) + [(query, obj.get("output"))]
    if "output" not in obj:
        raise FieldError("missing field 'output'")
    return {"system": require_str(obj, "system", optional=True), "turns": pairs_to_turns(pairs)}


def convert_query_response(obj: dict[str, Any]) -> dict[str, Any]:
    for key in ("query", "response"):
        if key not in obj:
            raise FieldError(f"missing field '{key}'")
    tag = obj.get("tag") if obj.get("tag") in ("zh", "en") else None
    pairs = history_pairs(obj) + [(obj["query"], obj["response"])]
    return {"system": require_str(obj, "system", optional=True), "turns": pairs_to_turns(pairs), "tag": tag}
