"""`make bench`: every benchmark section, each measured as ratios within one run (machines are noisy).

Sections: data prep (records/s and peak memory vs a naive json baseline, token statistics), token statistics
start-up and throughput against the tokenizer's own encode_batch, planning (`swiftkit plan` wall time vs
`swift sft --help`), tiny-model CPU training throughput, `swiftkit serve` under a mixed concurrent load (p50/p95
latency, requests/s).
Run one section alone with `python -m benchmarks.run prep|tokens|plan|train|serve` (`make bench ARGS=serve`).
"""
from __future__ import annotations

import importlib
import sys
import time

SECTIONS = {
    "prep": "benchmarks.prep_bench",
    "tokens": "benchmarks.tokens_bench",
    "plan": "benchmarks.plan_bench",
    "train": "benchmarks.train_bench",
    "serve": "benchmarks.serve_bench",
}


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}", file=sys.stderr)
        return 2
    failed = 0
    for name in names:
        print(f"== {name} ==", flush=True)
        start = time.perf_counter()
        try:
            importlib.import_module(SECTIONS[name]).run()
        except Exception as exc:  # a broken section must not hide the others' figures
            failed += 1
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}", flush=True)
        print(f"({name} section took {time.perf_counter() - start:.1f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
