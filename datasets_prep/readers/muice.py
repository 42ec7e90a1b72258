"""Muice (沐雪) role-play data, in every shape it has been published in.

Shapes (samples of each: datasets_prep/samples/muice/), detected per record:

1. ``{"system": ..., "conversation": [{"human": ..., "assistant": ...}, ...]}`` (2025+; more pairs = multi-turn)
2. ``{"prompt": ..., "completion": ..., "history": [[q, a], ...]}`` (up to 2024)
3. ``{"prompt": ..., "respond": ..., "history": []}`` (2024 self-cognition file)
4. ``{"messages": [{"role": ..., "content": ...}, ...]}``

History turns come first, then the prompt and its answer, so multi-turn conversations stay whole.
A dataset folder is read as published: ``train.jsonl`` and ``Customized/*.jsonl`` go to train and
``test.jsonl`` to val; any other layout (or a single file) is split by ``--val-ratio``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from datasets_prep.readers.base import (
    history_pairs,
    labelled,
    messages_turns,
    pairs_to_turns,
)
from datasets_prep.records import FieldError, require_str
from datasets_prep.sourcefiles import list_data_files


def convert(obj: dict[str, Any]) -> dict[str, Any]:
    if "conversation" in obj:
        conv = obj["conversation"]
        if conv.__class__ is not list or not conv:
            raise FieldError("field 'conversation' is missing or not a non-empty list")
        turns = []
        for i, pair in enumerate(conv):
            if pair.__class__ is not dict:
                raise FieldError(f"field 'conversation[{i}]' is not a {{human, assistant}} object")
            try:
                turns.append({"role": "user", "content": pair["human"]})
                turns.append({"role": "assistant", "content": pair["assistant"]})
            except KeyError as exc:
                raise FieldError(f"missing field 'conversation[{i}].{exc.args[0]}'") from None
        return {"system": require_str(obj, "system", optional=True), "turns": turns}
    if "messages" in obj:
        system, turns = messages_turns(obj)
        return {"system": system, "turns": turns}
    if "prompt" in obj:
        answer_key = "completion" if "completion" in obj else "respond" if "respond" in obj else None
        if answer_key is None:
            raise FieldError("missing field 'completion' (or 'respond') beside 'prompt'")
        pairs = history_pairs(obj) + [(obj["prompt"], obj[answer_key])]
        return {"system": require_str(obj, "system", optional=True), "turns": pairs_to_turns(pairs)}
    keys = ", ".join(sorted(map(str, obj))) or "none"
    raise FieldError(f"unknown Muice record shape (keys: {keys}); expected conversation, prompt/completion, prompt/respond or messages")


def dataset_files(src: Path) -> list[tuple[Path, str, Optional[str]]]:
    """The published folder layout when present, else every data file (all of the folder is listed either way, so
    nothing in it that cannot be read goes unnoticed)."""
    files = list_data_files(src)
    if files != [src]:
        by_name = {p.relative_to(src).as_posix(): p for p in files}
        train, test = by_name.get("train.jsonl"), by_name.get("test.jsonl")
        customized = [p for rel, p in by_name.items()
                      if rel.startswith("Customized/") and rel.count("/") == 1 and rel.endswith(".jsonl")]
        if test is not None and (train is not None or customized):
            return (labelled(src, [train] if train is not None else [], "train") + labelled(src, customized, "train")
                    + labelled(src, [test], "val"))
    return labelled(src, files)
