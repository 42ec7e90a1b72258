"""The smoke run (`make smoke`): proof on CPU, in minutes, that the main job works end to end.

  1. prep the bundled Muice samples            -> data/muice/{train,val}.jsonl
  2. build the tiny random Qwen2                -> models/tiny-qwen2 (kept when an identical one exists)
  3. train recipe smoke_tiny through the launcher (2 CPU processes, torchrun + swiftkit worker)
  4. swiftkit check (eos ids, stop labels, identity probe)
  5. swift infer (pt backend, greedy) on trained prompts -> RUN/infer/smoke.jsonl
  6. learning assertions: the final train loss is well below the first, and greedy decoding of every probed
     trained prompt returns its trained answer exactly.

Exit 0 only when every step and assertion passes; a summary table is printed at the end.

examples:
  swiftkit smoke
  swiftkit smoke --runs-root /tmp/runs --probes 5
  swiftkit smoke --set num_train_epochs=60      # recipe overrides, as `swiftkit train --set`
"""
from __future__ import annotations

import argparse
import functools
import time
from typing import Any, Callable, Iterable

from datasets_prep.samples_dir import SAMPLES_DIR
from swiftkit.cli import options


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every smoke pipeline takes, `swiftkit smoke` and `swiftkit smoke-grpo`: where data, model and runs
    go, recipe overrides, how much is shown."""
    parser.add_argument("--data-dir", default="data", help="prep output root (default data)")
    parser.add_argument("--model-dir", default="models/tiny-qwen2", help="tiny model folder")
    parser.add_argument("--runs-root", default="runs", help="runs root (default runs)")
    options.add_overrides(parser)
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--quiet", action="store_true", help="no training progress line")
    shown.add_argument("--verbose", action="store_true", help="echo every training output line (all ranks)")


def with_progress(args: argparse.Namespace, name: str, call: Callable[..., Any]) -> Any:
    """``call(on_step=..., on_output=...)`` under the single progress line (``--quiet``: none; ``--verbose``: every
    output line); the line is closed however the call ends, so a verdict or an error is never printed into it."""
    from swiftkit.train.progress import TrainProgress

    progress = TrainProgress(f"{name} train")
    on_output = None if args.quiet else (lambda line: print(line, flush=True)) if args.verbose else progress

    def on_step(step: str) -> None:
        progress.phase(f"{name} {step}")  # each step's training gets its own bar and its own first/last loss
        print(f"== {name}: {step}", flush=True)

    try:
        return call(on_step=on_step, on_output=on_output)
    finally:
        progress.close()


def run_pipeline(args: argparse.Namespace, name: str, pipeline: Callable[..., Any], summary: Callable[[Any], str],
                 problems: Callable[[Any], Iterable[str]], **options: Any) -> int:
    """One smoke command's flow: ``pipeline`` under the progress line with the common arguments (and ``options``),
    then its summary, each problem (``problems``: ``"label: problem"`` lines) and its time; 0 only on a pass."""
    start = time.perf_counter()
    result = with_progress(args, name, functools.partial(
        pipeline, samples=args.samples, data_dir=args.data_dir, model_dir=args.model_dir, runs_root=args.runs_root,
        overrides=args.overrides, **options))
    print(summary(result))
    for problem in problems(result):
        print(f"  {problem}")
    print(f"{name} took {time.perf_counter() - start:.0f} s")
    return 0 if result.ok else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", default=str(SAMPLES_DIR / "muice"), help="Muice sample folder (default: the bundled samples, "
                        "wherever swiftkit is installed)")
    parser.add_argument("--recipe", default="smoke_tiny")
    parser.add_argument("--probes", type=int, default=3, help="trained prompts to decode (default 3)")
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from swiftkit.dev.smoke import smoke, summary

    return run_pipeline(args, "smoke", smoke, summary,
                        lambda r: [*(f"learning: {p}" for p in r.verdict.problems),
                                   *(f"persona: {p}" for p in r.persona[2])],
                        recipe=args.recipe, probes=args.probes)
