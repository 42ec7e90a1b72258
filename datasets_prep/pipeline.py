"""Turn one source into ``train.jsonl``, ``val.jsonl``, ``rejects.jsonl``, ``lengths.png`` and ``manifest.json``.

    reader -> Conversation | Reject -> system prompt -> placeholders -> validate -> dedupe -> split/score -> write

Validation includes special-token text: a record with ``<|im_end|>`` (or any special token of the counting
tokenizer, :func:`datasets_prep.vocab.special_tokens`) in a message is a reject naming the message and the token.
Refused, not escaped: no escape survives every chat template and tokenizer the data may meet, and a refusal is seen.

Everything streams: records are written as they are read, and the only per-record state kept is a 16-byte
digest (for dedupe) and one token count. Split and score come from a keyed BLAKE2b hash of (seed, messages),
so they are deterministic per record and seed without holding the data, and reruns are byte-identical.

Each output line is ``{"messages":[...],"score":x,"solution":"..."}`` (``COLUMNS``). ``solution`` repeats the final
assistant message's content: ms-swift's GRPO drops the final assistant message before generating and hands
reward functions only the other columns, so the reference answer has to be a column of its own. The score is a
placeholder drawn from ``score_choices`` by the hash, or the record's own rating with ``score_from``. The hash
covers the messages only, so neither column moves a record between splits or changes what counts as a duplicate.

``--out`` is handled by ``outdir.OutputDir``: refused where it overlaps ``--src``, locked against a second prep,
every output written to a temp file and all renamed together at the end, ``manifest.json`` last (a stale one is
removed first), so a manifest beside the data means the run finished. A record that cannot be parsed or written
(nested too deep, not valid Unicode) is a reject like any other; an OS error is one line naming the path.
A run where every record is rejected still fails (one line), but only after writing its outputs: rejects.jsonl
with every reject, empty train/val, and a manifest whose counts reconcile and whose ``error`` says why (training
refuses an empty train file); a run that read no record at all writes nothing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from datasets_prep import fastjson, hub
from datasets_prep.atomic import json_text
from datasets_prep.digestset import DigestSet
from datasets_prep.errors import SwiftkitError
from datasets_prep.options import PrepOptions
from datasets_prep.oserrors import os_failure, shown
from datasets_prep.outdir import OutputDir, check_apart
from datasets_prep.raw_format import RAW_RENDERING, raw_record, raw_render
from datasets_prep.records import Conversation, Reject
from datasets_prep.registry import get_source
from datasets_prep.scorefield import ScoreField
from datasets_prep.sourcefiles import check_encoding, parse_columns
from datasets_prep.token_counter import token_counter
from datasets_prep.validate import check_messages
from datasets_prep.vocab import SPECIAL_TOKEN_TEXTS, special_token_text

COLUMNS = ("messages", "score", "solution")  # the keys of every output line, in order
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

    Readers build fresh turn dicts, so they are used as they are. Placeholders use the zh value for
    ``tag == "zh"`` and the en value for ``"en"``; without a tag, zh where the record contains CJK text, else en
    (ms-swift's self-cognition set carries the tag).
    """
    messages = [{"role": "system", "content": system}]
    messages += conv.turns[:2] if single_turn else conv.turns
    if model_name is not None or model_author is not None:
        if conv.tag is not None:
            idx = 0 if conv.tag == "zh" else 1
        else:
            idx = 0 if any(isinstance(m["content"], str) and _CJK.search(m["content"]) for m in messages) else 1
        for m in messages:
            m["content"] = _fill(m["content"], model_name, model_author, idx)
    return messages


def _special_token(messages: list[dict[str, Any]], tokens: tuple[str, ...]) -> Optional[str]:
    """Why ``messages`` cannot be trained on because a content holds special-token text, or ``None``."""
    for i, m in enumerate(messages):
        content = m["content"]
        if isinstance(content, str) and (found := special_token_text(content, tokens)) is not None:
            return (f"messages[{i}] ({m['role']}) content holds special-token text {found!r}, which the tokenizer "
                    "reads as a control token, not as text; remove it from the data")
    return None


