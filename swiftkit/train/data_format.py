"""Preflight's prompt-format check: the files a recipe trains on are in the format its ``data.prompt_format`` plans
(chat records through the chat template, or seed 004's raw text through the generation template,
:mod:`datasets_prep.raw_format`). A chat file planned raw would train the JSON roles away; a raw file planned chat
would wrap the seed's text in chat markup. The first record of each file says which it is."""
from __future__ import annotations

import json
from typing import Optional

from datasets_prep.raw_format import record_format
from swiftkit.train.checks import Check
from swiftkit.train.mixing import dataset_file
from swiftkit.train.recipes import Recipe

_SHAPES = {"chat": "a chat record (system, user, assistant)", "raw": "a raw-text record (one assistant message)"}


def first_record(path: str) -> tuple[int, Optional[object]]:
    """(line, the messages of the first non-blank line) of a JSONL file; (0, None) when there is none to read."""
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    return number, json.loads(line).get("messages")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        pass
    return 0, None


def format_check(recipe: Recipe) -> Check:
    """ok when the first record of every train, val and mix file is in ``data.prompt_format``; the first that is
    not is named with its line (unreadable files are the data checks' to report)."""
    want = recipe.data.prompt_format
    files = [dataset_file(n) for n in [*recipe.data.train, *recipe.data.val]] + recipe.mix_files
    for path in files:
        line, messages = first_record(path)
        found = record_format(messages) if line else None
        if line and found != want:
            fix = ("prep with --prompt-format raw" if want == "raw" else
                   "prep without --prompt-format raw, or set data.prompt_format: raw and data.train_on: all")
            shape = _SHAPES.get(found or "", "neither a chat nor a raw-text record")
            return Check("data.prompt_format", False, f"{path}:{line}: {shape}, but data.prompt_format is {want}: {fix}")
    return Check("data.prompt_format", True, f"{want}: {len(files)} file(s) in that format")
