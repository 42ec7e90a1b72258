"""Task metrics for `swiftkit eval`: pure functions on answers and their records (no model, no torch).

A sample is what one prompt got: its system prompt, the reference answer (None for a bare prompt) and one answer per
model (``base``, ``tuned``, ...), each with a truncation flag. Each metric applies only to the samples whose data
teaches what it measures, so one run can mix persona, reasoning and action records; a metric that applies to no
sample is None ("—" on the page), never 0.

The text facts are the ones GRPO rewards with: :mod:`datasets_prep.vocab` (``<think>`` blocks, action tags, offered
actions), :mod:`swiftkit.train.grpo.rewards` (character F1, the ``<think>`` form) and :mod:`swiftkit.core.identity`
(the one identity rule), so eval, GRPO and check agree by construction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

from datasets_prep.vocab import (
    MALFORMED_TAG,
    THINK_OPEN,
    action_tags,
    answer_part,
    offered_actions,
)
from swiftkit.core.identity import judge_identity
from swiftkit.train.grpo.rewards import ThinkFormat, char_f1, content_chars

DIGITS = 4
"""Metric values are rounded to this many decimals, so report.json is byte-identical on rerun."""


# --- one answer ---------------------------------------------------------------------------------------------------

def rouge_l(candidate: str, reference: str) -> float:
    """Character-level ROUGE-L F1: longest common subsequence of the two :func:`content_chars` strings.

    Chinese has no spaces, so characters are the tokens; punctuation and whitespace are dropped as in char_f1.
    """
    a, b = content_chars(candidate), content_chars(reference)
    if not a or not b:
        return 0.0
    lcs = _lcs_length(a, b)
    if not lcs:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def _lcs_length(a: str, b: str) -> int:
    if len(b) > len(a):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for char in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if char == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def think_compliant(answer: str) -> bool:
    """One ``<think>`` block at the start with thinking in it, then a non-empty answer (GRPO's full think score)."""
    return ThinkFormat.format_score(answer) == ThinkFormat.FULL


def reference_actions(reference: str) -> list[str]:
    """The reference answer's action tags, in order (thinking removed; a malformed tag is not an action)."""
    return [t for t in action_tags(answer_part(reference)) if t != MALFORMED_TAG]


def actions_valid(answer: str, system: Optional[str], reference: Optional[str]) -> bool:
    """Every ``<&ACTION&>`` tag of the answer is offered: listed under 可选动作 in the system prompt, or used by the
    reference (the offered set of GRPO's action reward). An answer without tags is valid; an unclosed ``<&`` is not."""
    offered = set(offered_actions(system)) | set(reference_actions(reference or ""))
    return all(tag in offered for tag in action_tags(answer_part(answer)))


def actions_agree(answer: str, reference: str) -> bool:
    """The answer's tags are exactly the reference's, in the same order (no tag when the reference has none)."""
    return action_tags(answer_part(answer)) == reference_actions(reference)


def identity_ok(answer: str, name: Optional[str]) -> bool:
    """An identity answer that does not claim a forbidden identity and names the persona when its name is known
    (:func:`swiftkit.core.identity.judge_identity`; a denial such as "才不是Qwen呢" is no claim)."""
    verdict = judge_identity(answer, name)
    return verdict == "named" if name else verdict != "claims"


def exact(answer: str, reference: str) -> bool:
    return answer.strip() == reference.strip()


# --- which samples a metric applies to ----------------------------------------------------------------------------

def has_reference(sample: Mapping[str, Any]) -> bool:
    return bool(content_chars(answer_part(sample.get("reference") or "")))


def is_reasoning(sample: Mapping[str, Any]) -> bool:
    """The reference thinks: the data teaches ``<think>…</think>answer``."""
    return THINK_OPEN in (sample.get("reference") or "")


def is_actions(sample: Mapping[str, Any]) -> bool:
    """The system prompt offers actions or the reference acts."""
    return bool(offered_actions(sample.get("system")) or reference_actions(sample.get("reference") or ""))


# --- the table ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    description: str
    kind: str
    """The data it is for: similarity, reasoning, actions, persona, all."""
    applies: Callable[[Mapping[str, Any]], bool]
    value: Callable[[Mapping[str, Any], str], float]
    """(sample, side) -> 0..1 for the answer under ``side``; the metric is its mean over the samples it applies to."""
    higher_is_better: bool = True


def _ref(sample: Mapping[str, Any]) -> str:
    return sample.get("reference") or ""


def _on_answer(score: Callable[[Mapping[str, Any], str], float]) -> Callable[[Mapping[str, Any], str], float]:
    """A metric of the answer text: (sample, answer) -> value, as (sample, side) -> value."""
    return lambda sample, side: score(sample, sample[side])


def _truncated(sample: Mapping[str, Any], side: str) -> float:
    return float(bool((sample.get("truncated") or {}).get(side)))


METRICS: tuple[Metric, ...] = (
    Metric("exact_match", "exact match", "answer identical to the reference (whitespace at the ends ignored)",
           "similarity", has_reference, _on_answer(lambda s, a: float(exact(a, _ref(s))))),
    Metric("rouge_l", "ROUGE-L (chars)", "character-level ROUGE-L F1 to the reference answer (thinking removed, "
           "punctuation ignored)", "similarity", has_reference,
           _on_answer(lambda s, a: rouge_l(answer_part(a), answer_part(_ref(s))))),
    Metric("char_bigram_f1", "char-bigram F1", "F1 of character bigrams against the reference answer (GRPO's "
           "swiftkit_reference, unweighted)", "similarity", has_reference,
           _on_answer(lambda s, a: char_f1(answer_part(a), answer_part(_ref(s))))),
    Metric("truncation_rate", "truncated", "answers that hit max_new_tokens without an end-of-turn token",
           "all", lambda s: True, _truncated, higher_is_better=False),
    Metric("think_format", "<think> format", "answers of the form <think>thinking</think>answer, where the "
           "reference thinks", "reasoning", is_reasoning, _on_answer(lambda s, a: float(think_compliant(a)))),
    Metric("action_valid", "valid actions", "answers whose <&action&> tags are all offered by the system prompt",
           "actions", is_actions,
           _on_answer(lambda s, a: float(actions_valid(a, s.get("system"), s.get("reference"))))),
    Metric("action_agreement", "action agreement", "answers with exactly the reference's action tags, in order",
           "actions", lambda s: is_actions(s) and has_reference(s),
           _on_answer(lambda s, a: float(actions_agree(a, _ref(s))))),
)
"""Metrics over the prompt samples, in table order (truncation comes from the generation's flag, not the text)."""

IDENTITY_LABEL = "identity ({condition})"
IDENTITY_DESCRIPTION = ("identity answers naming the persona {name} and not claiming Qwen / 通义千问 / Alibaba / ChatGPT, "
                        "asked {condition_text}")
IDENTITY_CONDITION_TEXT = {"run system": "with the run's system prompt",
                           "no system": "with no system message (the saved chat template's default)"}


def sample_scores(sample: Mapping[str, Any], side: str) -> dict[str, float]:
    """The per-answer values shown beside an answer (similarity to the reference)."""
    if not has_reference(sample):
        return {}
    return {m.key: round(m.value(sample, side), DIGITS) for m in METRICS if m.kind == "similarity"}


def sample_metrics(samples: Sequence[Mapping[str, Any]], side: str) -> dict[str, Optional[float]]:
    """Each metric's mean over the samples it applies to, for the answers under ``side`` (base, tuned, ...)."""
    out: dict[str, Optional[float]] = {}
    for metric in METRICS:
        values = [metric.value(s, side) for s in samples if metric.applies(s)]
        out[metric.key] = round(sum(values) / len(values), DIGITS) if values else None
    return out


def identity_metrics(identity: Sequence[Mapping[str, Any]], side: str, name: Optional[str]) -> dict[str, float]:
    """Per condition, the rate of :func:`identity_ok` answers (``identity`` rows: condition, prompt, answers)."""
    by_condition: dict[str, list[float]] = {}
    for row in identity:
        by_condition.setdefault(row["condition"], []).append(float(identity_ok(row[side], name)))
    return {f"identity_{c.replace(' ', '_')}": round(sum(v) / len(v), DIGITS) for c, v in by_condition.items()}


def data_kinds(samples: Sequence[Mapping[str, Any]], persona: bool) -> list[str]:
    """What the prompts' data teaches, which picks the task metrics: persona, reasoning, actions."""
    kinds = ["persona"] if persona else []
    if any(is_reasoning(s) for s in samples):
        kinds.append("reasoning")
    if any(is_actions(s) for s in samples):
        kinds.append("actions")
    return kinds


def metric_rows(kinds: Sequence[str], identity_keys: Sequence[str], name: Optional[str]) -> list[dict[str, Any]]:
    """The table's rows, in order: key, label, description, higher_is_better; task metrics only for the data's kinds,
    loss figures from the run's logs last."""
    rows = [{"key": m.key, "label": m.label, "description": m.description, "higher_is_better": m.higher_is_better}
            for m in METRICS if m.kind in ("similarity", "all") or m.kind in kinds]
    for key in identity_keys:
        condition = key[len("identity_"):].replace("_", " ")
        rows.append({"key": key, "label": IDENTITY_LABEL.format(condition=condition),
                     "description": IDENTITY_DESCRIPTION.format(
                         name=name or "(name unknown)", condition_text=IDENTITY_CONDITION_TEXT.get(condition, condition)),
                     "higher_is_better": True})
    rows += [
        {"key": "train_loss", "label": "final train loss", "description": "last logged train loss (the run's logs)",
         "higher_is_better": False},
        {"key": "eval_loss", "label": "eval loss", "description": "last logged eval_loss on the val split (the run's "
         "logs; — when the recipe sets no eval_steps)", "higher_is_better": False},
        {"key": "eval_perplexity", "label": "eval perplexity", "description": "exp(eval loss)",
         "higher_is_better": False},
    ]
    return rows
