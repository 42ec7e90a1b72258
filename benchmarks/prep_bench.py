"""Data-prep benchmark: `swiftkit prep` against the naive seed-script baseline, on generated Muice-shaped data.

For each size (default 20k and 200k records) it writes a Muice-shaped JSONL file (mixed shapes, multi-turn,
~1% bad rows, ~1% duplicates), then runs, each in its own subprocess so the peak-memory figures are independent:

- naive: ``json.loads`` every line into a list, then ``json.dumps`` each record out (what the seed scripts do;
  no validation, no dedupe, no split; lines that fail to parse are skipped, where the seeds would crash);
- prep: ``datasets_prep.pipeline.prep`` with all validation, dedupe, split and score, token statistics off;
- tokens: the token-length statistics alone (Qwen fast tokenizer, encode_batch_fast) over the prepared records
  (the first 50k at most: tokenizing is ~10x slower than converting, and records/s is what is compared).

Peak memory is the subprocess's peak RSS (``resource.getrusage``). Run alone:

    python -m benchmarks.prep_bench                 # 20k and 200k records
    python -m benchmarks.prep_bench --records 2000  # quick: 2k and 20k (the larger size is always 10x)
"""
from __future__ import annotations

import argparse
import itertools
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

_PHRASES = ["今天天气真好", "沐雪最喜欢草莓蛋糕啦", "不...不告诉你喵！(脸红)", "是沐沐哒⭐", "早上好呀，元气满满",
            "要不要一起去散步？", "摸摸头(｡･ω･｡)ﾉ♡", "我在认真听你说话哦", "这个问题有点难呢…", "晚安，做个好梦🌙"]
SYSTEM = "你是一个名为沐雪的AI女孩子"
TOKEN_SAMPLE = 50_000  # token statistics are timed on at most this many prepared records (a real prep covers all)


def _text(rng: random.Random) -> str:
    return "，".join(rng.choice(_PHRASES) for _ in range(rng.randint(2, 6))) + "。"


