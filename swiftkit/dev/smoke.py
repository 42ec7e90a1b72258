"""The smoke run's library half: :func:`smoke` runs the pipeline (prep the Muice samples, tiny model, train
smoke_tiny through the launcher, check, infer) and returns verdicts; :func:`learning_verdict` and
:func:`persona_verdict` judge it; :func:`summary` / :func:`parse_summary` are its table. `swiftkit smoke`
(swiftkit/cli/commands/smoke.py, `make smoke`) is its command.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from datasets_prep.samples_dir import SAMPLES_DIR
from swiftkit.core.jsonl import read_jsonl
from swiftkit.run.rundir import train_losses

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
    samples: str | Path = SAMPLES_DIR / "muice",
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
    from datasets_prep.atomic import atomic_open
    from datasets_prep.pipeline import prep
    from swiftkit.deploy.infer import batch_infer
    from swiftkit.deploy.infer_args import GenerationOptions
    from swiftkit.dev.tiny import build_tiny_model
    from swiftkit.evaluate.check import run_checks
    from swiftkit.run.rundir import read_run_info
    from swiftkit.train import launch

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
