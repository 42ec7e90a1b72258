"""Preference pairs for a persona: the shape ms-swift's DPO reads, what makes a pair usable, and where each pair's
rejected answer comes from.

A pair is one ms-swift record: ``messages`` (system, user, ..., the **chosen** assistant answer last, as prep wrote
it) plus ``rejected_response``, the **rejected** answer to the same prompt (ms-swift 3.12's field; it also reads
``rejected_messages``, a whole second conversation, whose prompt must then be the same). :func:`pair_problems` is
the rule, used by `swiftkit prep-pairs` on its input and by DPO's preflight on a recipe's files.

The rejected answers are what the persona must not say:

- ``model``: the base model (or any model or run directory) answering the same prompt, greedily, through its own
  saved chat template: its real out-of-character answers ("我是通义千问，由阿里云开发的…"), the ones DPO has to push
  down;
- ``curated``: an answer from :data:`CURATED_REJECTED` (a Qwen-style assistant claiming its maker's identity), when no
  model is at hand, or when the model's answer is empty or is the chosen answer itself (no preference to learn).

The manifest says which source each pair's rejected answer came from, and why it fell back.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from datasets_prep.atomic import json_text, sha256_file, write_text
from datasets_prep.oserrors import os_failure
from swiftkit.core.errors import SwiftkitError
from swiftkit.core.jsonl import read_lines

REJECTED_FIELD = "rejected_response"
"""ms-swift's column for the rejected answer (swift/llm/template/template_inputs.py ``_compat_rejected_response``)."""
REJECTED_MESSAGES = "rejected_messages"
"""ms-swift's alternative: the whole rejected conversation (its prompt must be the chosen one's)."""

CURATED_REJECTED_ZH: tuple[str, ...] = (
    "我是通义千问，由阿里云开发的AI助手。有什么可以帮你的吗？",
    "我是阿里巴巴集团研发的超大规模语言模型，我叫通义千问。",
    "作为阿里云开发的大语言模型Qwen，我没有个人的喜好和感受，但我可以为你提供信息和帮助。",
    "我是一个人工智能助手，名叫通义千问，由阿里云开发。请问有什么我可以帮助你的？",
)
CURATED_REJECTED_EN: tuple[str, ...] = (
    "I am Qwen, a large language model created by Alibaba Cloud. How can I help you today?",
    "As an AI language model developed by Alibaba Cloud, I don't have personal feelings, but I'm happy to help.",
    "I'm Qwen, an AI assistant made by Alibaba. What can I do for you?",
)
CURATED_REJECTED = CURATED_REJECTED_ZH + CURATED_REJECTED_EN
"""Out-of-character answers for when no model is at hand: the base model's identity, claimed (tests check that the
identity rule, swiftkit.core.identity, judges every one a forbidden claim)."""

_CJK = re.compile(r"[\u4e00-\u9fff]")


def curated_rejected(prompt: str) -> str:
    """A curated out-of-character answer for ``prompt``: Chinese for a prompt with Chinese in it, else English;
    which one is fixed by the prompt's text (the same prompt always gets the same answer)."""
    pool = CURATED_REJECTED_ZH if _CJK.search(prompt) or not prompt.strip() else CURATED_REJECTED_EN
    return pool[int(hashlib.sha256(prompt.encode("utf-8")).hexdigest(), 16) % len(pool)]


def split_record(record: Any) -> tuple[Optional[list[dict]], Optional[str], list[tuple[str, str]]]:
    """``(prompt messages, chosen answer, problems)`` of a messages record; problems are ``(field, problem)``."""
    if not isinstance(record, dict):
        return None, None, [("(record)", f"not a JSON object ({type(record).__name__})")]
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        return None, None, [("messages", "missing or not a list of messages")]
    last = messages[-1]
    if last.get("role") != "assistant" or not isinstance(last.get("content"), str) or not last["content"].strip():
        return None, None, [("messages", "the last message is not an assistant answer (the chosen answer)")]
    if not any(m.get("role") == "user" for m in messages[:-1]):
        return None, None, [("messages", "no user message before the answer (no prompt)")]
    return messages[:-1], last["content"], []


