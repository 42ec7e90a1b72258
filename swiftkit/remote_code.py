"""Model code shipped in a model folder (``auto_map`` in config.json or tokenizer_config.json) runs only when a
recipe says ``trust_remote_code: true``. ms-swift 3.12 loads every model and tokenizer with trust_remote_code=True,
so swiftkit refuses before handing such a folder to it: in preflight (the base model), and in check, infer, serve and
export (the checkpoint and, for adapters, the base model)."""
from __future__ import annotations

import json
from pathlib import Path

from swiftkit.errors import SwiftkitError

CODE_FILES = ("config.json", "tokenizer_config.json")


def remote_code_files(folder: str | Path) -> list[Path]:
    """The files in ``folder`` whose ``auto_map`` names code to import (unreadable JSON counts as no code)."""
    found = []
    for name in CODE_FILES:
        path = Path(folder) / name
        try:
            data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and data.get("auto_map"):
            found.append(path)
    return found


def refuse_remote_code(folder: str | Path, allowed: bool) -> None:
    """One-line SwiftkitError when ``folder`` ships code and the run did not allow it."""
    if allowed:
        return
    files = remote_code_files(folder)
    if files:
        raise SwiftkitError(f"{files[0]}: field auto_map: the model ships its own code; set trust_remote_code: true "
                            "in the recipe to run it")
