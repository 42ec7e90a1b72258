"""Tiny-model CPU training throughput, from ms-swift's own log.

Trains recipe smoke_tiny (its batch, process count and schedule, only fewer epochs) on the prepped Muice samples
with the tiny Qwen2, all in a temp folder, then reads the run's logging.jsonl: ms-swift logs
`train_samples_per_second` (global) and the train set's token lengths (`train_dataset`: "mean±std, min, max, size").
Train tokens/s = samples/s x mean tokens per sample. One line is printed, e.g.

  train: smoke_tiny tiny-qwen2 cpu 2 proc, 23 samples x 4 epochs: 5.18 samples/s, 231 train tokens/s (44.6 tok/sample)

  python -m benchmarks.train_bench            # alone
  python -m benchmarks.run train              # as a `make bench` section
"""
from __future__ import annotations

import json
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

EPOCHS = 4
_DATASET_STATS = re.compile(r"^\s*([0-9.]+)±([0-9.]+), min=([0-9.]+), max=([0-9.]+), size=(\d+)")


@dataclass
class Throughput:
    samples_per_second: float
    mean_tokens: float
    samples: int
    epochs: float
    world_size: int
    runtime_s: float

    @property
    def tokens_per_second(self) -> float:
        return self.samples_per_second * self.mean_tokens


def parse_logging(path: Path) -> tuple[float, float, int, float, float]:
    """(samples/s, mean tokens per sample, train size, epochs, runtime s) from ms-swift's logging.jsonl."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    final = next((r for r in reversed(rows) if "train_samples_per_second" in r), None)
    stats = next((r["train_dataset"] for r in reversed(rows) if isinstance(r.get("train_dataset"), str)), None)
    if final is None or stats is None:
        raise ValueError(f"{path}: no train_samples_per_second / train_dataset entry (did training finish?)")
    match = _DATASET_STATS.match(stats)
    if not match:
        raise ValueError(f"{path}: field train_dataset {stats!r}: unexpected format")
    return (float(final["train_samples_per_second"]), float(match.group(1)), int(match.group(5)),
            float(final.get("epoch", 0)), float(final.get("train_runtime", 0)))


def measure(epochs: int = EPOCHS, workdir: Path | None = None) -> Throughput:
    from benchmarks.tinyrun import tiny_run
    from swiftkit.run.rundir import read_run_info

    with tempfile.TemporaryDirectory(prefix="swiftkit-train-bench-") as tmp:
        run = tiny_run(Path(workdir or tmp), f"num_train_epochs={epochs}")
        sps, mean_tokens, size, ep, runtime = parse_logging(run / "logging.jsonl")
        world = int(read_run_info(run).env.get("NPROC_PER_NODE", "1"))
        return Throughput(sps, mean_tokens, size, ep, world, runtime)


def run() -> None:
    t = measure()
    print(f"train: smoke_tiny tiny-qwen2 cpu {t.world_size} proc, {t.samples} samples x {t.epochs:g} epochs "
          f"in {t.runtime_s:.1f} s: {t.samples_per_second:.2f} samples/s, {t.tokens_per_second:.0f} train tokens/s "
          f"({t.mean_tokens:.1f} tok/sample; ms-swift logging.jsonl)", flush=True)


if __name__ == "__main__":
    try:
        run()
    except Exception as exc:  # one line, like the other sections
        print(f"train: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
