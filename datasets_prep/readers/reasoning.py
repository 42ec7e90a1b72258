"""Reasoning sets whose answer carries its chain of thought: fortune-telling and medical R1.

- fortune (``Conard/fortune-telling``, same schema as medical-o1-reasoning-SFT): ``Question``, ``Complex_CoT``, ``Response``.
- medical_r1 (``krisfu/delicate_medical_r1_data``): ``question``, ``think``, ``answer`` (plus ``instruction``, ``metrics``).

The assistant message is ``<think>\\n{reasoning}\\n</think>\\n\\n{answer}``. Loaded raw, ms-swift aliases both
``instruction`` and ``question`` to ``query`` (a collision it resolves by dropping them) and drops ``think``;
here the user message is ``question`` (``instruction`` only when ``question`` is absent) and ``think`` is kept.
"""
from __future__ import annotations

from typing import Any

from datasets_prep.records import FieldError, require_str


def think_answer(reasoning: str, answer: str) -> str:
    return f"<think>\n{reasoning.strip()}\n</think>\n\n{answer.strip()}"


def _nonblank(obj: dict[str, Any], key: str) -> str:
    value = require_str(obj, key)
    assert value is not None
    if not value.strip():
        raise FieldError(f"field '{key}' is empty")
    return value


def convert_fortune(obj: dict[str, Any]) -> dict[str, Any]:
    question = require_str(obj, "Question")
    reasoning, answer = _nonblank(obj, "Complex_CoT"), _nonblank(obj, "Response")
    return {"system": None, "turns": [{"role": "user", "content": question},
                                      {"role": "assistant", "content": think_answer(reasoning, answer)}]}


def convert_medical(obj: dict[str, Any]) -> dict[str, Any]:
    question = require_str(obj, "question", optional=True)
    if question is None or (not question.strip() and obj.get("instruction")):  # CSV writes an absent cell as ""
        if "instruction" not in obj:
            raise FieldError("missing field 'question'")
        question = require_str(obj, "instruction")
    reasoning, answer = _nonblank(obj, "think"), _nonblank(obj, "answer")
    return {"system": None, "turns": [{"role": "user", "content": question},
                                      {"role": "assistant", "content": think_answer(reasoning, answer)}]}
