"""``--score-from FIELD``: a record's real rating, read from its parsed raw object by a dotted path.

``metrics.quality_f1`` reads ``obj["metrics"]["quality_f1"]``. Flattened tables are read too: a CSV/Parquet
column literally named ``metrics.quality_f1``, or a ``metrics`` cell holding JSON text (how a nested field is
written to CSV). Numbers are ints and floats, or text that parses as one (CSV cells are always text); bool,
empty, non-finite and anything else is not a score, and the record is rejected with the field named.
"""
from __future__ import annotations

import json
import math
from typing import Any

from datasets_prep.errors import SwiftkitError
from datasets_prep.records import FieldError

_MISSING = object()


class ScoreField:
    """One ``--score-from`` path, split once; ``take(obj)`` is called per record."""

    __slots__ = ("field", "parts")

    def __init__(self, field: str) -> None:
        parts = field.split(".")
        if not field or not all(parts):
            raise SwiftkitError(f"--score-from {field!r}: expected a dotted field path such as metrics.quality_f1")
        self.field, self.parts = field, parts

    def take(self, obj: dict[str, Any]) -> float:
        """The score of one raw record; raises FieldError naming the field when there is none."""
        value = _lookup(obj, self.parts)
        if value is _MISSING:
            raise FieldError(f"score field '{self.field}' is missing")
        return _number(value, self.field)


def _lookup(value: Any, parts: list[str]) -> Any:
    """Walk ``parts`` into dicts; a whole remaining dotted key beats splitting it (flattened CSV headers)."""
    for i, part in enumerate(parts):
        if isinstance(value, str) and value.lstrip().startswith("{"):
            try:  # a nested object stored as JSON text in a CSV/Parquet cell; only this one small cell is parsed
                value = json.loads(value)
            except (ValueError, RecursionError):
                return _MISSING
        if not isinstance(value, dict):
            return _MISSING
        rest = ".".join(parts[i:])
        if i + 1 < len(parts) and rest in value:
            return value[rest]
        value = value.get(part, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or value is None:
        raise FieldError(f"score field '{field}' is {json.dumps(value)}, expected a number")
    if not isinstance(value, (int, float, str)):
        raise FieldError(f"score field '{field}' is a {type(value).__name__}, expected a number")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise FieldError(f"score field '{field}' is {str(value)[:40]!r}, expected a number") from None
    if not math.isfinite(number):
        raise FieldError(f"score field '{field}' is {value!r}, expected a finite number")
    return number
