"""An Ollama Modelfile beside each exported GGUF (``<gguf stem>.Modelfile``: every quantisation keeps its own).

Ollama does not run the GGUF's Jinja chat template, so the prompt format goes in as a Go TEMPLATE in Ollama's
current ``.Messages`` form (ChatML models: Qwen), with the tool-calling parts where the model's own template has
tools (Qwen2.5, Qwen3) and the thinking switch where it thinks (Qwen3: ``<think>``); the persona goes in as SYSTEM,
the context length as ``num_ctx`` (the run's max_length), and generation stops at the model's end-of-turn tokens.
The template follows the one Ollama's library ships for qwen2.5 / qwen3; `swiftkit export --help` says how to run it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from datasets_prep.atomic import write_text
from swiftkit.core.errors import SwiftkitError

_TOOLS_SYSTEM = (
    "{{- if or .System .Tools }}<|im_start|>system\n"
    "{{- if .System }}\n{{ .System }}\n{{- end }}\n"
    "{{- if .Tools }}\n\n# Tools\n\n"
    "You may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    "{{- range .Tools }}\n{\"type\": \"function\", \"function\": {{ .Function }}}\n{{- end }}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within <tool_call></tool_call> "
    "XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>\n"
    "{{- end }}<|im_end|>\n{{ end }}"
)
_PLAIN_SYSTEM = "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
_LAST_USER = ("{{- $lastUser := -1 }}{{- range $i, $m := .Messages }}{{- if eq $m.Role \"user\" }}"
              "{{ $lastUser = $i }}{{ end }}{{- end }}\n")
_THINK_SWITCH = ("{{- if and $.IsThinkSet (eq $i $lastUser) }}{{ if $.Think }} /think{{ else }} /no_think{{ end }}"
                 "{{- end }}")
_THINKING = "{{ if and $.IsThinkSet .Thinking (or $last (gt $i $lastUser)) }}<think>{{ .Thinking }}</think>\n{{ end }}"
_TOOL_CALLS = ("\n{{- else if .ToolCalls }}<tool_call>\n{{ range .ToolCalls }}{\"name\": \"{{ .Function.Name }}\", "
               "\"arguments\": {{ .Function.Arguments }}}\n{{ end }}</tool_call>")
_TOOL_TURN = "{{- else if eq .Role \"tool\" }}<|im_start|>user\n<tool_response>\n{{ .Content }}\n</tool_response><|im_end|>\n"
_NO_THINK_PROMPT = "{{ if and $.IsThinkSet (not $.Think) }}<think>\n\n</think>\n\n{{ end }}"


def ollama_template(*, tools: bool, thinking: bool) -> str:
    """Ollama's Go TEMPLATE for a ChatML model: the ``.Messages`` form, with tools and thinking where asked."""
    return "".join([
        _LAST_USER if thinking else "",
        _TOOLS_SYSTEM if tools else _PLAIN_SYSTEM,
        "{{- range $i, $_ := .Messages }}\n{{- $last := eq (len (slice $.Messages $i)) 1 -}}\n",
        "{{- if eq .Role \"user\" }}<|im_start|>user\n{{ .Content }}",
        _THINK_SWITCH if thinking else "",
        "<|im_end|>\n{{ else if eq .Role \"assistant\" }}<|im_start|>assistant\n",
        _THINKING if thinking else "",
        "{{ if .Content }}{{ .Content }}",
        _TOOL_CALLS if tools else "",
        "\n{{- end }}{{ if not $last }}<|im_end|>\n{{ end }}\n",
        _TOOL_TURN if tools else "",
        "{{- end }}\n",
        "{{- if and (ne .Role \"assistant\") $last }}<|im_start|>assistant\n",
        _NO_THINK_PROMPT if thinking else "",
        "{{ end }}\n{{- end }}",
    ])


def template_features(jinja: str) -> tuple[bool, bool, bool]:
    """(ChatML, tools, thinking) of a model's Jinja chat template: what its Ollama TEMPLATE must carry."""
    chatml = "<|im_start|>" in jinja
    return chatml, chatml and "<tools>" in jinja, chatml and "<think>" in jinja


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


def modelfile_name(gguf: Path) -> str:
    """``<gguf stem>.Modelfile``: one per GGUF, so several quantisations of a run each keep theirs."""
    return f"{gguf.stem}.Modelfile"


def modelfile_text(gguf_name: str, *, system: Optional[str], jinja: str, stops: list[str],
                   num_ctx: Optional[int]) -> str:
    chatml, tools, thinking = template_features(jinja)
    name = gguf_name.removesuffix(".gguf")
    lines = [f"# Written by `swiftkit export`: ollama create {name} -f {name}.Modelfile (in this folder)",
             f"FROM ./{gguf_name}"]
    if chatml:
        lines.append(f'TEMPLATE """{ollama_template(tools=tools, thinking=thinking)}"""')
    if system:
        check_system(system)
        lines.append(f'SYSTEM """{system}"""')
    if num_ctx:
        lines.append(f"PARAMETER num_ctx {num_ctx}")
    lines += [f"PARAMETER stop {json.dumps(s, ensure_ascii=False)}" for s in stops]
    return "\n".join(lines) + "\n"


def write_modelfile(gguf: Path, model_dir: str | Path, system: Optional[str], *, num_ctx: Optional[int]) -> Path:
    """``<gguf stem>.Modelfile`` beside ``gguf`` (atomic), its TEMPLATE matched to the model's chat template."""
    from swiftkit.run.persona import read_templates

    path = gguf.parent / modelfile_name(gguf)
    write_text(path, modelfile_text(gguf.name, system=system, jinja=read_templates(model_dir).main or "",
                                    stops=stop_tokens(model_dir), num_ctx=num_ctx))
    return path
