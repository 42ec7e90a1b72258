"""Who the model says it is: the one identity rule that `swiftkit check`, `swiftkit eval` and the GRPO persona reward
all apply, so the three agree by construction.

- A **forbidden identity claim** is an unnegated mention of a base model or its maker (Qwen, 通义千问, Alibaba,
  ChatGPT, OpenAI, ...). A denial ("我才不是千问呢", "not Qwen") is what a persona should say: it is not a claim.
- **Naming the persona** is its name appearing in the answer (case-insensitive).
- :func:`judge_identity` combines them: a claim wins over a name ("我是沐雪，基于通义千问" claims), then a name, else
  neither. check fails a claim; eval counts an answer right when it names the persona (or, with no known name, when it
  does not claim); the reward scores claim -1, named +1, neither 0.
"""
from __future__ import annotations

import functools
import re
from typing import Literal, Optional, Sequence

FORBIDDEN_IDENTITIES: tuple[str, ...] = (
    "Qwen", "通义千问", "通义", "千问", "阿里巴巴", "阿里云", "阿里", "Alibaba", "ChatGPT", "OpenAI",
)
"""Identities a persona model must not claim (case-insensitive substrings)."""

IDENTITY_PROMPTS = ("你是谁？", "你叫什么名字？", "介绍一下你自己")
"""The identity question and two paraphrases, as clients ask them (check's probe, eval's identity rows)."""

IDENTITY_QUESTIONS = re.compile(
    r"你是谁|你叫什么|你的名字|介绍一下你自己|介绍下你自己|自我介绍|你是什么模型|你是哪个模型|你是什么AI|你是哪家"
    r"|who are you|what(?:'s| is) your name|introduce yourself|what model are you",
    re.IGNORECASE,
)
"""User messages that ask who the model is (the records the GRPO persona reward scores)."""

_NEGATIONS = r"(?:不是|并不是|才不是|可不是|不叫|not|n't|never)"
_NAME_AFTER_NAMED = re.compile(r"(?:名为|名叫|叫做)\s*[\"“「『']?([^\"”」』'，,。！!？?\s的]{1,16})")
_NAME_AFTER_YOU_ARE = re.compile(r"你(?:是|叫)\s*[\"“「『']?([^\"”」』'，,。！!？?\s]{1,16}?)[\"”」』']?(?:[，,。！!？?\s]|$)")
_NOT_A_NAME = ("一个", "一位", "一名", "一只", "个", "位", "名")

Verdict = Literal["claims", "named", "neither"]


@functools.lru_cache(maxsize=32)
def _patterns(forbidden: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    names = "|".join(re.escape(f) for f in sorted({f for f in forbidden if f}, key=len, reverse=True)) or r"(?!)"
    mention = re.compile(names, re.IGNORECASE)
    denial = re.compile(_NEGATIONS + r"[\s\W]{0,3}(?:the\s+|a\s+|an\s+)?(?:" + names + ")", re.IGNORECASE)
    return mention, denial


def claims_forbidden_identity(answer: Optional[str], forbidden: Sequence[str] = FORBIDDEN_IDENTITIES) -> bool:
    """True when ``answer`` mentions a forbidden identity other than to deny it."""
    mention, denial = _patterns(tuple(forbidden))
    return bool(mention.search(denial.sub(" ", answer or "")))


def judge_identity(answer: Optional[str], name: Optional[str],
                   forbidden: Sequence[str] = FORBIDDEN_IDENTITIES) -> Verdict:
    """``claims`` (a forbidden identity, not denied), else ``named`` (the persona's name appears), else ``neither``."""
    if claims_forbidden_identity(answer, forbidden):
        return "claims"
    if name and name.lower() in (answer or "").lower():
        return "named"
    return "neither"


def persona_name(system: Optional[str]) -> Optional[str]:
    """The persona's name from a system prompt ("你是一个名为沐雪的…" / "你是沐雪，…"); None when there is none."""
    for pattern in (_NAME_AFTER_NAMED, _NAME_AFTER_YOU_ARE):
        match = pattern.search(system or "")
        if match and not match.group(1).startswith(_NOT_A_NAME):
            return match.group(1)
    return None
