"""Turn one source into ``train.jsonl``, ``val.jsonl``, ``rejects.jsonl``, ``lengths.png`` and ``manifest.json``.

    reader -> Conversation | Reject -> system prompt -> placeholders -> validate -> dedupe -> split/score -> write

Everything streams: records are written as they are read, and the only per-record state kept is a 16-byte
digest (for dedupe) and one token count. Split and score come from a keyed BLAKE2b hash of (seed, messages),
so they are deterministic per record and seed without holding the data, and reruns are byte-identical.

Output files are written through temp files and renamed at the end; ``manifest.json`` is written last (and a
stale one removed first), so a manifest beside the data means the run finished.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from datasets_prep import hub
from datasets_prep.records import Conversation, Reject
from datasets_prep.registry import get_source
from datasets_prep.validate import check_messages
from swiftkit.atomic import atomic_open, write_json
from swiftkit.errors import SwiftkitError

DEFAULT_SCORES = (8.0, 8.5, 9.0, 9.5, 10.0)
DEFAULT_MAX_LENGTH = 2048
PROGRESS_EVERY = 1000
_PLACEHOLDER = re.compile(r"\{\{(NAME|AUTHOR)\}\}")
_CJK = re.compile(r"[\u3400-\u9fff]")


def _fill(text: Any, name: Optional[Sequence[str]], author: Optional[Sequence[str]], idx: int) -> Any:
    if not isinstance(text, str) or "{{" not in text:
        return text
    if name is not None:
        text = text.replace("{{NAME}}", name[idx])
    if author is not None:
        text = text.replace("{{AUTHOR}}", author[idx])
    return text


def build_messages(conv: Conversation, *, system: str, single_turn: bool,
                   model_name: Optional[Sequence[str]], model_author: Optional[Sequence[str]]) -> list[dict[str, Any]]:
    """System first, then the turns (only the first exchange with ``single_turn``), placeholders filled.

    Placeholders use the zh value for ``tag == "zh"`` and the en value for ``"en"``; without a tag, zh where
    the record contains CJK text, else en (ms-swift's self-cognition set carries the tag).
    """
    turns = conv.turns[:2] if single_turn else conv.turns
    messages = [{"role": "system", "content": system}] + [{"role": t["role"], "content": t["content"]} for t in turns]
    if model_name is not None or model_author is not None:
        if conv.tag is not None:
            idx = 0 if conv.tag == "zh" else 1
        else:
            idx = 0 if any(isinstance(m["content"], str) and _CJK.search(m["content"]) for m in messages) else 1
        for m in messages:
            m["content"] = _fill(m["content"], model_name, model_author, idx)
    return messages


def _unfilled(messages: list[dict[str, Any]]) -> Optional[str]:
    for i, m in enumerate(messages):
        if isinstance(m["content"], str):
            found = _PLACEHOLDER.search(m["content"])
            if found:
                flag = "--model-name" if found.group(1) == "NAME" else "--model-author"
                return f"messages[{i}] has an unfilled {found.group(0)} placeholder (pass {flag} ZH EN)"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _move_to_val(train_fh: Any, val_fh: Any, line: bytes) -> None:
    """Small sets can draw no val record at all; then the train record with the lowest split hash moves to val.

    Still deterministic per seed. Only reached when val came out empty, i.e. for small inputs, so reading the
    temp train file back is cheap.
    """
    train_fh.flush()
    train_fh.seek(0)
    kept = [row for row in train_fh.read().splitlines(keepends=True) if row != line]
    train_fh.seek(0)
    train_fh.truncate()
    train_fh.writelines(kept)
    val_fh.write(line)


def prep(
    source: str,
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    system: Optional[str] = None,
    keep_system: Optional[bool] = None,
    val_ratio: float = 0.1,
    seed: int = 42,
    score_choices: Sequence[float] = DEFAULT_SCORES,
    single_turn: bool = False,
    max_length: int = DEFAULT_MAX_LENGTH,
    model_name: Optional[Sequence[str]] = None,
    model_author: Optional[Sequence[str]] = None,
    token_stats: bool = True,
    histogram: bool = True,
    progress: Optional[Callable[[int], None]] = None,
) -> dict[str, Any]:
    """Convert ``src`` (path or hub id) of ``source`` into ``out``; returns the manifest (also written).

    ``progress(n)`` is called with the number of input records read since the last call.
    ``token_stats=False`` skips the tokenizer (benchmarks time it on its own); a real prep keeps it on.
    """
    entry = get_source(source)
    if not 0.0 <= val_ratio < 1.0:
        raise SwiftkitError(f"--val-ratio {val_ratio}: must be in [0, 1)")
    choices = [float(c) for c in score_choices]
    if not choices:
        raise SwiftkitError("--score-choices: give at least one score")
    for label, pair in (("--model-name", model_name), ("--model-author", model_author)):
        if pair is not None and len(pair) != 2:
            raise SwiftkitError(f"{label}: give two values, ZH and EN")
    if max_length < 1:
        raise SwiftkitError(f"--max-length {max_length}: must be positive")
    keep = entry.keep_system if keep_system is None else keep_system
    src_text = os.fspath(src)
    src_path = hub.resolve(src_text)
    specs = entry.files(src_path)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # a stale manifest must never describe new data

    counter = None
    if token_stats:
        from datasets_prep.stats import LengthCounter, qwen_batch_encoder

        counter = LengthCounter(qwen_batch_encoder())

    key = str(seed).encode()[:64]
    threshold = int(val_ratio * 2**64)
    n_choices = len(choices)
    score_text = [json.dumps(c) for c in choices]
    dumps = json.dumps
    blake2b = hashlib.blake2b
    seen: set[bytes] = set()
    counts = {"read": 0, "train": 0, "val": 0, "rejected": 0, "duplicates": 0}
    inputs: dict[str, str] = {}
    first_reject: Optional[Reject] = None
    lowest: Optional[tuple[int, bytes]] = None  # the hash-split train record closest to the val side
    moved = False
    pending = 0

    with ExitStack() as stack:
        train_fh = stack.enter_context(atomic_open(out_dir / "train.jsonl", "w+b"))
        val_fh = stack.enter_context(atomic_open(out_dir / "val.jsonl", "wb"))
        rej_fh = stack.enter_context(atomic_open(out_dir / "rejects.jsonl", "wb"))

        def reject(item: Reject) -> None:
            nonlocal first_reject
            counts["rejected"] += 1
            first_reject = first_reject or item
            rej_fh.write((dumps(item.as_json(), ensure_ascii=False) + "\n").encode())

        for item in entry.read(specs):
            counts["read"] += 1
            pending += 1
            if progress is not None and pending >= PROGRESS_EVERY:
                progress(pending)
                pending = 0
            if isinstance(item, Reject):
                reject(item)
                continue
            if system is not None:
                sys_prompt = system
            elif keep and isinstance(item.system, str) and item.system.strip():
                sys_prompt = item.system
            else:
                sys_prompt = entry.default_system(item, seed)
            messages = build_messages(item, system=sys_prompt, single_turn=single_turn,
                                      model_name=model_name, model_author=model_author)
            reason = check_messages(messages) or _unfilled(messages)
            if reason is not None:
                reject(Reject(item.file, item.line, reason, item.raw))
                continue
            body = dumps(messages, ensure_ascii=False).encode()
            digest = blake2b(body, digest_size=16, key=key).digest()
            if digest in seen:
                counts["duplicates"] += 1
                continue
            seen.add(digest)
            rank = int.from_bytes(digest[:8], "big")
            split = item.split or ("val" if rank < threshold else "train")
            score = score_text[int.from_bytes(digest[8:], "big") % n_choices]
            line = b'{"messages": ' + body + b', "score": ' + score.encode() + b"}\n"
            (val_fh if split == "val" else train_fh).write(line)
            if split == "train" and item.split is None and (lowest is None or rank < lowest[0]):
                lowest = (rank, line)
            counts[split] += 1
            if counter is not None:
                counter.add(messages)
        if progress is not None and pending:
            progress(pending)
        if val_ratio > 0 and counts["val"] == 0 and counts["train"] >= 2 and lowest is not None:
            _move_to_val(train_fh, val_fh, lowest[1])
            counts["train"] -= 1
            counts["val"] += 1
            moved = True
        if counts["train"] + counts["val"] == 0:
            where = f"; first reject {first_reject.file}:{first_reject.line}: {first_reject.reason}" if first_reject else ""
            raise SwiftkitError(f"{src_text}: no valid record ({counts['read']} read, {counts['rejected']} rejected, "
                                f"{counts['duplicates']} duplicates){where}")

    for path, label, _ in specs:
        inputs[label] = _sha256(path)
    manifest: dict[str, Any] = {
        "source": source,
        "src": src_text,
        **counts,
        "options": {
            "system": system, "keep_system": keep, "val_ratio": val_ratio, "seed": seed, "score_choices": choices,
            "single_turn": single_turn, "max_length": max_length,
            "model_name": list(model_name) if model_name else None,
            "model_author": list(model_author) if model_author else None,
        },
        "inputs": inputs,
        "val_fallback": moved,
    }
    if counter is not None:
        from datasets_prep.stats import summarize, write_histogram

        counter.flush()
        manifest["token_lengths"] = summarize(counter.lengths, max_length)
        if histogram:
            write_histogram(out_dir / "lengths.png", counter.lengths, max_length,
                            f"{source}: {len(counter.lengths)} records, {manifest['token_lengths']['over_max_length']} over {max_length}")
    names = ["train.jsonl", "val.jsonl", "rejects.jsonl"] + (["lengths.png"] if counter is not None and histogram else [])
    manifest["outputs"] = {name: _sha256(out_dir / name) for name in names}
    assert counts["read"] == counts["train"] + counts["val"] + counts["rejected"] + counts["duplicates"]
    write_json(out_dir / "manifest.json", manifest)
    return manifest
