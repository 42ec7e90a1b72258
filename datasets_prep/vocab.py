"""The text vocabulary of the data, stated once for the producer (prep) and every reader (GRPO rewards, eval, check):
think blocks, ``<&动作&>`` action tags and the 可选动作 list a system prompt offers them under, and the special-token
text that data may not hold."""
from __future__ import annotations

import functools
import re
from typing import Any, Iterable, Optional

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


_LEADING_THINK = re.compile(r"\A<think>\n?(?P<reasoning>.*?)\n?</think>\s*(?P<answer>.*)\Z", re.DOTALL)


def split_think(text: str) -> tuple[Optional[str], str]:
    """(reasoning, answer) of a text that opens with a closed ``<think>`` block (prep's reasoning answers:
    ``<think>\\n{reasoning}\\n</think>\\n\\n{answer}``), else (None, text)."""
    match = _LEADING_THINK.match(text)
    return (match["reasoning"], match["answer"]) if match else (None, text)


def answer_part(text: str) -> str:
    """``text`` without its thinking: closed ``<think>`` blocks removed, an unclosed one cut off, and anything up to
    a stray ``</think>`` dropped (a template that prefills ``<think>`` leaves only the closing tag)."""
    text = THINK_BLOCK.sub("", text)
    if THINK_OPEN in text:
        text = text.split(THINK_OPEN, 1)[0]
    if THINK_CLOSE in text:
        text = text.rsplit(THINK_CLOSE, 1)[1]
    return text.strip()


SPECIAL_TOKEN_TEXTS: tuple[str, ...] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
"""The special tokens of the bundled Qwen tokenizer (``datasets_prep.qwen_tokenizer`` builds it with exactly these;
a test reads them back from its added tokens). Text holding one is tokenized as the control token itself: a
``<|im_end|><|im_start|>user`` inside an answer forges a turn, an ``<|endoftext|>`` ends the sample mid-answer. The
fallback where no tokenizer is at hand; :func:`special_tokens` adds a loaded tokenizer's own."""


def special_tokens(tokenizer: Any = None) -> tuple[str, ...]:
    """:data:`SPECIAL_TOKEN_TEXTS` plus the special added tokens of ``tokenizer`` (a transformers tokenizer or a
    ``tokenizers.Tokenizer``), e.g. Qwen2.5's ``<|fim_prefix|>`` or llama-3's ``<|eot_id|>``.

    Only tokens marked special: a tokenizer's non-special added tokens (Qwen3's ``<think>``, ``<tool_call>``) are
    markup the model is meant to read and write in its text, as the data's think blocks are."""
    if tokenizer is None:
        return SPECIAL_TOKEN_TEXTS
    getter = getattr(tokenizer, "get_added_tokens_decoder", None)
    decoder = getter() if callable(getter) else getattr(tokenizer, "added_tokens_decoder", {})
    own = [token.content for _, token in sorted(decoder.items()) if getattr(token, "special", False) and token.content]
    return tuple(dict.fromkeys([*SPECIAL_TOKEN_TEXTS, *own]))


@functools.lru_cache(maxsize=8)
def _special_pattern(tokens: tuple[str, ...]) -> "re.Pattern[str]":
    return re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))


def special_token_text(text: str, tokens: Iterable[str] = SPECIAL_TOKEN_TEXTS) -> Optional[str]:
    """The first special-token text in ``text`` (``"<|im_end|>"``), or ``None`` when it holds none. ``tokens``: the
    specials to look for (default :data:`SPECIAL_TOKEN_TEXTS`; :func:`special_tokens` gives a tokenizer's)."""
    tokens = tuple(tokens)
    if not tokens:
        return None
    found = _special_pattern(tokens).search(text)
    return found.group() if found else None
