"""Which tokenizer counts a record's tokens (the manifest's token_lengths, ``--over-length drop|truncate``): the bundled
Qwen tokenizer, or a local tokenizer folder (``--tokenizer DIR``), so a llama-3 recipe's data is measured in llama-3
tokens.

A folder is loaded by transformers' AutoTokenizer with ``trust_remote_code=False`` always; a folder whose tokenizer
needs its own code (``auto_map``) is refused with one line, never run. A record is rendered the way the model sees it:
through the folder's chat template when it has one, else as the qwen2_5 chat (ChatML) text; the bundled tokenizer
always uses ChatML. Counting uses the fast (Rust) tokenizer's batch encoder either way.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from datasets_prep.errors import SwiftkitError
from datasets_prep.oserrors import shown
from datasets_prep.vocab import SPECIAL_TOKEN_TEXTS, special_tokens

BUNDLED = "qwen (bundled)"
"""The manifest's name for the bundled Qwen tokenizer (datasets_prep.qwen_tokenizer)."""
CHATML = "qwen2_5 chat (ChatML)"
FOLDER_TEMPLATE = "the folder's chat template"
PROBE = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]
"""The conversation shape prep writes; a chat template that cannot render it cannot measure prep's records."""


def render_chatml(messages: Sequence[dict[str, Any]]) -> str:
    """``<|im_start|>role\\ncontent<|im_end|>\\n`` per message: the ids ms-swift's qwen2_5 template trains on."""
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)


@dataclass(frozen=True)
class TokenCounter:
    name: str
    """What the manifest and the summary line say: :data:`BUNDLED`, or the folder as given."""
    rendering: str
    """How a record becomes text: :data:`CHATML` or :data:`FOLDER_TEMPLATE`."""
    render: Callable[[Sequence[dict[str, Any]]], str]
    """messages -> the text whose tokens are counted."""
    count: Callable[[list[str]], list[int]]
    """texts -> token counts (one batch through the fast tokenizer)."""
    offsets: Callable[[str], list[tuple[int, int]]]
    """text -> the character span of each of its tokens (``--over-length truncate`` cuts at a token boundary)."""
    specials: tuple[str, ...] = SPECIAL_TOKEN_TEXTS
    """The special-token text data may not hold: :func:`datasets_prep.vocab.special_tokens` of this tokenizer."""


def _counter(name: str, rendering: str, render: Callable[[Sequence[dict[str, Any]]], str], backend: Any) -> TokenCounter:
    # tokenizers >= 0.21: encode_batch_fast skips offset tracking (~40% faster here); same ids
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)

    def count(texts: list[str]) -> list[int]:
        return [len(enc.ids) for enc in encode(texts, add_special_tokens=False)]

    def offsets(text: str) -> list[tuple[int, int]]:
        return backend.encode(text, add_special_tokens=False).offsets

    return TokenCounter(name, rendering, render, count, offsets, special_tokens(backend))


def _threaded_count(encoding: Any, threads: int) -> Callable[[list[str]], list[int]]:
    """texts -> token counts through a ``tiktoken.Encoding``, one slice of the batch per thread (tiktoken's encoder
    releases the GIL). tiktoken's own ``encode_batch`` starts a pool per call and makes a future per text; this pool
    lives as long as the counter and makes one per thread."""
    from concurrent.futures import ThreadPoolExecutor

    encode, allowed = encoding.encode, encoding.special_tokens_set  # ChatML markers are specials, as in training
    pool: list[ThreadPoolExecutor] = []

    def count_slice(texts: list[str]) -> list[int]:
        return [len(encode(text, allowed_special=allowed)) for text in texts]

    def count(texts: list[str]) -> list[int]:
        if threads <= 1 or len(texts) < 2 * threads:
            return count_slice(texts)
        if not pool:
            pool.append(ThreadPoolExecutor(threads, thread_name_prefix="token-count"))
        step = -(-len(texts) // threads)
        return [n for part in pool[0].map(count_slice, [texts[i:i + step] for i in range(0, len(texts), step)])
                for n in part]

    return count


@functools.lru_cache(maxsize=1)
def bundled() -> TokenCounter:
    """The offline Qwen tokenizer, ChatML rendering: counted by ``tiktoken`` over dashscope's qwen.tiktoken (the same
    ids as the converted tokenizer, no transformers or torch, nothing to build first; see
    :mod:`datasets_prep.qwen_tokenizer`). Cutting an answer at a token boundary needs character offsets, which the
    converted tokenizer gives: it is loaded only when a record is cut."""
    from datasets_prep.qwen_tokenizer import load_qwen_backend, load_qwen_encoding

    def offsets(text: str) -> list[tuple[int, int]]:
        return _converted().encode(text, add_special_tokens=False).offsets

    @functools.lru_cache(maxsize=1)
    def _converted() -> Any:
        return load_qwen_backend()

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    count = _threaded_count(load_qwen_encoding(), min(8, cpus))
    return TokenCounter(BUNDLED, CHATML, render_chatml, count, offsets, SPECIAL_TOKEN_TEXTS)


@functools.lru_cache(maxsize=4)  # prep-all counts every source with the same folder: load it once
def from_folder(folder: str | os.PathLike[str]) -> TokenCounter:
    """A local tokenizer folder (tokenizer.json, or files transformers converts to a fast tokenizer); one-line
    SwiftkitError when it is not a folder, ships its own code, does not load, or its chat template cannot render a
    system/user/assistant conversation."""
    from datasets_prep.remote_code import remote_code_files

    name = shown(folder)
    path = Path(folder)
    if not path.is_dir():
        raise SwiftkitError(f"--tokenizer {name}: no such folder")
    code = remote_code_files(path)
    if code:
        raise SwiftkitError(f"--tokenizer {name}: {shown(code[0])} field auto_map: the tokenizer needs its own code, "
                            "which prep never runs (trust_remote_code is off); give a folder transformers loads "
                            "without it")
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False, local_files_only=True)
    except Exception as exc:  # transformers raises many kinds for a folder it cannot use
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise SwiftkitError(f"--tokenizer {name}: transformers cannot load a tokenizer from it "
                            f"({type(exc).__name__}: {first})") from None
    if not getattr(tokenizer, "is_fast", False):
        raise SwiftkitError(f"--tokenizer {name}: {type(tokenizer).__name__} is not a fast tokenizer (prep counts with "
                            "the Rust one); a folder with tokenizer.json has one")
    if not tokenizer.chat_template:
        return _counter(name, CHATML, render_chatml, tokenizer.backend_tokenizer)

    def render(messages: Sequence[dict[str, Any]]) -> str:
        try:
            return tokenizer.apply_chat_template(list(messages), tokenize=False)
        except Exception as exc:  # a Jinja error raised by the template itself
            raise SwiftkitError(f"--tokenizer {name}: its chat template fails on a record "
                                f"({type(exc).__name__}: {str(exc)[:200]})") from None

    try:
        tokenizer.apply_chat_template(PROBE, tokenize=False)
    except Exception as exc:
        raise SwiftkitError(f"--tokenizer {name}: its chat template cannot render a system/user/assistant "
                            f"conversation ({type(exc).__name__}: {str(exc)[:200]})") from None
    return _counter(name, FOLDER_TEMPLATE, render, tokenizer.backend_tokenizer)


def token_counter(folder: Optional[str | os.PathLike[str]] = None) -> TokenCounter:
    """The folder's counter, or the bundled Qwen one when ``folder`` is None."""
    return bundled() if folder is None else from_folder(folder)
