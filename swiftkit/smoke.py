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
  python -m swiftkit.smoke
  python -m swiftkit.smoke --runs-root /tmp/runs --probes 5
  python -m swiftkit.smoke --set num_train_epochs=60      # recipe overrides, as `swiftkit train --set`
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from swiftkit.errors import SwiftkitError
from swiftkit.jsonl import read_jsonl

LOSS_RATIO = 0.2
"""Learning means: the final logged train loss is at most this fraction of the first."""


@dataclass
class LearningVerdict:
    ok: bool
    first_loss: Optional[float]
    last_loss: Optional[float]
    exact: int
    probed: int
    problems: list[str] = field(default_factory=list)


def log_history(run_dir: str | Path) -> list[dict]:
    """The run's logged entries in step order: result.json's log_history, else ms-swift's logging.jsonl."""
    from swiftkit.rundir import read_result

    run = Path(run_dir)
    history = read_result(run).get("log_history") or []
    if not history and (run / "logging.jsonl").is_file():
        history = read_jsonl(run / "logging.jsonl")
    return [h for h in history if isinstance(h, dict)]


def train_losses(run_dir: str | Path) -> list[float]:
    """The logged train losses in step order (:func:`log_history`)."""
    return [float(h["loss"]) for h in log_history(run_dir) if "loss" in h and "train_loss" not in h]


def learning_verdict(losses: Sequence[float], answers: Sequence[tuple[str, str, str]],
                     loss_ratio: float = LOSS_RATIO) -> LearningVerdict:
    """Judge learning from the loss curve and (prompt, trained answer, greedy answer) triples."""
    problems: list[str] = []
    first = losses[0] if losses else None
    last = losses[-1] if losses else None
    if len(losses) < 2:
        problems.append(f"only {len(losses)} logged train loss value(s): cannot compare first and last")
    elif not last <= first * loss_ratio:  # type: ignore[operator]
        problems.append(f"final train loss {last:.4f} is not below {loss_ratio:g} x the first ({first:.4f})")
    exact = sum(1 for _, want, got in answers if (got or "").strip() == want.strip())
    if not answers:
        problems.append("no trained prompt was probed")
    for prompt, want, got in answers:
        if (got or "").strip() != want.strip():
            problems.append(f"prompt {prompt!r}: greedy answer {got!r} != trained answer {want!r}")
    return LearningVerdict(not problems, first, last, exact, len(answers), problems)


def probe_records(train_file: str | Path, n: int) -> list[dict]:
    """The first ``n`` single-answer training records (messages ending with an assistant turn)."""
    out = []
    for record in read_jsonl(train_file):
        messages = record["messages"]
        if messages[-1]["role"] == "assistant":
            out.append({"messages": messages})
        if len(out) >= n:
            break
    return out


def answers_from_results(results_file: str | Path) -> list[tuple[str, str, str]]:
    """(prompt, trained answer, response) from a `swift infer` result JSONL."""
    triples = []
    for row in read_jsonl(results_file):
        prompt = next((m["content"] for m in reversed(row.get("messages", [])) if m["role"] == "user"), "")
        triples.append((prompt, row.get("labels") or "", row.get("response") or ""))
    return triples


# --- the pipeline ----------------------------------------------------------------------------------------------

