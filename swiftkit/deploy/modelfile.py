"""An Ollama Modelfile beside an exported GGUF. Ollama does not run the GGUF's Jinja chat template, so the persona
goes in as SYSTEM, the prompt format as a Go TEMPLATE (ChatML models: Qwen), and generation stops at the
model's end-of-turn tokens."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from datasets_prep.atomic import write_text
from swiftkit.core.errors import SwiftkitError

CHATML_TEMPLATE = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n"
)


def stop_tokens(model_dir: str | Path) -> list[str]:
    """The text of every eos id in generation_config.json (added tokens of tokenizer.json), in order."""
    root = Path(model_dir)
    try:
        eos = json.loads((root / "generation_config.json").read_text(encoding="utf-8")).get("eos_token_id")
        added = json.loads((root / "tokenizer.json").read_text(encoding="utf-8")).get("added_tokens") or []
    except (OSError, json.JSONDecodeError):
        return []
    by_id = {t["id"]: t["content"] for t in added}
    ids = eos if isinstance(eos, list) else [eos]
    return [by_id[i] for i in ids if i in by_id]


def check_system(system: str) -> None:
    """One line when ``system`` cannot be a Modelfile's SYSTEM (export calls it before any long step)."""
    if '"""' in system:
        raise SwiftkitError('the system prompt contains """, which an Ollama Modelfile cannot quote: change the '
                            "persona, or export without --gguf")


def modelfile_text(gguf_name: str, *, system: Optional[str], chatml: bool, stops: list[str]) -> str:
    lines = ["# Written by `swiftkit export`: ollama create NAME -f Modelfile (in this folder)", f"FROM ./{gguf_name}"]
    if chatml:
        lines.append(f'TEMPLATE """{CHATML_TEMPLATE}"""')
    if system:
        check_system(system)
        lines.append(f'SYSTEM """{system}"""')
    lines += [f"PARAMETER stop {json.dumps(s, ensure_ascii=False)}" for s in stops]
    return "\n".join(lines) + "\n"


def write_modelfile(gguf: Path, model_dir: str | Path, system: Optional[str]) -> Path:
    """``Modelfile`` beside ``gguf`` (atomic); ChatML TEMPLATE when the model's template is ChatML."""
    from swiftkit.run.persona import read_templates

    template = read_templates(model_dir).main or ""
    path = gguf.parent / "Modelfile"
    write_text(path, modelfile_text(gguf.name, system=system, chatml="<|im_start|>" in template,
                                    stops=stop_tokens(model_dir)))
    return path
