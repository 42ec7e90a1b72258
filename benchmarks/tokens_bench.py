"""Token-statistics benchmark: what counting tokens adds to a prep, against the two bounds that matter.

1. Start-up (20k records by default): a whole prep process with token statistics and the histogram, against the same
   prep without either, wall time from the parent (interpreter start and imports included: they are the point).
   Goal: within 2x. It was ~20x while the tokenizer came through transformers + torch, ~8x through ``tokenizers``
   alone; prep now counts with tiktoken (no build, a third of the load time) and imports matplotlib beside the work.
   What is left is mostly the encoding itself, which grows with the records' tokens, not a start-up.
2. Throughput (200k records by default; ``--large 1000000`` for 1M): the seconds token statistics add inside a prep
   (prep with statistics minus prep without, both timed in-process after imports) against the tokenizers' own batch
   encoders on the same texts, the ChatML renderings of the prepared records, 10,000 texts per call: tiktoken's
   ``encode_batch`` (the counter prep uses) and the converted tokenizer's ``encode_batch`` / ``encode_batch_fast``
   in ``tokenizers``. Goal: within 1.3x of the counter's own.

Each figure is the best of ``repeats`` runs (the machine is shared; best-of-N estimates what the code costs). The
tokenizer cache is built first, outside the timings (a first run on a machine pays that once).

    python -m benchmarks.tokens_bench                      # 20k and 200k
    python -m benchmarks.tokens_bench --large 1000000      # 20k and 1M
    python -m benchmarks.tokens_bench --large 1000000 --repeats 1
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from benchmarks.prep_bench import generate

ROOT = Path(__file__).resolve().parents[1]
ENCODE_CHUNK = 10_000
"""Texts per encoder call in the baselines: one call over 1M texts keeps every Encoding (ids, offsets, token
strings) at once, about 19 GB in ``tokenizers``; in chunks the encoders' own cost is the same and memory stays flat."""


def _prep(src: str, out: str, stats: bool) -> float:
    """One prep of the muice source; seconds inside the process, imports excluded."""
    from datasets_prep.options import PrepOptions
    from datasets_prep.pipeline import prep

    start = time.perf_counter()
    prep("muice", src, out, PrepOptions(token_stats=stats, histogram=stats))
    return time.perf_counter() - start


def _encode(out: str) -> dict[str, float]:
    """The tokenizers alone on the prepared records' ChatML texts (read and rendered before the clock starts):
    tiktoken's own ``encode_batch`` (what prep counts with) and the converted tokenizer's in ``tokenizers``."""
    from datasets_prep.qwen_tokenizer import load_qwen_backend, load_qwen_encoding
    from datasets_prep.token_counter import render_chatml

    texts = [render_chatml(json.loads(line)["messages"])
             for name in ("train.jsonl", "val.jsonl")
             for line in Path(out, name).read_text(encoding="utf-8").splitlines() if line]
    result: dict[str, float] = {"texts": len(texts)}
    chunks = [texts[i:i + ENCODE_CHUNK] for i in range(0, len(texts), ENCODE_CHUNK)]
    encoding = load_qwen_encoding()
    start = time.perf_counter()
    for chunk in chunks:
        encoding.encode_batch(chunk, allowed_special="all")
    result["tiktoken"] = time.perf_counter() - start
    backend = load_qwen_backend()
    for method in ("encode_batch", "encode_batch_fast"):
        encode = getattr(backend, method, None)
        if encode is None:
            continue
        start = time.perf_counter()
        for chunk in chunks:
            encode(chunk, add_special_tokens=False)
        result[method] = time.perf_counter() - start
    return result


def _worker(kind: str, src: str, out: str) -> dict[str, Any]:
    if kind == "encode":
        return _encode(out)
    return {"seconds": _prep(src, out, stats=(kind == "stats"))}


def _child(kind: str, src: Path, out: Path) -> tuple[float, dict[str, Any]]:
    """Run one worker in a fresh interpreter: (wall seconds seen from here, the worker's own figures)."""
    cmd = [sys.executable, "-m", "benchmarks.tokens_bench", "--worker", kind, "--src", str(src), "--out", str(out)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed: {proc.stderr.strip().splitlines()[-1:]}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def bench(small: int = 20_000, large: int = 200_000, repeats: int = 3,
          workdir: Optional[Path] = None) -> dict[str, Any]:
    """{"startup": {...}, "throughput": {...}} for ``small`` and ``large`` records (best of ``repeats``)."""
    from datasets_prep.qwen_tokenizer import cached_tokenizer_dir

    cached_tokenizer_dir()  # build the cache outside the timings
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        src, out = Path(tmp) / "small.jsonl", Path(tmp) / "out_small"
        generate(src, small)
        walls: dict[str, list[float]] = {"plain": [], "stats": []}
        for _ in range(repeats):
            for kind in walls:
                walls[kind].append(_child(kind, src, out)[0])
        encode_small = min(_child("encode", src, out)[1]["tiktoken"] for _ in range(repeats))
        results["startup"] = {"records": small, "plain": min(walls["plain"]), "stats": min(walls["stats"]),
                              "encode": encode_small}
        src.unlink()

        src, out = Path(tmp) / "large.jsonl", Path(tmp) / "out_large"
        generate(src, large)
        inner: dict[str, list[float]] = {"plain": [], "stats": []}
        encoded: list[dict[str, Any]] = []
        for _ in range(repeats):
            for kind in inner:
                inner[kind].append(_child(kind, src, out)[1]["seconds"])
            encoded.append(_child("encode", src, out)[1])
        best = {k: min(e[k] for e in encoded) for k in encoded[0] if k != "texts"}
        results["throughput"] = {"records": large, "texts": encoded[0]["texts"], "plain": min(inner["plain"]),
                                 "stats": min(inner["stats"]), **best}
    return results


def report(results: dict[str, Any]) -> list[str]:
    s, t = results["startup"], results["throughput"]
    added = t["stats"] - t["plain"]
    lines = [
        f"token stats start-up, {s['records']} records: prep with statistics + histogram {s['stats']:.2f} s, without "
        f"{s['plain']:.2f} s (whole processes) = {s['stats'] / s['plain']:.2f}x (goal <= 2x); of the "
        f"{s['stats'] - s['plain']:.2f} s added, tiktoken's own encode_batch of those texts alone takes "
        f"{s['encode']:.2f} s",
        f"token stats throughput, {t['records']} records ({t['texts']} prepared): statistics add {added:.1f} s to a "
        f"{t['plain']:.1f} s prep; the tokenizers alone on the same texts: tiktoken's encode_batch (prep's counter) "
        f"{t['tiktoken']:.1f} s = {added / t['tiktoken']:.2f}x (goal <= 1.3x); tokenizers' encode_batch "
        f"{t['encode_batch']:.1f} s = {added / t['encode_batch']:.2f}x"
        + (f", encode_batch_fast {t['encode_batch_fast']:.1f} s = {added / t['encode_batch_fast']:.2f}x"
           if "encode_batch_fast" in t else ""),
    ]
    return lines


def run(small: int = 20_000, large: int = 200_000, repeats: int = 3) -> None:
    for line in report(bench(small, large, repeats)):
        print(line, flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tokens_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=20_000, help="records for the start-up figure (default 20000)")
    parser.add_argument("--large", type=int, default=200_000,
                        help="records for the throughput figure (default 200000; 1000000 for the issue's 1M goal)")
    parser.add_argument("--repeats", type=int, default=3, help="best of how many runs per figure (default 3)")
    parser.add_argument("--worker", choices=("plain", "stats", "encode"), help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.src, args.out)))
        return 0
    run(args.small, args.large, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