class StepTimer:
    """Runs the named steps of a smoke pipeline, announcing each (``on_step``) and timing it (``timings``)."""

    def __init__(self, on_step: Callable[[str], None]) -> None:
        self.on_step = on_step
        self.timings: dict[str, float] = {}

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        self.on_step(name)
        start = time.perf_counter()
        value = fn()
        self.timings[name] = time.perf_counter() - start
        return value


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every smoke pipeline takes: where data, model and runs go, recipe overrides, how much is shown."""
    parser.add_argument("--data-dir", default="data", help="prep output root (default data)")
    parser.add_argument("--model-dir", default="models/tiny-qwen2", help="tiny model folder")
    parser.add_argument("--runs-root", default="runs", help="runs root (default runs)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override (repeatable)")
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--quiet", action="store_true", help="no training progress line")
    shown.add_argument("--verbose", action="store_true", help="echo every training output line (all ranks)")


def output_callbacks(args: argparse.Namespace, name: str) -> tuple[Any, Callable[[str], None],
                                                                   Optional[Callable[[str], None]]]:
    """(progress bar, on_step, on_output) for ``--quiet`` / ``--verbose`` / the default single progress line."""
    from swiftkit.train_progress import TrainProgress

    progress = TrainProgress(f"{name} train")
    on_output = None if args.quiet else (lambda line: print(line, flush=True)) if args.verbose else progress
    return progress, lambda s: (progress.close(), print(f"== {name}: {s}", flush=True)), on_output


@dataclass
class SmokeResult:
    run_dir: Path
    verdict: LearningVerdict
    check_ok: bool
    timings: dict[str, float]
    check: dict[str, Any]
    persona: tuple[int, int, list[str]] = (0, 0, [])
    """(exact, probed, problems) of :func:`persona_verdict`."""

    @property
    def ok(self) -> bool:
        return self.verdict.ok and self.check_ok and not self.persona[2]


def smoke(
    *,
    samples: str | Path = "datasets_prep/samples/muice",
    data_dir: str | Path = "data",
    model_dir: str | Path = "models/tiny-qwen2",
    runs_root: str | Path = "runs",
    recipe: str = "smoke_tiny",
    overrides: Sequence[str] = (),
    probes: int = 3,
    on_step: Callable[[str], None] = lambda s: None,
    on_output: Optional[Callable[[str], None]] = None,
) -> SmokeResult:
    """Run the whole smoke pipeline; returns the verdicts (does not raise on a failed assertion)."""
    from datasets_prep.pipeline import prep
    from swiftkit import launch
    from swiftkit.check import run_checks
    from swiftkit.infer import batch_infer
    from swiftkit.infer_args import GenerationOptions
    from swiftkit.rundir import read_run_info
    from datasets_prep.atomic import atomic_open
    from swiftkit.tiny import build_tiny_model

    step = StepTimer(on_step)
    step("prep", lambda: prep("muice", samples, Path(data_dir) / "muice"))
    step("tiny-model", lambda: build_tiny_model(model_dir))
    overrides = [f"model={Path(model_dir).resolve()}", f"data.train=[{Path(data_dir).resolve() / 'muice' / 'train.jsonl'}]",
                 f"data.val=[{Path(data_dir).resolve() / 'muice' / 'val.jsonl'}]", *overrides]
    run_dir = step("train", lambda: launch.train(recipe, overrides=overrides, runs_root=runs_root,
                                                 on_output=on_output))
    report = step("check", lambda: run_checks(run_dir))
    info = read_run_info(run_dir)
    records = probe_records(info.train_files[0], probes)
    probe_file = Path(run_dir) / "infer" / "smoke.input.jsonl"
    with atomic_open(probe_file) as handle:
        handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    results = step("infer", lambda: batch_infer(run_dir, records_file=probe_file, name="smoke", backend="pt",
                                                generation=GenerationOptions(max_new_tokens=64)))
    verdict = learning_verdict(train_losses(run_dir), answers_from_results(results))
    persona = persona_verdict(report)
    return SmokeResult(Path(run_dir), verdict, bool(report["ok"]), step.timings, report, persona)


def persona_verdict(report: dict) -> tuple[int, int, list[str]]:
    """(same, probed, problems): through the checkpoint's saved template, every identity prompt asked with NO
    system message must get exactly the answer it gets with the run's system prompt.

    Greedy decoding of the same token ids gives the same answer, so this holds exactly when the saved template
    renders a conversation without a system message as the persona one — and fails (noise vs the trained answer)
    when the template still defaults to the base model's system prompt, whatever the CPU's float arithmetic.
    """
    identity = next((c for c in report["checks"] if c["name"] == "identity"), {})
    answers = (identity.get("data") or {}).get("answers", {})
    persona, bare = answers.get("run system", {}), answers.get("no system", {})
    pairs = [(p, persona[p], bare[p]) for p in bare if p in persona]
    problems = [f"no-system probe {p!r}: {got!r} != with the run's system {want!r}" for p, want, got in pairs
                if got != want]
    if not pairs:
        problems.append("the identity probe asked nothing both with and without the run's system prompt")
    return len(pairs) - len(problems), len(pairs), problems


def summary(result: SmokeResult) -> str:
    v = result.verdict
    rows = [("run", str(result.run_dir))]
    rows += [(f"{name} (s)", f"{secs:.1f}") for name, secs in result.timings.items()]
    rows += [
        ("first train loss", f"{v.first_loss:.4f}" if v.first_loss is not None else "-"),
        ("final train loss", f"{v.last_loss:.4f}" if v.last_loss is not None else "-"),
        ("greedy == trained answer", f"{v.exact}/{v.probed}"),
        ("no system == run system", f"{result.persona[0]}/{result.persona[1]}  (identity prompts, saved template)"),
    ]
    rows += [(f"check {c['name']}", f"{c['status']}  {c['detail']}") for c in result.check["checks"]]
    rows += [("learning", "PASS" if v.ok else "FAIL"), ("persona", "FAIL" if result.persona[2] else "PASS"),
             ("smoke", "PASS" if result.ok else "FAIL")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {val}" for k, val in rows)


def parse_summary(out: str) -> dict[str, str]:
    """The summary table printed by :func:`summary`, back into {row: value} (for tests and the sweep script)."""
    rows = {}
    for line in out.splitlines():
        key, sep, value = line.partition("  ")
        if sep:
            rows[key.strip()] = value.strip()
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swiftkit.smoke", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", default="datasets_prep/samples/muice", help="Muice sample folder")
    parser.add_argument("--recipe", default="smoke_tiny")
    parser.add_argument("--probes", type=int, default=3, help="trained prompts to decode (default 3)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    progress, on_step, on_output = output_callbacks(args, "smoke")
    try:
        result = smoke(samples=args.samples, data_dir=args.data_dir, model_dir=args.model_dir,
                       runs_root=args.runs_root, recipe=args.recipe, overrides=args.overrides, probes=args.probes,
                       on_step=on_step, on_output=on_output)
    except SwiftkitError as exc:
        progress.close()
        print(f"smoke: error: {exc}", file=sys.stderr)
        return 1
    print(summary(result))
    for problem in result.verdict.problems:
        print(f"  learning: {problem}")
    for problem in result.persona[2]:
        print(f"  persona: {problem}")
    print(f"smoke took {time.perf_counter() - start:.0f} s")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
