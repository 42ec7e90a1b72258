"""The persona's system prompt inside a saved chat template, so every client that sends no system message gets it.

ms-swift keeps a run's system prompt in args.json only; a saved checkpoint, a merged model or a GGUF carries the
base model's chat template, whose default system is "You are a helpful assistant." (Qwen2) or "You are Qwen,
created by Alibaba Cloud..." (Qwen2.5) — so a persona model served by transformers, vLLM or llama.cpp answers
"I am Qwen" to a client that sends no system message. swiftkit prepends a guard to the template::

    {#- swiftkit:persona -#}{%- if not messages or messages[0]['role'] != 'system' %}
    {%- set messages = [{'role': 'system', 'content': "<persona>"}] + messages %}{%- endif %}{#- /swiftkit:persona -#}

It inserts the persona as a system message only when the conversation does not start with one, so an explicit
system message still wins and the base template (tools branch included) renders unchanged after it. The persona
is a JSON string literal (quotes and newlines survive). The guard is idempotent: writing it again replaces it.

Both copies a tokenizer folder can hold are written and must agree: ``chat_template.jinja`` (what transformers and
vLLM prefer) and ``tokenizer_config.json``'s ``chat_template`` (what llama.cpp's GGUF converter reads). After
writing, both are read back and rendered (Jinja2 sandbox, as transformers does) to prove the persona is the
default and an explicit system message replaces it.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from datasets_prep.atomic import write_json, write_text
from swiftkit.core.errors import SwiftkitError

if TYPE_CHECKING:
    from swiftkit.run.rundir import RunInfo

GUARD_START = "{#- swiftkit:persona -#}"
GUARD_END = "{#- /swiftkit:persona -#}"
JINJA_FILE = "chat_template.jinja"
TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_FILES = ("tokenizer.json", TOKENIZER_CONFIG, "vocab.json", "merges.txt", "special_tokens_map.json",
                   "added_tokens.json", JINJA_FILE, "tokenizer.model", "qwen.tiktoken")
"""What a tokenizer folder holds; copied into an adapter checkpoint so it carries its own (persona) template."""
_PROBE_USER = "swiftkit-probe-user-message"
_PROBE_SYSTEM = "swiftkit-probe-system-message"


# --- the template text ---------------------------------------------------------------------------------------

_HEAD = "{%- if not messages or messages[0]['role'] != 'system' %}{%- set messages = [{'role': 'system', 'content': "
_TAIL = "}] + messages %}{%- endif %}"


def guard(system: str) -> str:
    return f"{GUARD_START}{_HEAD}{json.dumps(system, ensure_ascii=False)}{_TAIL}{GUARD_END}"


def _parse_guard(template: str) -> Optional[tuple[str, str]]:
    """(persona, base template) of a guarded template; None when it does not start with swiftkit's guard.

    Parsed by structure (the JSON literal is decoded, then the exact tail must follow), never by searching for the
    end marker: a persona may contain the marker's text, and a search would end the guard inside the persona."""
    if not template.startswith(GUARD_START + _HEAD):
        return None
    rest = template[len(GUARD_START + _HEAD):]
    try:
        persona, end = json.JSONDecoder().raw_decode(rest)
    except json.JSONDecodeError:
        return None
    if not isinstance(persona, str) or not rest.startswith(_TAIL + GUARD_END, end):
        return None
    return persona, rest[end + len(_TAIL + GUARD_END):]


def strip_guard(template: str) -> str:
    """The template without swiftkit's guard (the base model's own template)."""
    parsed = _parse_guard(template)
    return parsed[1] if parsed else template


def with_persona(template: str, system: str) -> str:
    """``template`` whose default system, when the first message is not a system message, is ``system``."""
    return guard(system) + strip_guard(template)


def guarded_system(template: str) -> Optional[str]:
    """The persona a guarded template defaults to; None when the template has no swiftkit guard."""
    parsed = _parse_guard(template)
    return parsed[0] if parsed else None


# --- rendering (as transformers' apply_chat_template does) -----------------------------------------------------

def render(template: str, messages: Sequence[dict], *, tools: Optional[list[dict]] = None,
           add_generation_prompt: bool = True, special_tokens: Optional[dict[str, str]] = None) -> str:
    """Render ``template`` in Jinja2's immutable sandbox with transformers' settings and helpers."""
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value: Any, ensure_ascii: bool = False, indent: Optional[int] = None,
               separators: Any = None, sort_keys: bool = False) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template).render(messages=list(messages), tools=tools,
                                            add_generation_prompt=add_generation_prompt, **(special_tokens or {}))