def generate(path: Path, n: int, seed: int = 0) -> None:
    """``n`` Muice-shaped lines: 4 shapes, ~20% multi-turn, ~1% bad rows, ~1% exact duplicates."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        previous = ""
        for i in range(n):
            roll = rng.random()
            if roll < 0.01:
                line = '{"prompt": "坏行", "completion": '  # truncated JSON
            elif roll < 0.02 and previous:
                line = previous
            else:
                turns = [(f"{i}:{_text(rng)}", _text(rng)) for _ in range(rng.choice((1, 1, 1, 1, 2, 3)))]
                shape = i % 4
                if shape == 0:
                    rec: dict[str, Any] = {"system": SYSTEM, "conversation": [{"human": q, "assistant": a} for q, a in turns]}
                elif shape == 1:
                    rec = {"prompt": turns[-1][0], "completion": turns[-1][1], "history": [list(t) for t in turns[:-1]]}
                elif shape == 2:
                    rec = {"prompt": turns[-1][0], "respond": turns[-1][1], "history": [list(t) for t in turns[:-1]]}
                else:
                    rec = {"messages": [{"role": "system", "content": SYSTEM}]
                           + [{"role": r, "content": c} for q, a in turns for r, c in (("user", q), ("assistant", a))]}
                line = json.dumps(rec, ensure_ascii=False)
            previous = line
            fh.write(line + "\n")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _worker(kind: str, src: str, out: str) -> dict[str, Any]:
    start = time.perf_counter()
    if kind == "naive":
        data = []
        with open(src, encoding="utf-8") as fh:
            for line in fh:
                try:  # the seed scripts crash on the first bad row; skipping it is the least a baseline must do
                    data.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        with open(Path(out) / "naive.jsonl", "w", encoding="utf-8") as fh:
            for rec in data:
                fh.write(json.dumps(rec) + "\n")
        records = len(data)
    elif kind == "prep":
        from datasets_prep.options import PrepOptions
        from datasets_prep.pipeline import prep

        start = time.perf_counter()  # imports are not counted (the naive path imports nothing)
        manifest = prep("muice", src, out, PrepOptions(token_stats=False))
        records = manifest["read"]
    elif kind == "tokens":
        from datasets_prep.stats import LengthCounter, summarize
        from datasets_prep.token_counter import bundled

        encoder = bundled().count  # loading the tokenizer is not counted
        start = time.perf_counter()
        counter = LengthCounter(encoder)
        with open(Path(out) / "train.jsonl", encoding="utf-8") as fh:
            for line in itertools.islice(fh, TOKEN_SAMPLE):
                counter.add(json.loads(line)["messages"])
        counter.flush()
        summarize(counter.lengths, 2048)
        records = len(counter.lengths)
    else:
        raise ValueError(kind)
    return {"kind": kind, "records": records, "seconds": time.perf_counter() - start, "peak_rss_mib": _peak_rss_mib()}


def _measure(kind: str, src: Path, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.prep_bench", "--worker", kind, "--src", str(src), "--out", str(out)]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(records: int = 20_000, workdir: Optional[Path] = None, repeats: int = 3) -> dict[int, dict[str, dict[str, Any]]]:
    """Figures for ``records`` and ``10 * records``: {size: {naive|prep|tokens: {...}}}.

    naive and prep run ``repeats`` times, interleaved, and the fastest run of each is kept (the machine is
    shared and noisy; best-of-N is the usual estimate of what the code itself costs). Peak memory is the
    largest seen. Token statistics run once.
    """
    results: dict[int, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for n in (records, 10 * records):
            src, out = Path(tmp) / f"muice_{n}.jsonl", Path(tmp) / f"out_{n}"
            out.mkdir()
            generate(src, n)
            runs: dict[str, list[dict[str, Any]]] = {"naive": [], "prep": []}
            for _ in range(repeats):
                for kind in runs:
                    runs[kind].append(_measure(kind, src, out))
            results[n] = {}
            for kind, measured in runs.items():
                best = dict(min(measured, key=lambda r: r["seconds"]))
                best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in measured)
                best["runs"] = len(measured)
                results[n][kind] = best
            results[n]["tokens"] = _measure("tokens", src, out)
            src.unlink()
    return results


def _backend() -> str:
    from datasets_prep.fastjson import BACKEND

    return BACKEND


def report(results: dict[int, dict[str, dict[str, Any]]]) -> list[str]:
    lines = []
    for n, r in results.items():
        naive, prep_, tok = r["naive"], r["prep"], r["tokens"]
        nr, pr = naive["records"] / naive["seconds"], prep_["records"] / prep_["seconds"]
        lines.append(f"prep {n} records: swiftkit prep {pr:,.0f} rec/s, peak {prep_['peak_rss_mib']:.0f} MiB | "
                     f"naive json {nr:,.0f} rec/s, peak {naive['peak_rss_mib']:.0f} MiB | speed ratio {pr / nr:.2f}x "
                     f"(best of {prep_['runs']}, json backend {_backend()})")
        lines.append(f"prep {n} token stats: {tok['records'] / tok['seconds']:,.0f} rec/s "
                     f"({tok['records']} records in {tok['seconds']:.1f} s, Qwen fast tokenizer, encode_batch_fast)")
    small, large = sorted(results)
    ratio = results[large]["prep"]["peak_rss_mib"] / results[small]["prep"]["peak_rss_mib"]
    naive_ratio = results[large]["naive"]["peak_rss_mib"] / results[small]["naive"]["peak_rss_mib"]
    lines.append(f"prep memory: peak {large} / peak {small} = {ratio:.2f}x (target <= 1.5x); naive {naive_ratio:.2f}x")
    return lines


def run(records: int = 20_000) -> None:
    for line in report(bench(records)):
        print(line, flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.prep_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000, help="smaller size; the larger is 10x (default 20000)")
    parser.add_argument("--worker", choices=("naive", "prep", "tokens"), help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.src, args.out)))
        return 0
    run(args.records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
