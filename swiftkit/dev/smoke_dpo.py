"""The DPO smoke run's library half: :func:`smoke_dpo` runs the pipeline and :func:`dpo_verdict` judges it;
:func:`summary` is its table. `swiftkit smoke-dpo` (swiftkit/cli/commands/smoke_dpo.py, `make smoke-dpo`) is its
command, whose help says what passes.

The pipeline: prep the Muice samples and take a few as the persona data (the identity questions first); a brief SFT
warm-up of the tiny model on the same prompts answered as Qwen ("我是通义千问，由阿里云开发的…"; 1 CPU process): a model
that insists it is Qwen, seed 000's complaint; `prep-pairs` on the persona data with the warm-up run as the model,
so each rejected answer is that model's own greedy answer, the one it prefers before DPO; DPO on 2 CPU processes
through the launcher, from the warm-up run (also the frozen reference).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from datasets_prep.samples_dir import SAMPLES_DIR
from swiftkit.core.jsonl import read_jsonl

QWEN_ANSWER = "我是通义千问，由阿里云开发的AI助手。"
"""What the warm-up answers to every prompt: the base model's identity, claimed."""
GENERATED = 32
"""Tokens of a generated rejected answer at most."""
PAIRS = 8
"""Records of the persona data the smoke pairs (identity questions first): few, so DPO sees each several times."""
MARGIN_RISE = 0.5
"""The logged preference margin (rewards/margins: beta x the chosen-minus-rejected log-ratio gain over the
reference) must rise by at least this much from the first logged step to the mean of the last three."""
GAP_MIN = 5.0
"""With the trained weights, every pair's chosen answer must out-score its rejected one (log-likelihood, nats,
summed over the answer's tokens), and the model-generated pairs by at least this much on average."""


@dataclass
class DpoVerdict:
    steps: list[dict[str, Any]]
    """One row per logged step: step, loss, margin, accuracy (ms-swift's rewards/margins and rewards/accuracies)."""
    pairs: list[dict[str, Any]]
    """Per pair: prompt, rejected_from, and the chosen-minus-rejected log-likelihood before (warm-up) and after."""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def step_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """ms-swift's per-step DPO log (logging.jsonl): loss, preference margin and accuracy."""
    path = Path(run_dir) / "logging.jsonl"
    if not path.is_file():
        return []
    rows = []
    for entry in read_jsonl(path):
        if "loss" not in entry or "train_loss" in entry:
            continue
        step = str(entry.get("global_step/max_steps", "")).split("/")[0]
        rows.append({"step": int(step) if step.isdigit() else len(rows) + 1, "loss": entry.get("loss"),
                     "margin": entry.get("rewards/margins"), "accuracy": entry.get("rewards/accuracies")})
    return rows


def answer_logprobs(spec: Any, prompts: Sequence[list[dict]], answers: Sequence[str]) -> list[float]:
    """Log-likelihood (nats) of each answer, end-of-turn token included, after its prompt rendered by the model's
    saved chat template: what the model assigns to that answer, the quantity DPO moves."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer)
    model = AutoModelForCausalLM.from_pretrained(spec.model, dtype=torch.float32).eval()
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    out = []
    with torch.no_grad():
        for prompt, answer in zip(prompts, answers):
            head = list(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True))
            tail = tokenizer(answer, add_special_tokens=False)["input_ids"] + [end]
            logits = model(torch.tensor([head + tail])).logits[0, len(head) - 1:-1]
            picked = torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(tail)[:, None])
            out.append(float(picked.sum()))
    return out


def pair_gaps(spec: Any, pairs: Sequence[dict]) -> list[float]:
    """log p(chosen) - log p(rejected) of each pair (a prep-pairs record) under ``spec``'s weights."""
    prompts = [p["messages"][:-1] for p in pairs]
    chosen = answer_logprobs(spec, prompts, [p["messages"][-1]["content"] for p in pairs])
    rejected = answer_logprobs(spec, prompts, [p["rejected_response"] for p in pairs])
    return [c - r for c, r in zip(chosen, rejected)]