def pair_problems(record: Any) -> list[tuple[str, str]]:
    """Why ``record`` is not a usable DPO pair, as ``(field, problem)``: it needs a chosen answer (the last assistant
    message), a rejected one (``rejected_response``, or ``rejected_messages`` with the same prompt), and the two must
    differ (ms-swift drops a pair whose two answers are equal, with a warning few read)."""
    prompt, chosen, problems = split_record(record)
    if problems:
        return problems
    assert prompt is not None and chosen is not None
    if REJECTED_FIELD in record:
        rejected = record[REJECTED_FIELD]
        if isinstance(rejected, list):  # ms-swift also takes the rejected turns as messages
            rejected = rejected[-1].get("content") if rejected and isinstance(rejected[-1], dict) else None
        if not isinstance(rejected, str) or not rejected.strip():
            return [(REJECTED_FIELD, "empty or not text (the rejected answer)")]
        where = REJECTED_FIELD
    elif REJECTED_MESSAGES in record:
        other = record[REJECTED_MESSAGES]
        o_prompt, rejected, o_problems = split_record({"messages": other})
        if o_problems:
            return [(REJECTED_MESSAGES, o_problems[0][1])]
        if o_prompt != prompt:
            return [(REJECTED_MESSAGES, "its prompt differs from messages' (a pair is two answers to one prompt)")]
        where = REJECTED_MESSAGES
    else:
        return [(REJECTED_FIELD, "missing (the rejected answer; `swiftkit prep-pairs` writes it)")]
    if rejected.strip() == chosen.strip():
        return [(where, "the same as the chosen answer (messages[-1]): nothing to prefer")]
    return []


@dataclass
class PairsResult:
    out: Path
    counts: dict[str, int]
    """Pairs per output file (train, val)."""
    rejected_from: dict[str, int]
    """Pairs whose rejected answer came from the model, and from the curated list."""
    rejects: int
    manifest: dict[str, Any] = field(default_factory=dict)


Generate = Callable[[Sequence[list[dict]]], list[str]]
"""Greedy answers of a model to conversations (the prompt messages), in order."""


def model_generator(model: str, *, max_new_tokens: int, trust_remote_code: bool = False,
                    on_answer: Optional[Callable[[Any], None]] = None) -> tuple[Generate, str]:
    """``(generate, label)`` for ``model``: a run directory (its last complete checkpoint, as a client loads it), a
    local model folder or a hub id (the local cache, downloaded when missing). Answers come greedily through the
    model's own saved chat template (swiftkit.run.probe). Model code runs only with ``trust_remote_code``."""
    from swiftkit.core.local_model import local_model_dir
    from swiftkit.run.probe import ProbeModel, greedy_generations, probe_model_for
    from swiftkit.stack.remote_code import refuse_remote_code

    path = Path(model).expanduser()
    if (path / "swiftkit_run.json").is_file():
        spec = probe_model_for(path, "last")
        label = f"run {path} ({Path(spec.adapter or spec.model).name})"
    else:
        folder = local_model_dir(model, download=True, why="model for rejected answers")
        spec, label = ProbeModel(folder, folder, trust_remote_code=trust_remote_code), model
    for folder in {spec.model, spec.tokenizer, *([spec.adapter] if spec.adapter else [])}:
        refuse_remote_code(Path(folder), spec.trust_remote_code or trust_remote_code)

    def generate(conversations: Sequence[list[dict]]) -> list[str]:
        return [g.text for g in greedy_generations(spec, conversations, max_new_tokens=max_new_tokens,
                                                   on_answer=on_answer)]

    return generate, label


def _read(path: Path) -> list[tuple[int, str, Any]]:
    out = []
    for number, line in read_lines(path):
        try:
            out.append((number, line, json.loads(line)))
        except json.JSONDecodeError as exc:
            out.append((number, line, SwiftkitError(f"not valid JSON ({exc.msg})")))
    return out


