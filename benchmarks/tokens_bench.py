"""Token-statistics benchmark: what counting tokens adds to a prep, against the two bounds that matter.

1. Start-up (20k records by default): a whole prep process with token statistics and the histogram, against the same
   prep without either, wall time from the parent (interpreter start and imports included: they are the point).
   Goal: within 2x. Before the tokenizer was read by ``tokenizers`` alone it was ~20x (transformers + torch import).
2. Throughput (200k records by default; ``--large 1000000`` for 1M): the seconds token statistics add inside a prep
   (prep with statistics minus prep without, both timed in-process after imports) against the tokenizer's own
   ``encode_batch`` (and ``encode_batch_fast``) on the same texts, the ChatML renderings of the prepared records, in
   one call. Goal: within 1.3x of ``encode_batch``.

Each figure is the best of ``repeats`` runs (the machine is shared; best-of-N estimates what the code costs). The
tokenizer cache is built first, outside the timings (a first run on a machine pays that once).

    python -m benchmarks.tokens_bench                      # 20k and 200k
    python -m benchmarks.tokens_bench --large 1000000      # 20k and 1M
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


def _prep(src: str, out: str, stats: bool) -> float:
    """One prep of the muice source; seconds inside the process, imports excluded."""
    from datasets_prep.options import PrepOptions
    from datasets_prep.pipeline import prep

    start = time.perf_counter()
    prep("muice", src, out, PrepOptions(token_stats=stats, histogram=stats))
    return time.perf_counter() - start


def _encode(out: str) -> dict[str, float]:
    """The tokenizer alone on the prepared records' ChatML texts (read and rendered before the clock starts)."""
    from datasets_prep.qwen_tokenizer import load_qwen_backend
    from datasets_prep.token_counter import render_chatml

    texts = [render_chatml(json.loads(line)["messages"])
             for name in ("train.jsonl", "val.jsonl")
             for line in Path(out, name).read_text(encoding="utf-8").splitlines() if line]
    backend = load_qwen_backend()
    result: dict[str, float] = {"texts": len(texts)}
    for method in ("encode_batch", "encode_batch_fast"):
        encode = getattr(backend, method, None)
        if encode is None:
            continue
        start = time.perf_counter()
        encode(texts, add_special_tokens=False)
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
        results["startup"] = {"records": small, "plain": min(walls["plain"]), "stats": min(walls["stats"])}
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
        f"{s['plain']:.2f} s (whole processes) = {s['stats'] / s['plain']:.2f}x (goal <= 2x)",
        f"token stats throughput, {t['records']} records ({t['texts']} prepared): statistics add {added:.1f} s to a "
        f"{t['plain']:.1f} s prep; the tokenizer alone on the same texts: encode_batch {t['encode_batch']:.1f} s = "
        f"{added / t['encode_batch']:.2f}x (goal <= 1.3x)"
        + (f", encode_batch_fast {t['encode_batch_fast']:.1f} s = {added / t['encode_batch_fast']:.2f}x"
           if "encode_batch_fast" in t else ""),
    ]
    return lines


def run(small: int = 20_000, large: int = 200_000) -> None:
    for line in report(bench(small, large)):
        print(line, flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tokens_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=20_000, help="records for the start-up figure (default 20000)")
    parser.add_argument("--large", type=int, default=200_000,
                        help="records for the throughput figure (default 200000; 1000000 for the issue's 1M goal)")
    parser.add_argument("--worker", choices=("plain", "stats", "encode"), help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.src, args.out)))
        return 0
    run(args.small, args.large)
    return 0


if __name__ == "__main__":
    sys.exit(main())
