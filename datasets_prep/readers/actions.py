"""The action-selection set from the digital-human LoRA seed: a CSV with 行动 / 问题 / 回答.

``行动`` lists the actions joined by "、"; the answer uses ``<&动作&>`` tags. The system prompt (built in
``registry.actions_system``) lists this record's actions, shuffled reproducibly from the seed. An answer tag
naming an action the record's 行动 list does not offer is a reject: the model would learn to call an action it
was never shown.
"""
from __future__ import annotations

from typing import Any

from datasets_prep.records import FieldError, require_str
from datasets_prep.vocab import MALFORMED_TAG, action_tags


def convert(obj: dict[str, Any]) -> dict[str, Any]:
    actions_text = require_str(obj, "行动")
    assert actions_text is not None
    actions = [a.strip() for a in actions_text.split("、") if a.strip()]
    if not actions:
        raise FieldError("field '行动' lists no actions")
    answer = require_str(obj, "回答")
    assert answer is not None
    if "<&" in answer:
        offered = set(actions)
        for tag in action_tags(answer):
            if tag == MALFORMED_TAG:
                raise FieldError("answer has an action tag '<&' that no '&>' closes (or one spanning lines)")
            if tag not in offered:
                raise FieldError(f"answer uses action '{tag}' that the record's 行动 list does not offer")
    return {
        "system": None,
        "turns": [{"role": "user", "content": require_str(obj, "问题")},
                  {"role": "assistant", "content": answer}],
        "actions": actions,
    }