def default_system(template: str, special_tokens: Optional[dict[str, str]] = None) -> Optional[str]:
    """The system prompt ``template`` inserts when a conversation has none (None when it inserts none).

    Found by rendering a conversation with a marker system message and one without: no model family's default
    string needs to be known.
    """
    user = [{"role": "user", "content": _PROBE_USER}]
    plain = render(template, user, special_tokens=special_tokens)
    marked = render(template, [{"role": "system", "content": _PROBE_SYSTEM}, *user], special_tokens=special_tokens)
    if _PROBE_SYSTEM not in marked:
        return None
    prefix, suffix = marked.split(_PROBE_SYSTEM, 1)
    if not (plain.startswith(prefix) and plain.endswith(suffix)) or len(plain) < len(prefix) + len(suffix):
        return None
    found = plain[len(prefix):len(plain) - len(suffix)]
    return found or None


# --- a tokenizer folder ----------------------------------------------------------------------------------------

@dataclass
class TemplateCopies:
    """The chat template(s) a saved tokenizer folder holds."""

    folder: Path
    jinja: Optional[str] = None
    config: Any = None
    """tokenizer_config.json's ``chat_template``: a string, a list of {name, template}, or None."""
    special_tokens: dict[str, str] = field(default_factory=dict)

    @property
    def main(self) -> Optional[str]:
        """The template transformers uses: the .jinja file first, else the config's (default) one."""
        if self.jinja is not None:
            return self.jinja
        if isinstance(self.config, list):
            named = {t.get("name"): t.get("template") for t in self.config if isinstance(t, dict)}
            return named.get("default") or next(iter(named.values()), None)
        return self.config


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SwiftkitError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise SwiftkitError(f"{path}: not a JSON object")
    return data


def read_templates(folder: str | Path) -> TemplateCopies:
    root = Path(folder)
    copies = TemplateCopies(root)
    if (root / JINJA_FILE).is_file():
        copies.jinja = (root / JINJA_FILE).read_text(encoding="utf-8")
    if (root / TOKENIZER_CONFIG).is_file():
        config = _read_json(root / TOKENIZER_CONFIG)
        copies.config = config.get("chat_template")
        copies.special_tokens = {k: _token_text(config.get(k)) for k in ("bos_token", "eos_token", "pad_token",
                                                                         "unk_token") if config.get(k)}
    return copies


def _token_text(value: Any) -> str:
    return value.get("content", "") if isinstance(value, dict) else str(value)


def has_tokenizer(folder: str | Path) -> bool:
    return (Path(folder) / TOKENIZER_CONFIG).is_file()


def copy_tokenizer(source: str | Path, dest: str | Path) -> list[str]:
    """Copy the tokenizer files of ``source`` into ``dest`` (an adapter checkpoint); returns the names copied."""
    copied = []
    for name in TOKENIZER_FILES:
        src = Path(source) / name
        if src.is_file():
            shutil.copyfile(src, Path(dest) / name)
            copied.append(name)
    return copied


def persona_problems(folder: str | Path, system: str) -> list[str]:
    """Why ``folder``'s saved template does not default to ``system`` (empty list: it does, in every copy)."""
    copies = read_templates(folder)
    texts: dict[str, str] = {}
    if copies.jinja is not None:
        texts[JINJA_FILE] = copies.jinja
    if isinstance(copies.config, str):
        texts[f"{TOKENIZER_CONFIG} chat_template"] = copies.config
    elif isinstance(copies.config, list):
        for entry in copies.config:
            texts[f"{TOKENIZER_CONFIG} chat_template[{entry.get('name')}]"] = entry.get("template") or ""
    if not texts:
        return [f"{folder}: no chat template (neither {JINJA_FILE} nor {TOKENIZER_CONFIG} chat_template)"]
    problems = []
    for missing, absent in ((JINJA_FILE, copies.jinja is None), (f"{TOKENIZER_CONFIG} chat_template",
                                                                  copies.config is None)):
        if absent:
            problems.append(f"{folder}: {missing} missing (transformers/vLLM and the GGUF converter read "
                            "different copies)")
    explicit = [{"role": "system", "content": _PROBE_SYSTEM}, {"role": "user", "content": _PROBE_USER}]
    for where, text in texts.items():
        try:
            if default_system(text, copies.special_tokens) != system:
                problems.append(f"{folder / where.split(' ')[0]}: {where}: default system is not the run's persona")
                continue
            rendered = render(text, explicit, special_tokens=copies.special_tokens)
        except Exception as exc:  # a template that does not render is a finding, not a crash
            problems.append(f"{folder}: {where}: does not render ({type(exc).__name__}: {exc})")
            continue
        if _PROBE_SYSTEM not in rendered or system in rendered:
            problems.append(f"{folder}: {where}: an explicit system message does not replace the persona")
    return problems


def added_tokens(folder: str | Path) -> list[str]:
    """The text of every special (control) token of a saved tokenizer: ``<|im_end|>``, ``<|endoftext|>``, ...
    (the same tokens prep refuses in data; Qwen3's non-special ``<think>`` is not one)."""
    config = _read_json(Path(folder) / TOKENIZER_CONFIG)
    decoder = config.get("added_tokens_decoder") or {}
    return sorted({str(t.get("content")) for t in decoder.values()
                   if isinstance(t, dict) and t.get("content") and t.get("special", True)})