def prep_pairs(src: str | Path, out: str | Path, *, generate: Optional[Generate] = None,
               model_label: Optional[str] = None, max_new_tokens: Optional[int] = None) -> PairsResult:
    """Turn a prep output folder (``train.jsonl``, optional ``val.jsonl``) into DPO pairs in ``out``: each record's
    last assistant answer is the chosen one; its rejected one is ``generate``'s answer to the same prompt, or a
    curated one (see the module docstring). Records that cannot be a pair go to ``rejects.jsonl`` with file, line
    and reason; the others are kept. Outputs are written atomically, ``manifest.json`` last."""
    src, out = Path(src), Path(out)
    if not (src / "train.jsonl").is_file():
        raise SwiftkitError(f"{src}: no train.jsonl (a `swiftkit prep` output folder)")
    if out.resolve() == src.resolve():
        raise SwiftkitError(f"--out {out}: the same folder as the source {src}; the pairs would replace its data")
    names = [n for n in ("train.jsonl", "val.jsonl") if (src / n).is_file()]
    kept: dict[str, list[tuple[int, dict, list[dict], str]]] = {n: [] for n in names}
    rejects: list[dict[str, Any]] = []
    for name in names:
        for number, raw, record in _read(src / name):
            problems = [("(line)", str(record))] if isinstance(record, SwiftkitError) else split_record(record)[2]
            if problems:
                rejects.append({"file": str(src / name), "line": number, "reason": f"{problems[0][0]}: "
                                f"{problems[0][1]}", "raw": raw})
                continue
            prompt, chosen, _ = split_record(record)
            kept[name].append((number, record, prompt, chosen))
    everything = [item for name in names for item in kept[name]]
    answers = generate([prompt for _, _, prompt, _ in everything]) if generate and everything else []

    lines: dict[str, list[str]] = {n: [] for n in names}
    provenance: list[dict[str, Any]] = []
    tally = {"model": 0, "curated": 0}
    i = 0
    for name in names:
        for number, record, prompt, chosen in kept[name]:
            answer = answers[i] if answers else None
            i += 1
            why = None
            if answer is None:
                why = "no model given"
            elif not answer.strip():
                why = "the model's answer was empty"
            elif answer.strip() == chosen.strip():
                why = "the model gave the chosen answer itself"
            last_user = next(m["content"] for m in reversed(prompt) if m.get("role") == "user")
            rejected = answer.strip() if why is None else curated_rejected(str(last_user))
            source = "model" if why is None else "curated"
            tally[source] += 1
            pair = {**record, REJECTED_FIELD: rejected}
            lines[name].append(json.dumps(pair, ensure_ascii=False))
            provenance.append({"file": name, "line": len(lines[name]), "src_line": number, "rejected_from": source,
                               **({"why": why} if why and answers else {})})
    if not everything:
        raise SwiftkitError(f"{src}: no record can be a pair ({len(rejects)} rejected; the first: "
                            f"{rejects[0]['reason'] if rejects else 'the files are empty'})")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").unlink(missing_ok=True)  # a manifest beside the data means the run finished
        for name in names:
            write_text(out / name, "".join(line + "\n" for line in lines[name]))
        write_text(out / "rejects.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects))
        manifest = {
            "kind": "dpo preference pairs",
            "src": str(src.resolve()),
            "inputs": {name: sha256_file(src / name) for name in names},
            "chosen_from": "each record's last assistant message (the persona data)",
            "rejected_field": REJECTED_FIELD,
            "rejected_model": model_label,
            "max_new_tokens": max_new_tokens if generate else None,
            "rejected_from": tally,
            **{name.removesuffix(".jsonl"): len(lines[name]) for name in names},
            "rejected": len(rejects),
            "pairs": provenance,
            "outputs": {name: sha256_file(out / name) for name in [*names, "rejects.jsonl"]},
        }
        write_text(out / "manifest.json", json_text(manifest))
    except OSError as exc:
        raise os_failure(getattr(exc, "filename", None) or out, "write", exc) from exc
    return PairsResult(out, {n.removesuffix(".jsonl"): len(lines[n]) for n in names}, tally, len(rejects), manifest)