def margin_problems(rows: Sequence[dict[str, Any]]) -> list[str]:
    """What is wrong with the logged steps: too few margins, a margin that did not rise by :data:`MARGIN_RISE` from
    the first logged step to the mean of the last three, a loss that is not finite."""
    problems: list[str] = []
    margins = [r["margin"] for r in rows if _finite(r["margin"])]
    if len(margins) < 4:
        problems.append(f"{len(margins)} logged preference margins (rewards/margins) in logging.jsonl; need 4+")
    else:
        first, last = margins[0], sum(margins[-3:]) / 3
        if not last >= first + MARGIN_RISE:
            problems.append(f"the preference margin did not rise: first {first:+.3f}, mean of the last three "
                            f"{last:+.3f} (need +{MARGIN_RISE})")
    bad = [r["step"] for r in rows if not _finite(r["loss"])]
    if bad:
        problems.append(f"loss not finite at step(s) {bad}")
    return problems


def gap_problems(pairs: Sequence[dict[str, Any]]) -> list[str]:
    """What is wrong with the measured gaps (``after``: log p(chosen) - log p(rejected) with the trained weights): a
    pair that still prefers its rejected answer; no model-generated pair; those below :data:`GAP_MIN` on average."""
    problems: list[str] = []
    losing = [p["prompt"] for p in pairs if not p["after"] > 0]
    if losing:
        problems.append(f"{len(losing)} pair(s) still prefer the rejected answer after DPO: {losing}")
    generated = [p["after"] for p in pairs if p["rejected_from"] == "model"]
    if not generated:
        problems.append("no pair's rejected answer came from the warmed model: nothing of its own to unlearn")
    elif sum(generated) / len(generated) < GAP_MIN:
        problems.append(f"model-generated pairs: mean chosen-minus-rejected log-likelihood "
                        f"{sum(generated) / len(generated):+.2f} < {GAP_MIN}")
    return problems


def dpo_verdict(dpo_run: str | Path, sft_run: str | Path, pairs_dir: str | Path) -> DpoVerdict:
    """Judge a DPO run: its logged margin rose and, measured with its final weights, every pair's chosen answer
    out-scores its rejected one (:func:`margin_problems`, :func:`gap_problems`); the warm-up's gaps are measured
    too, to show where it started."""
    from swiftkit.run.probe import probe_model_for

    rows = step_rows(dpo_run)
    records = read_jsonl(Path(pairs_dir) / "train.jsonl")
    sources = json.loads((Path(pairs_dir) / "manifest.json").read_text(encoding="utf-8"))["pairs"]
    before = pair_gaps(probe_model_for(sft_run, "last"), records)
    after = pair_gaps(probe_model_for(dpo_run, "last"), records)
    pairs = [{"prompt": r["messages"][-2]["content"], "rejected_from": s["rejected_from"], "before": b, "after": a}
             for r, s, b, a in zip(records, sources, before, after)]
    return DpoVerdict(rows, pairs, margin_problems(rows) + gap_problems(pairs))


@dataclass
class DpoSmokeResult:
    sft_run: Path
    pairs_dir: Path
    dpo_run: Path
    rejected_from: dict[str, int]
    verdict: DpoVerdict
    timings: dict[str, float]

    @property
    def ok(self) -> bool:
        return self.verdict.ok


def _write(path: Path, records: list[dict]) -> Path:
    from datasets_prep.atomic import write_text

    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def smoke_data(muice: Path, out: Path, n: int = PAIRS) -> tuple[Path, Path]:
    """``(warm-up folder, persona folder)``. The persona data is ``n`` of prep's Muice train records, those that ask
    who the model is first (swiftkit.core.identity's question rule), then the others in file order. The warm-up data
    asks the same prompts and answers each with :data:`QWEN_ANSWER`: a model that always insists it is Qwen, seed
    000's complaint (one answer for every prompt, so a brief warm-up learns it word for word)."""
    from swiftkit.core.identity import IDENTITY_QUESTIONS

    records = read_jsonl(muice / "train.jsonl")
    asks = [bool(IDENTITY_QUESTIONS.search(r["messages"][-2]["content"])) for r in records]
    persona = ([r for r, a in zip(records, asks) if a] + [r for r, a in zip(records, asks) if not a])[:n]
    qwen = [{**r, "messages": [*r["messages"][:-1], {"role": "assistant", "content": QWEN_ANSWER}]} for r in persona]
    return (_write(out / "muice_qwen" / "train.jsonl", qwen).parent,
            _write(out / "muice_persona" / "train.jsonl", persona).parent)