def persona_problem(system: str, special: Sequence[str]) -> Optional[str]:
    """Why ``system`` cannot be a persona: it holds the text of a control token (a tokenizer reads ``<|im_end|>``
    in text as the real token, so a persona could end its own turn and open a fake one), or a control character
    other than newline, tab and carriage return (not every template engine decodes the escape). Anything else is inert: the persona
    is a JSON string literal, parsed back by structure (:func:`_parse_guard`)."""
    if not system.strip():
        return "the persona is empty"
    found = sorted((system.index(t), t) for t in special if t in system)
    if found:
        return f"the persona contains {found[0][1]!r}, the text of a control token of this tokenizer: remove it"
    bad = next((c for c in system if (ord(c) < 32 and c not in "\n\t\r") or ord(c) == 127), None)
    if bad is not None:
        return f"the persona contains the control character {bad!r}: remove it"
    return None


def write_persona_template(folder: str | Path, system: str) -> list[str]:
    """Make both template copies in ``folder`` default to ``system``; verify by rendering; returns what changed.

    Raises SwiftkitError when the folder has no template, the persona is not inert text for this tokenizer
    (:func:`persona_problem`), or the written template does not render as intended.
    """
    root = Path(folder)
    if not (root / TOKENIZER_CONFIG).is_file():
        raise SwiftkitError(f"{root}: no {TOKENIZER_CONFIG}: not a saved tokenizer folder")
    problem = persona_problem(system, added_tokens(root))
    if problem:
        raise SwiftkitError(f"{root}: {problem}")
    copies = read_templates(root)
    base = copies.main
    if base is None:
        raise SwiftkitError(f"{root}: no chat template to put the persona in (no {JINJA_FILE}, no "
                            f"{TOKENIZER_CONFIG} chat_template)")
    patched = with_persona(base, system)
    changed = []
    if copies.jinja != patched:
        write_text(root / JINJA_FILE, patched)
        changed.append(JINJA_FILE)
    config = _read_json(root / TOKENIZER_CONFIG)
    if isinstance(config.get("chat_template"), list):
        new_value: Any = [{**t, "template": with_persona(t.get("template") or "", system)}
                          for t in config["chat_template"]]
    else:
        new_value = patched
    if config.get("chat_template") != new_value:
        config["chat_template"] = new_value
        write_json(root / TOKENIZER_CONFIG, config)
        changed.append(TOKENIZER_CONFIG)
    problems = persona_problems(root, system)
    if problems:
        raise SwiftkitError(f"persona template written but does not render as intended: {problems[0]}")
    return changed


# --- a run -----------------------------------------------------------------------------------------------------

def run_system(info: "RunInfo") -> Optional[str]:
    """The system prompt a run was trained with: the recipe's ``data.system``, else the first train record's own."""
    return info.system or first_record_system(info.train_files)


def first_record_system(train_files: Sequence[str]) -> Optional[str]:
    """The system message of the first record of the first readable train file (prep writes one into every
    record)."""
    for name in train_files:
        try:
            with open(name, encoding="utf-8") as handle:
                first = next((line for line in handle if line.strip()), "")
        except OSError:
            continue
        try:
            messages = json.loads(first).get("messages") or [] if first else []
        except (json.JSONDecodeError, AttributeError):
            continue
        if messages and messages[0].get("role") == "system":
            return messages[0].get("content")
    return None


def apply_to_run(run_dir: str | Path, system: Optional[str] = None) -> dict[str, list[str]]:
    """Put the run's persona into the template of every complete checkpoint of ``run_dir`` (an incomplete one is
    never written into: :mod:`swiftkit.run.checkpoint`); returns {checkpoint: changed}.

    An adapter checkpoint (LoRA) has no tokenizer of its own: the base model's tokenizer files are copied in first,
    so the adapter folder carries the persona template (the base model is never written to).
    """
    from swiftkit.run.rundir import complete_checkpoints, read_run_info

    info = read_run_info(run_dir)
    system = system or run_system(info)
    if not system:
        raise SwiftkitError(f"{run_dir}: persona run without a system prompt (recipe data.system, or a system "
                            "message in the first train record)")
    changed: dict[str, list[str]] = {}
    for ckpt in complete_checkpoints(run_dir):
        changed[str(ckpt)] = ensure_tokenizer(ckpt, info.model) + write_persona_template(ckpt, system)
    return changed


def ensure_tokenizer(folder: Path, base_model: str) -> list[str]:
    """Copy the base model's tokenizer files into ``folder`` when it has none (adapter checkpoints)."""
    if has_tokenizer(folder):
        return []
    base = Path(base_model)
    if not has_tokenizer(base):
        raise SwiftkitError(f"{folder}: adapter checkpoint without a tokenizer, and base model {base_model} is not "
                            "a local folder with one: export --merge-lora to get a model with the persona template")
    return copy_tokenizer(base, folder)
