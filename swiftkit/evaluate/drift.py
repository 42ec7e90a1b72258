"""Drift by step: what a recipe's ``watch:`` wrote during training (RUN/samples/step-N.jsonl, swiftkit.train.watch),
summed up for `swiftkit eval`'s page and report.json: when the persona took hold, when general answers degraded.

Per step: the persona rate (identity answers that name the persona and claim no forbidden identity: eval's identity
rule, :func:`swiftkit.evaluate.metrics.identity_ok`), the claim rate (answers claiming Qwen / 通义千问 / ...), and the
mean character ROUGE-L of the val answers against their references. Every answer is judged again here by the one
rule, not taken from the file's ``verdict`` (written for a person reading the file).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from swiftkit.core.identity import claims_forbidden_identity
from swiftkit.evaluate.metrics import DIGITS, identity_ok, rouge_l


def _key(row: Mapping[str, Any]) -> str:
    """One question's label across steps: ``[condition] prompt`` (val prompts: ``val: prompt``)."""
    if row.get("kind") == "val":
        return f"val: {row.get('prompt', '')}"
    turns = row.get("turns") or 1
    extra = f" ({turns} turns)" if turns > 1 else ""
    return f"[{row.get('condition', '')}] {row.get('prompt', '')}{extra}"


def drift_summary(by_step: Mapping[int, Sequence[Mapping[str, Any]]], name: Optional[str]) -> dict[str, Any]:
    """``steps``: per step its counts and rates; ``questions``: every question label in first-seen order, and
    ``answers``: label -> {step: answer} (the page's answers-by-step table)."""
    steps, questions, answers = [], [], {}
    for step in sorted(by_step):
        rows = by_step[step]
        identity = [r for r in rows if r.get("kind") == "identity"]
        val = [r for r in rows if r.get("kind") == "val" and isinstance(r.get("reference"), str)]
        named = sum(identity_ok(str(r.get("answer", "")), name) for r in identity)
        claims = sum(claims_forbidden_identity(str(r.get("answer", ""))) for r in identity)
        scores = [rouge_l(str(r.get("answer", "")), r["reference"]) for r in val]
        steps.append({
            "step": step,
            "identity_asked": len(identity),
            "persona": [named, len(identity)],
            "claims": [claims, len(identity)],
            "persona_rate": round(named / len(identity), DIGITS) if identity else None,
            "claim_rate": round(claims / len(identity), DIGITS) if identity else None,
            "val_count": len(val),
            "val_rouge_l": round(sum(scores) / len(scores), DIGITS) if scores else None,
        })
        for r in rows:
            key = _key(r)
            if key not in answers:
                questions.append(key)
                answers[key] = {}
            answers[key][str(step)] = str(r.get("answer", ""))
    return {"steps": steps, "questions": questions, "answers": answers}
