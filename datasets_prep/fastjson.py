"""JSON for the hot path: orjson when installed (it comes with swanlab and gradio), else the standard library.

Both paths produce the same bytes: compact separators, UTF-8 kept as is (``ensure_ascii=False``), key order kept.
"""
from __future__ import annotations

import json
from typing import Any

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised only where orjson is missing
    _orjson = None

BACKEND = "orjson" if _orjson is not None else "json"

if _orjson is not None:
    DecodeError: type[Exception] = _orjson.JSONDecodeError
    EncodeError: type[Exception] = _orjson.JSONEncodeError  # text that is not valid Unicode (a lone surrogate)
    loads = _orjson.loads

    def dumps(obj: Any) -> bytes:
        return _orjson.dumps(obj)
else:  # pragma: no cover
    DecodeError = json.JSONDecodeError

    class EncodeError(ValueError):  # type: ignore[no-redef]
        """``obj`` cannot be written as UTF-8 JSON (as orjson's JSONEncodeError)."""

    def loads(data: bytes | str) -> Any:
        return json.loads(data)

    def dumps(obj: Any) -> bytes:
        try:
            return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except (UnicodeEncodeError, RecursionError) as exc:
            raise EncodeError(str(exc)) from None


def explain(data: bytes) -> str:
    """Why ``data`` (one line) does not parse: invalid UTF-8 or the JSON error, with its column."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start}"
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc.msg} at column {exc.colno}"
    except RecursionError:  # nested deeper than the standard library parses: the fast parser says where
        pass
    try:
        loads(data)
    except DecodeError as exc:
        return f"invalid JSON: {exc}"
    return "invalid JSON"