def smoke_dpo(
    *,
    samples: str | Path = SAMPLES_DIR / "muice",
    data_dir: str | Path = "data",
    model_dir: str | Path = "models/tiny-qwen2",
    runs_root: str | Path = "runs",
    overrides: Sequence[str] = (),
    on_step: Callable[[str], None] = lambda s: None,
    on_output: Optional[Callable[[str], None]] = None,
) -> DpoSmokeResult:
    """Run the DPO smoke pipeline; returns the verdict (does not raise on a failed assertion)."""
    from datasets_prep.options import PrepOptions
    from datasets_prep.pipeline import prep
    from swiftkit.dev.smoke import StepTimer
    from swiftkit.dev.tiny import build_tiny_model
    from swiftkit.train import launch
    from swiftkit.train.dpo.pairs import model_generator, prep_pairs

    step = StepTimer(on_step)
    data = Path(data_dir).resolve()
    step("prep", lambda: prep("muice", Path(samples), data / "muice", PrepOptions(token_stats=False, histogram=False)))
    warm, persona = smoke_data(data / "muice", data)
    step("tiny-model", lambda: build_tiny_model(model_dir))
    model = f"model={Path(model_dir).resolve()}"
    sft_run = Path(step("sft warm-up", lambda: launch.train(
        "smoke_dpo_sft", overrides=[model, f"data.train=[{warm / 'train.jsonl'}]"], runs_root=runs_root,
        on_output=on_output)))
    pairs_dir = data / "muice_pairs"

    def make_pairs() -> Any:
        generate, label = model_generator(str(sft_run), max_new_tokens=GENERATED)
        return prep_pairs(persona, pairs_dir, generate=generate, model_label=label, max_new_tokens=GENERATED)

    made = step("prep-pairs", make_pairs)
    dpo_run = Path(step("dpo", lambda: launch.train(
        "smoke_dpo", overrides=[model, f"data.train=[{pairs_dir / 'train.jsonl'}]", f"init_from={sft_run}",
                                *overrides], runs_root=runs_root, on_output=on_output)))
    verdict = step("verdict", lambda: dpo_verdict(dpo_run, sft_run, pairs_dir))
    return DpoSmokeResult(sft_run, pairs_dir, dpo_run, made.rejected_from, verdict, step.timings)


def _drift_claims(dpo_run: Path) -> str:
    """The recipe's watch, by step: identity answers that claim a base identity, of those asked (`swiftkit eval`
    charts the same rows)."""
    from swiftkit.evaluate.drift import drift_summary
    from swiftkit.run.rundir import read_samples

    steps = drift_summary(read_samples(dpo_run), None)["steps"]
    return ", ".join(f"{s['step']}: {s['claims'][0]}/{s['claims'][1]}" for s in steps) or "-"


def summary(result: DpoSmokeResult) -> str:
    """Per-step margins, per-pair log-likelihood gaps, then the verdict rows (``key  value``, parsed back by
    smoke.parse_summary)."""
    v = result.verdict
    lines = ["step  loss      margin   accuracy"]
    lines += [f"{r['step']:>4}  {r['loss']:.4f}  {r['margin']:+.4f}  {r['accuracy']:.2f}"
              if _finite(r["loss"]) and _finite(r["margin"]) and _finite(r["accuracy"]) else f"{r['step']:>4}  {r}"
              for r in v.steps]
    lines += ["", "log p(chosen) - log p(rejected), nats: warm-up -> DPO  (rejected from)"]
    lines += [f"  {p['before']:+8.2f} -> {p['after']:+8.2f}  ({p['rejected_from']})  {p['prompt']}" for p in v.pairs]
    margins = [r["margin"] for r in v.steps if _finite(r["margin"])]
    generated = [p["after"] for p in v.pairs if p["rejected_from"] == "model"]
    rows = [("sft run", str(result.sft_run)), ("pairs", str(result.pairs_dir)), ("dpo run", str(result.dpo_run))]
    rows += [(f"{name} (s)", f"{secs:.1f}") for name, secs in result.timings.items()]
    rows += [
        ("rejected from", ", ".join(f"{k} {n}" for k, n in result.rejected_from.items())),
        ("dpo steps", str(len(v.steps))),
        ("margin first -> last3", f"{margins[0]:+.3f} -> {sum(margins[-3:]) / 3:+.3f}" if len(margins) >= 3 else "-"),
        ("min gap after", f"{min(p['after'] for p in v.pairs):+.2f}" if v.pairs else "-"),
        ("mean gap model pairs", f"{sum(generated) / len(generated):+.2f}" if generated else "-"),
        ("claims Qwen by step", _drift_claims(result.dpo_run)),
        ("smoke-dpo", "PASS" if result.ok else "FAIL"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(lines + [""] + [f"{k.ljust(width)}  {val}" for k, val in rows])