def _one_line_ends(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with ``\\r\\n`` and lone ``\\r`` in every content made ``\\n`` (Excel writes CRLF inside quoted
    CSV cells), so the model never learns ``\\r``. New dicts: the shared system message is never mutated."""
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, str) and "\r" in content:
            m = {**m, "content": content.replace("\r\n", "\n").replace("\r", "\n")}
        out.append(m)
    return out


def _unfilled(messages: list[dict[str, Any]]) -> Optional[str]:
    for i, m in enumerate(messages):
        if isinstance(m["content"], str):
            found = _PLACEHOLDER.search(m["content"])
            if found:
                flag = "--model-name" if found.group(1) == "NAME" else "--model-author"
                return f"messages[{i}] has an unfilled {found.group(0)} placeholder (pass {flag} ZH EN)"
    return None


class _Sink:
    """Buffered lines into an open binary file (the temp file of ``path``), hashed (sha256) as they are written."""

    __slots__ = ("fh", "path", "buf", "sha")

    def __init__(self, fh: Any, path: Path) -> None:
        self.fh, self.path, self.buf, self.sha = fh, path, [], hashlib.sha256()

    def flush(self) -> None:
        if self.buf:
            data = b"".join(self.buf)
            try:
                self.fh.write(data)
            except OSError as exc:  # a full disk, a quota, an I/O error: one line naming the output
                raise os_failure(self.path, "write", exc) from None
            self.sha.update(data)
            self.buf.clear()


def _move_to_val(train: _Sink, val: _Sink, line: bytes) -> None:
    """Small sets can draw no val record at all; then the train record with the lowest split hash moves to val.

    Still deterministic per seed. Only reached when val came out empty, i.e. for small inputs, so reading the
    temp train file back is cheap.
    """
    train_fh = train.fh
    try:
        train_fh.flush()
        train_fh.seek(0)
        kept = [row for row in train_fh.read().splitlines(keepends=True) if row != line]
        train_fh.seek(0)
        train_fh.truncate()
        train_fh.writelines(kept)
        train_fh.seek(0)
        train.sha = hashlib.sha256(train_fh.read())
    except OSError as exc:
        raise os_failure(train.path, "write", exc) from None
    val.buf.append(line)
    val.flush()


def prep(source: str, src: str | os.PathLike[str], out: str | os.PathLike[str], options: PrepOptions = PrepOptions(),
         progress: Optional[Callable[[int], None]] = None) -> dict[str, Any]:
    """Convert ``src`` (path or hub id) of ``source`` into ``out`` as ``options`` say; returns the manifest (also
    written). ``options`` are validated first, every problem reported at once (:meth:`PrepOptions.validate`).

    ``progress(n)`` is called with the number of input records read since the last call.
    """
    entry = get_source(source)
    options.validate()
    system, keep_system, val_ratio, seed = options.system, options.keep_system, options.val_ratio, options.seed
    single_turn, max_length, over_length = options.single_turn, options.max_length, options.over_length
    model_name, model_author, score_from = options.model_name, options.model_author, options.score_from
    encoding, columns, keep_duplicates = options.encoding, options.columns, options.keep_duplicates
    token_stats, histogram = options.token_stats, options.histogram
    choices = [float(c) for c in options.score_choices]
    codec = check_encoding(encoding)
    renames = parse_columns(columns)
    scorer = ScoreField(score_from) if score_from is not None else None
    keep = entry.keep_system if keep_system is None else keep_system
    src_text = os.fspath(src)
    src_path = hub.resolve(src_text)
    specs = entry.files(src_path)
    out_dir = Path(out)
    check_apart(src_text, src_path, [path for path, _, _ in specs], out_dir)
    measure = over_length != "keep"  # count each record's tokens as it comes (to drop or cut it)
    # the tokenizer that counts: loaded before the lock, so a folder it cannot use fails with nothing touched
    tokens = token_counter(options.tokenizer) if token_stats or measure else None
    raw = options.prompt_format == "raw"
    if raw and tokens is not None:  # a raw record is counted as its plain text, not through a chat template
        tokens = dataclasses.replace(tokens, render=raw_render, rendering=RAW_RENDERING)

    # special-token text is refused, never escaped: found in the JSON bytes of a record (one search), explained
    # per message only then; the tokens are the counting tokenizer's specials where it is loaded
    specials = tokens.specials if tokens is not None else SPECIAL_TOKEN_TEXTS
    special_in = re.compile(b"|".join(re.escape(fastjson.dumps(t)[1:-1]) for t in specials)).search

    key = str(seed).encode()[:64]
    threshold = int(val_ratio * 2**64)
    n_choices = len(choices)
    score_text = [json.dumps(c).encode() for c in choices]
    dumps, encode_error = fastjson.dumps, fastjson.EncodeError
    seeded = hashlib.blake2b(digest_size=16, key=key)  # copied per record: cheaper than keying each hash
    seen_add = DigestSet().add
    counts = {"read": 0, "train": 0, "val": 0, "rejected": 0, "duplicates": 0}
    n_replaced = n_line_ends = n_dup_kept = n_over = n_truncated = n_special = 0
    inputs: dict[str, str] = {}
    first_reject: Optional[Reject] = None
    moved = False

    with OutputDir(out_dir) as outputs:  # locked from here; every file written below appears only at commit()
        counter = None
        if tokens is not None:
            from datasets_prep.stats import LengthCounter, fit_last_answer

            count_tokens, render = tokens.count, tokens.render
            counter = LengthCounter(count_tokens, render=render) if token_stats else None
            if counter is not None and histogram:
                from datasets_prep.stats import import_plotting_in_background

                import_plotting_in_background()
        train = _Sink(outputs.open("train.jsonl", "w+b"), out_dir / "train.jsonl")
        val = _Sink(outputs.open("val.jsonl"), out_dir / "val.jsonl")
        rejects = _Sink(outputs.open("rejects.jsonl"), out_dir / "rejects.jsonl")

        def reject(item: Reject) -> None:
            nonlocal first_reject
            counts["rejected"] += 1
            first_reject = first_reject or item
            rejects.buf.append(fastjson.dumps(item.as_json()) + b"\n")
            rejects.flush()

        # A source that builds its prompt per record (actions) keeps building it with --system: the given text
        # replaces only the instruction, the record's action list stays.
        constant_system = None if entry.system_builder is not None else system if system is not None else entry.system
        system_message = {"role": "system", "content": constant_system}  # shared: nothing mutates it on this path
        data_system = system is None and keep
        fill = model_name is not None or model_author is not None
        train_add, val_add = train.buf.append, val.buf.append
        n_read = n_train = n_val = n_dup = 0
        lowest_rank = 1 << 64
        lowest_line = b""
        score_min, score_max = float("inf"), float("-inf")
        # --encoding/--columns passed only when given: the plain call is the one every Source.read takes
        read_options = {k: v for k, v in (("encoding", codec), ("columns", renames)) if v is not None}
        for item in entry.read(specs, inputs, scorer, **read_options):
            n_read += 1
            if not n_read % PROGRESS_EVERY and progress is not None:
                progress(PROGRESS_EVERY)
            if item.__class__ is Reject:
                reject(item)
                continue
            own = item.system
            if data_system and own.__class__ is str and own.strip():
                sys_message = {"role": "system", "content": own}
            else:
                if own.__class__ is str and own.strip():
                    n_replaced += 1  # the record's own prompt gives way to the source's (or --system)
                if constant_system is not None:
                    sys_message = system_message
                else:
                    sys_message = {"role": "system", "content": entry.default_system(item, seed, system)}
            if fill:
                messages = build_messages(item, system=sys_message["content"], single_turn=single_turn,
                                          model_name=model_name, model_author=model_author)
            else:
                messages = [sys_message]
                messages += item.turns[:2] if single_turn else item.turns
            reason = check_messages(messages)
            if reason is None and raw:
                messages, reason = raw_record(messages)
            if reason is not None:
                reject(Reject(item.file, item.line, reason, item.raw))
                continue
            try:
                body = dumps(messages)
            except encode_error as exc:  # text that is not valid Unicode (a lone surrogate): this record only
                reject(Reject(item.file, item.line, f"cannot be written as JSON: {exc}", item.raw))
                continue
            if b"{{" in body and (reason := _unfilled(messages)) is not None:
                reject(Reject(item.file, item.line, reason, item.raw))
                continue
            if special_in(body) is not None and (reason := _special_token(messages, specials)) is not None:
                n_special += 1
                reject(Reject(item.file, item.line, reason, item.raw))
                continue
            if b"\\r" in body:  # JSON writes a CR as \r; rare, so the check is all most records pay
                messages = _one_line_ends(messages)
                fixed = dumps(messages)
                if fixed != body:
                    body = fixed
                    n_line_ends += 1
            n_tokens = -1
            if measure:
                n_tokens = count_tokens([render(messages)])[0]
                if n_tokens > max_length:
                    n_over += 1
                    fitted = None
                    if over_length == "truncate":
                        fitted = fit_last_answer(messages, max_length, n_tokens, tokens)
                    if fitted is None:
                        how = ("" if over_length == "drop" else
                               "; cutting the last answer cannot make it fit")
                        reject(Reject(item.file, item.line, f"{n_tokens} tokens, over --max-length {max_length}"
                                      f"{how} (--over-length {over_length})", item.raw))
                        continue
                    messages, n_tokens = fitted
                    body = dumps(messages)
                    n_truncated += 1
            hasher = seeded.copy()
            hasher.update(body)
            digest = hasher.digest()
            tail = int.from_bytes(digest[8:], "big")  # picks the score; also the dedupe key
            if not seen_add(tail | 1):
                if not keep_duplicates:
                    n_dup += 1
                    continue
                n_dup_kept += 1
            if scorer is None:
                score = score_text[tail % n_choices]
            else:
                value = item.score
                assert value is not None  # set by the reader's shared conversion step whenever scorer is given
                if value < score_min:
                    score_min = value
                if value > score_max:
                    score_max = value
                score = dumps(value)
            solution = dumps(messages[-1]["content"])  # validated: the final message is the assistant's, a string
            line = b'{"messages":' + body + b',"score":' + score + b',"solution":' + solution + b"}\n"
            rank = int.from_bytes(digest[:8], "big")
            forced = item.split
            if forced == "val" or (forced is None and rank < threshold):
                val_add(line)
                n_val += 1
                if not n_val & 1023:
                    val.flush()
            else:
                train_add(line)
                n_train += 1
                if not n_train & 1023:
                    train.flush()
                if forced is None and rank < lowest_rank:
                    lowest_rank, lowest_line = rank, line
            if counter is not None:
                if n_tokens >= 0:
                    counter.add_count(n_tokens)
                else:
                    counter.add(messages)
        train.flush()
        val.flush()
        counts.update(read=n_read, train=n_train, val=n_val, duplicates=n_dup)
        if progress is not None and n_read % PROGRESS_EVERY:
            progress(n_read % PROGRESS_EVERY)
        if val_ratio > 0 and n_val == 0 and n_train >= 2 and lowest_line:
            _move_to_val(train, val, lowest_line)
            counts["train"] -= 1
            counts["val"] += 1
            moved = True
        failed: Optional[SwiftkitError] = None
        if counts["train"] + counts["val"] == 0:
            where = f"; first reject {first_reject.file}:{first_reject.line}: {first_reject.reason}" if first_reject else ""
            kept = f"; every reject is in {shown(out_dir / 'rejects.jsonl')}" if counts["rejected"] else ""
            failed = SwiftkitError(f"{shown(src_text)}: no valid record ({counts['read']} read, {counts['rejected']} "
                                   f"rejected, {counts['duplicates']} duplicates){where}{kept}")
            if not counts["rejected"]:
                raise failed  # nothing to keep: the old outputs stay as they were

        inputs = {label: inputs[label] for _, label, _ in specs}  # in reading order
        manifest: dict[str, Any] = {
            "source": source,
            "src": shown(src_text),
            **counts,
            "options": {
                "system": system, "keep_system": keep, "val_ratio": val_ratio, "seed": seed, "score_choices": choices,
                "single_turn": single_turn, "max_length": max_length,
                "model_name": list(model_name) if model_name else None,
                "model_author": list(model_author) if model_author else None,
                "score_from": score_from, "encoding": encoding, "columns": renames,
                "keep_duplicates": keep_duplicates, "over_length": over_length,
                "tokenizer": None if options.tokenizer is None else shown(options.tokenizer),
                "prompt_format": options.prompt_format,
            },
            # kept exact duplicates (--keep-duplicates): counted in train/val, not in "duplicates"
            "duplicates_kept": n_dup_kept,
            # records whose own system prompt was replaced by the source's (or --system)
            "system_replaced": n_replaced,
            # records with \r\n or a lone \r in a message, written with \n
            "line_ends_normalized": n_line_ends,
            # records rejected for special-token text (<|im_end|>...) in a message (counted in "rejected")
            "special_token_rejects": n_special,
            "over_length": ({"policy": "keep"} if not measure else
                            {"policy": over_length, "over": n_over, "truncated": n_truncated,
                             "dropped": n_over - n_truncated, "tokenizer": tokens.name}),
            "columns": list(COLUMNS),
            "score": ({"source": "placeholder", "choices": choices} if scorer is None else
                      {"source": "field", "field": score_from, "min": score_min, "max": score_max}),
            "inputs": inputs,
            "val_fallback": moved,
        }
        if failed is not None:  # the rejects are kept, beside empty train/val and this manifest saying why
            manifest["error"] = str(failed)
        manifest["outputs"] = {"train.jsonl": train.sha.hexdigest(), "val.jsonl": val.sha.hexdigest(),
                               "rejects.jsonl": rejects.sha.hexdigest()}
        if counter is not None:
            from datasets_prep.stats import summarize, write_histogram

            counter.flush()
            manifest["token_lengths"] = {**summarize(counter.lengths, max_length), "tokenizer": tokens.name,
                                         "rendering": tokens.rendering}
            if histogram and failed is None:
                def keep_png(path: Path, data: bytes) -> None:
                    outputs.write(path.name, data)
                    manifest["outputs"][path.name] = hashlib.sha256(data).hexdigest()

                write_histogram(out_dir / "lengths.png", counter.lengths, max_length,
                                f"{source}: {len(counter.lengths)} records, "
                                f"{manifest['token_lengths']['over_max_length']} over {max_length}", writer=keep_png,
                                tokenizer=tokens.name)
        assert counts["read"] == counts["train"] + counts["val"] + counts["rejected"] + counts["duplicates"]
        outputs.write("manifest.json", json_text(manifest).encode("utf-8"))
        outputs.commit()
    if failed is not None:
        raise failed
    return manifest
