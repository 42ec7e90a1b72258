"""Model code shipped in a model or tokenizer folder: ``auto_map`` in config.json or tokenizer_config.json names Python
files that loading the folder would import. Stated here once, for prep's --tokenizer (always refused: prep never runs
model code) and for swiftkit (swiftkit.stack.remote_code: refused unless a recipe says ``trust_remote_code: true``)."""
from __future__ import annotations

import json
from pathlib import Path

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
