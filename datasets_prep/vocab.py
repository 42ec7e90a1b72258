"""The text vocabulary of the data, stated once for the producer (prep) and every reader (GRPO rewards, eval, check):
think blocks, ``<&动作&>`` action tags and the 可选动作 list a system prompt offers them under."""
from __future__ import annotations

import re
from typing import Optional

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)

ACTIONS_HEADER = "可选动作"
"""The heading of the action list in an actions system prompt (seed 001's wording)."""
ACTIONS_LIST_HEAD = f"\n\n{ACTIONS_HEADER}: \n"
"""What prep writes between the instruction and the ``- action`` lines."""
_ACTIONS_HEADER_RE = re.compile(re.escape(ACTIONS_HEADER) + r"\s*[:：]")

ACTION_TAG = re.compile(r"<&([^<>&\n]*)&>")
"""One action tag, ``<&动作&>``: no newline and no ``< > &`` inside."""
MALFORMED_TAG = "<&?>"
"""Stands for a ``<&`` that no ``&>`` closes; never an offered action, so it counts as unoffered."""


def action_tags(text: str) -> list[str]:
    """The ``<&ACTION&>`` tags of ``text`` in order; each unclosed ``<&`` adds :data:`MALFORMED_TAG`."""
    tags = [t.strip() for t in ACTION_TAG.findall(text)]
    return tags + [MALFORMED_TAG] * ACTION_TAG.sub("", text).count("<&")


def offered_actions(system: Optional[str]) -> list[str]:
    """The ``- ACTION`` lines after ``可选动作:`` in a system prompt, in order; [] when it offers none."""
    match = _ACTIONS_HEADER_RE.search(system or "")
    if not match or system is None:
        return []
    actions = []
    for line in system[match.end():].splitlines():
        line = line.strip()
        if not line and not actions:
            continue
        if not line.startswith("-"):
            break
        actions.append(line[1:].strip())
    return [a for a in actions if a]


def answer_part(text: str) -> str:
    """``text`` without its thinking: closed ``<think>`` blocks removed, an unclosed one cut off, and anything up to
    a stray ``</think>`` dropped (a template that prefills ``<think>`` leaves only the closing tag)."""
    text = THINK_BLOCK.sub("", text)
    if THINK_OPEN in text:
        text = text.split(THINK_OPEN, 1)[0]
    if THINK_CLOSE in text:
        text = text.rsplit(THINK_CLOSE, 1)[1]
    return text.strip()
