"""Seed 004's raw prompt format (``prep --prompt-format raw``): one plain text per record, trained whole.

Seed 004 (unsloth, Qwen3-8B) trained no chat template: each row became the text below plus ``tokenizer.eos_token``,
and SFTTrainer gave every token a loss. Prep writes that text as ms-swift's pretraining record shape, a single
assistant message (``{"messages": [{"role": "assistant", "content": TEXT}]}``); a recipe with
``data.prompt_format: raw`` trains it through ms-swift's generation template (``--use_chat_template false``: no
markup, the end token appended), so the tokens are exactly the seed's text and its end token
(tests/test_raw_format.py encodes a record with ms-swift's own template to prove it). The instruction (``### 指令``)
is the record's system prompt, the question its user message, and an answer that opens with a think block has it
written in the seed's own markers (``<思考>``), not Qwen3's ``<think>``.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from datasets_prep.vocab import split_think

PromptFormat = Literal["chat", "raw"]
PROMPT_FORMATS: tuple[str, ...] = ("chat", "raw")
"""chat: ms-swift messages (system, user, assistant) trained through the model's chat template; raw: this module."""

HEAD = ("以下是描述任务的指令,以及提供进一步上下文的输入。\n请写出一个适当完成请求的回答。\n"
        "在回答之前,请仔细思考问题,并创建一个逻辑连贯的思考过程,以确保回答准确无误。\n\n")
"""The seed's preamble, as its train_prompt_style writes it (ASCII commas and colons included)."""
PROMPT = HEAD + "### 指令:\n{instruction}\n\n### 问题:\n{question}\n\n### 回答:\n"
THINK_OPEN, THINK_CLOSE = "<思考>", "</思考>"
"""The seed's think markers: ``<思考>\\n{cot}\\n</思考>\\n{answer}``."""


def raw_text(messages: list[dict[str, Any]]) -> str:
    """The seed's text of one (system, user, assistant) record, without the end token (the template adds it)."""
    system, user, assistant = (m["content"] for m in messages)
    reasoning, answer = split_think(assistant)
    reply = answer if reasoning is None else f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n{answer}"
    return PROMPT.format(instruction=system, question=user) + reply


def raw_record(messages: list[dict[str, Any]]) -> tuple[Optional[list[dict[str, Any]]], Optional[str]]:
    """(the record as one assistant message, None), or (None, why it cannot be written raw)."""
    if len(messages) != 3:
        return None, (f"the raw prompt format holds one exchange, this record has {(len(messages) - 1) // 2} "
                      "(--single-turn keeps the first)")
    return [{"role": "assistant", "content": raw_text(messages)}], None


def record_format(messages: Any) -> Optional[PromptFormat]:
    """Which format a written record is in: raw (one assistant message), chat (a user turn), None (neither)."""
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        return None
    roles = [m.get("role") for m in messages]
    if roles == ["assistant"]:
        return "raw"
    return "chat" if "user" in roles else None


def raw_render(messages: list[dict[str, Any]]) -> str:
    """The text whose tokens prep counts for a raw record (the end token is one more)."""
    return messages[-1]["content"]


RAW_RENDERING = "raw text, no template (+1 end token not counted)"
"""The manifest's token_lengths.rendering for raw records."""
