"""The real Qwen tokenizer, built offline and cached.

No model hub is reachable here, but the PyPI package ``dashscope`` ships ``resources/qwen.tiktoken``:
the Qwen BPE ranks. transformers' ``TikTokenConverter`` turns it into a fast tokenizer whose ids match
Qwen2's own ("你好，我是沐雪" -> [108386, 3837, 104198, 103303, 100167]), with the three chat specials
at 151643/151644/151645. The result is saved once under the cache folder and reused.

Building needs transformers (and so torch). Prep counts tokens with neither the build nor the cache:
:func:`load_qwen_encoding` reads the same ranks into ``tiktoken`` (a dependency of dashscope itself), the library
``qwen.tiktoken`` was written for: the same byte-level BPE, split pattern and special ids, so the same ids, loaded in
about a third of the time ``tokenizers`` takes to read the converted tokenizer.json (tests/test_prep_fast.py checks
the ids and that prep imports no transformers or torch; ``python -m benchmarks.tokens_bench`` measures the
counting). The converted tokenizer (:func:`load_qwen_backend`) is still what prep cuts an over-long answer with
(``--over-length truncate`` needs character offsets) and what a training run's tokenizer is.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING

from datasets_prep.errors import SwiftkitError
from datasets_prep.vocab import SPECIAL_TOKEN_TEXTS

if TYPE_CHECKING:  # pragma: no cover
    from tiktoken import Encoding
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL_TOKENS = list(SPECIAL_TOKEN_TEXTS)  # the order fixes their ids below
ENDOFTEXT_ID, IM_START_ID, IM_END_ID = 151643, 151644, 151645

# The Qwen2-Instruct chat template (no tools): a record without a system message gets the Qwen default,
# exactly the behaviour that makes fine-tuned models keep saying they are Qwen.
QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
CACHE_VERSION = "v1"


def cache_root() -> Path:
    """``$SWIFTKIT_CACHE`` or ``~/.cache/swiftkit``."""
    return Path(os.environ.get("SWIFTKIT_CACHE") or Path.home() / ".cache" / "swiftkit")


def tiktoken_file() -> Path:
    """Locate ``qwen.tiktoken`` inside the installed dashscope package without importing it."""
    spec = importlib.util.find_spec("dashscope")
    if spec is None or not spec.submodule_search_locations:
        raise SwiftkitError("the Qwen tokenizer needs the 'dashscope' package (pip install dashscope)")
    path = Path(list(spec.submodule_search_locations)[0]) / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise SwiftkitError(f"dashscope is installed but {path} is missing")
    return path


def build_qwen_tokenizer(out_dir: str | os.PathLike[str]) -> Path:
    """Write a Qwen2-compatible fast tokenizer (tokenizer.json + config + chat template) into ``out_dir``."""
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    out = Path(out_dir)
    backend = TikTokenConverter(
        vocab_file=str(tiktoken_file()), pattern=QWEN_PATTERN, additional_special_tokens=SPECIAL_TOKENS
    ).converted()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    ids = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    if ids != [ENDOFTEXT_ID, IM_START_ID, IM_END_ID]:
        raise SwiftkitError(f"built Qwen tokenizer has special ids {ids}, expected 151643/151644/151645")
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(tmp))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out


def cached_tokenizer_dir() -> Path:
    """The cached tokenizer folder, built on first use."""
    path = cache_root() / f"qwen-tokenizer-{CACHE_VERSION}"
    if not (path / "tokenizer.json").is_file():
        build_qwen_tokenizer(path)
    return path


def load_qwen_tokenizer() -> "PreTrainedTokenizerFast":
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(cached_tokenizer_dir()))


def load_qwen_backend() -> "Tokenizer":
    """The bundled tokenizer as a ``tokenizers.Tokenizer`` read from the cached ``tokenizer.json`` (the same Rust
    tokenizer transformers wraps: identical ids). Imports transformers only when the cache must first be built."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(cached_tokenizer_dir() / "tokenizer.json"))


def load_qwen_encoding() -> "Encoding":
    """dashscope's ``qwen.tiktoken`` ranks as a ``tiktoken.Encoding`` with Qwen's split pattern and the three chat
    specials at 151643/151644/151645 (what :func:`build_qwen_tokenizer` converts): built in memory each time, no
    cache to keep in step. The file is parsed here (``base64 rank`` per line) rather than by ``tiktoken.load``,
    which reads local paths through the optional ``blobfile`` package."""
    import binascii

    import tiktoken

    path = tiktoken_file()
    data = path.read_bytes()
    words = data.split()
    try:  # all at once (half the time of a loop over lines); the loop below only names a bad line
        if len(words) % 2:
            raise ValueError("odd number of fields")
        ranks = dict(zip(map(binascii.a2b_base64, words[0::2]), map(int, words[1::2])))
    except ValueError:  # binascii.Error is one
        for number, line in enumerate(data.splitlines(), 1):
            try:
                token, rank = line.split()
                binascii.a2b_base64(token), int(rank)
            except ValueError as exc:
                raise SwiftkitError(f"{path}:{number}: not a 'base64 rank' line ({exc})") from None
        raise SwiftkitError(f"{path}: not a file of 'base64 rank' lines") from None
    specials = dict(zip(SPECIAL_TOKENS, (ENDOFTEXT_ID, IM_START_ID, IM_END_ID)))
    return tiktoken.Encoding("qwen", pat_str=QWEN_PATTERN, mergeable_ranks=ranks, special_tokens=specials)
