"""Prep starts fast: a prep with token statistics and the histogram imports neither torch nor transformers nor pyplot
(the bundled Qwen tokenizer is counted by tiktoken, no cache needed), and its counts are exactly transformers'."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from datasets_prep.qwen_tokenizer import (
    load_qwen_backend,
    load_qwen_encoding,
    load_qwen_tokenizer,
)
from datasets_prep.token_counter import bundled, render_chatml

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "datasets_prep" / "samples"
HEAVY = ("torch", "transformers", "matplotlib.pyplot")

# Texts where tokenizers differ if anything differs: Chinese with full-width punctuation, kaomoji and emoji, digits,
# English contractions, runs of spaces and newlines, \r\n, think blocks, action tags, ChatML markers.
TRICKY = [
    "你好，我是沐雪", "不...不告诉你喵！(脸红)", "是沐沐哒⭐ 摸摸头(｡･ω･｡)ﾉ♡ 🌙", "I'm sure they'll say it's 12345 ok",
    "  two  spaces\n\n\nthree newlines\r\nand CRLF\t\ttabs   ", "<think>\n先想一想\n</think>\n答案是4", "<&做饭-炒冬瓜&>",
    "<|im_start|>user\n饿了<|im_end|>\n<|im_start|>assistant\n", "", " ", "\n", "ﾟ∀ﾟ *ﾟ∀ﾟ*", "x" * 3000,
]


def _sample_texts() -> list[str]:
    texts = list(TRICKY)
    for line in (SAMPLES / "muice" / "train.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            texts.append(line)  # the raw JSON text too: quotes, escapes, braces
    return texts


def test_counts_are_transformers_counts():
    """The tokenizers-only backend and the tiktoken encoding prep counts with give transformers' ids (so the
    manifest's counts do not change), one text at a time and in a threaded batch."""
    texts = _sample_texts()
    transformers_tok = load_qwen_tokenizer()
    expected = [transformers_tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    backend = load_qwen_backend()
    assert [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)] == expected
    encoding = load_qwen_encoding()
    assert [encoding.encode(t, allowed_special="all") for t in texts] == expected
    assert bundled().count(texts) == [len(ids) for ids in expected]
    assert bundled().count(texts * 40) == [len(ids) for ids in expected] * 40  # several threads, order kept
    assert backend.encode("你好，我是沐雪", add_special_tokens=False).ids == [108386, 3837, 104198, 103303, 100167]
    chat = render_chatml([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
    assert backend.encode(chat, add_special_tokens=False).ids == transformers_tok(chat, add_special_tokens=False)[
        "input_ids"]
    assert bundled().specials == ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def test_a_prep_with_token_stats_imports_no_torch_transformers_or_pyplot(tmp_path):
    """The real CLI path in a fresh interpreter, with an empty swiftkit cache: counting builds nothing first."""
    cache = tmp_path / "empty-cache"
    out = tmp_path / "muice"
    code = (
        "import json, sys\n"
        "from swiftkit.cli import main\n"
        f"rc = main(['prep', 'muice', '--src', {str(SAMPLES / 'muice')!r}, '--out', {str(out)!r}])\n"
        f"print(json.dumps({{'rc': rc, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SWIFTKIT_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"rc": 0, "heavy": []}
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["token_lengths"]["records"] == manifest["train"] + manifest["val"]
    assert (out / "lengths.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not cache.exists() or not any(cache.glob("qwen-tokenizer-*"))  # nothing was converted to count
