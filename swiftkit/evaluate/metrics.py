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
    """The answer acts, and every ``<&ACTION&>`` tag of it is offered: listed under 可选动作 in the system prompt, or
    used by the reference (the offered set of GRPO's action reward). An answer without a tag takes no action, so it
    is not a valid one (an empty answer scored 1.0 before); an unclosed ``<&`` is not an offered action."""
    offered = set(offered_actions(system)) | set(reference_actions(reference or ""))
    tags = action_tags(answer_part(answer))
    return bool(tags) and all(tag in offered for tag in tags)


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


def expects_action(sample: Mapping[str, Any]) -> bool:
    """An action is the right answer: the reference acts, or, without a reference, the system prompt offers actions.
    Where the reference answers without acting, not acting is right (GRPO's action reward scores it 1.0), so
    "valid actions" leaves those prompts out; "action agreement" still counts them."""
    if has_reference(sample):
        return bool(reference_actions(_ref(sample)))
    return bool(offered_actions(sample.get("system")))


# --- the table ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    description: str
    """What one answer scores (a rate: which answers count; a mean: what each answer's value is)."""
    over: str
    """Which answers it is taken over (the samples ``applies`` keeps), as the page says it."""
    kind: str
    """The data it is for: similarity, reasoning, actions, persona, all."""
    applies: Callable[[Mapping[str, Any]], bool]
    value: Callable[[Mapping[str, Any], str], float]
    """(sample, side) -> 0..1 for the answer under ``side``; the metric is its mean over the samples it applies to."""
    higher_is_better: bool = True
    rate: bool = True
    """Each answer scores 0 or 1, so the metric is a share of answers (shown as "67 % (2/3)"); else a mean score."""


def _ref(sample: Mapping[str, Any]) -> str:
    return sample.get("reference") or ""


def _on_answer(score: Callable[[Mapping[str, Any], str], float]) -> Callable[[Mapping[str, Any], str], float]:
    """A metric of the answer text: (sample, answer) -> value, as (sample, side) -> value."""
    return lambda sample, side: score(sample, sample[side])


def _truncated(sample: Mapping[str, Any], side: str) -> float:
    return float(bool((sample.get("truncated") or {}).get(side)))


WITH_REFERENCE = "answers to prompts with a reference answer"

METRICS: tuple[Metric, ...] = (
    Metric("exact_match", "exact match", "answers identical to the reference (whitespace at the ends ignored)",
           WITH_REFERENCE, "similarity", has_reference, _on_answer(lambda s, a: float(exact(a, _ref(s))))),
    Metric("rouge_l", "ROUGE-L (chars)", "character-level ROUGE-L F1 of each answer to the reference answer, 0..1 "
           "(longest common subsequence of the characters; thinking removed, punctuation ignored)", WITH_REFERENCE,
           "similarity", has_reference, _on_answer(lambda s, a: rouge_l(answer_part(a), answer_part(_ref(s)))),
           rate=False),
    Metric("char_bigram_f1", "char-bigram F1", "F1 of each answer's character bigrams against the reference "
           "answer's, 0..1 (GRPO's swiftkit_reference, unweighted; thinking removed)", WITH_REFERENCE, "similarity",
           has_reference, _on_answer(lambda s, a: char_f1(answer_part(a), answer_part(_ref(s)))), rate=False),
    Metric("truncation_rate", "truncated", "answers that hit max_new_tokens without an end-of-turn token",
           "every answer", "all", lambda s: True, _truncated, higher_is_better=False),
    Metric("think_format", "<think> format", "answers of the form <think>thinking</think>answer: one block at the "
           "start, thinking and answer both non-empty", "answers to prompts whose reference thinks", "reasoning",
           is_reasoning, _on_answer(lambda s, a: float(think_compliant(a)))),
    Metric("action_valid", "valid actions", "answers that take an action, every <&action&> tag of it offered (listed "
           "under 可选动作 in the system prompt, or used by the reference); an answer with no tag is not a valid "
           "action, an unclosed <& is not an offered one", "answers to prompts whose reference acts (without a "
           "reference: whose system prompt offers actions)", "actions", expects_action,
           _on_answer(lambda s, a: float(actions_valid(a, s.get("system"), s.get("reference"))))),
    Metric("action_agreement", "action agreement", "answers with exactly the reference's action tags, in order (no "
           "tag where the reference has none)", "answers to prompts with a reference, on action data (the system "
           "prompt offers actions or the reference acts)", "actions", lambda s: is_actions(s) and has_reference(s),
           _on_answer(lambda s, a: float(actions_agree(a, _ref(s))))),
)
"""Metrics over the prompt samples, in table order (truncation comes from the generation's flag, not the text)."""

IDENTITY_LABEL = "identity ({condition})"
IDENTITY_DESCRIPTION = ("identity answers naming the persona {name} and not claiming Qwen / 通义千问 / Alibaba / ChatGPT "
                        "(a denial such as 才不是Qwen is no claim)")
IDENTITY_OVER = "the identity questions (你是谁？ and two paraphrases) asked {condition_text}"
IDENTITY_CONDITION_TEXT = {"run system": "with the run's system prompt",
                           "no system": "with no system message (the saved chat template's default)"}

LOG_ROWS: tuple[dict[str, Any], ...] = (
    {"key": "train_loss", "label": "final train loss", "description": "the last train loss the run logged",
     "over": "the run's logs", "higher_is_better": False, "rate": False},
    {"key": "eval_loss", "label": "eval loss", "description": "the last eval_loss the run logged on its val split "
     "(— when the recipe sets no eval_steps)", "over": "the run's logs", "higher_is_better": False, "rate": False},
    {"key": "eval_perplexity", "label": "eval perplexity", "description": "exp(eval loss)", "over": "the run's logs",
     "higher_is_better": False, "rate": False},
)
"""The loss figures from the run's logs (swiftkit.evaluate.compare.log_figures), last in the table."""


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


def sample_counts(samples: Sequence[Mapping[str, Any]], side: str) -> dict[str, list[int]]:
    """For each rate metric that applies to some sample: [answers that count, answers it is taken over]."""
    out: dict[str, list[int]] = {}
    for metric in METRICS:
        if metric.rate:
            values = [metric.value(s, side) for s in samples if metric.applies(s)]
            if values:
                out[metric.key] = [int(sum(values)), len(values)]
    return out


def _identity_by_condition(identity: Sequence[Mapping[str, Any]], side: str,
                           name: Optional[str]) -> dict[str, list[bool]]:
    by_condition: dict[str, list[bool]] = {}
    for row in identity:
        by_condition.setdefault(f"identity_{row['condition'].replace(' ', '_')}", []).append(
            identity_ok(row[side], name))
    return by_condition


def identity_metrics(identity: Sequence[Mapping[str, Any]], side: str, name: Optional[str]) -> dict[str, float]:
    """Per condition, the rate of :func:`identity_ok` answers (``identity`` rows: condition, prompt, answers)."""
    return {key: round(sum(v) / len(v), DIGITS) for key, v in _identity_by_condition(identity, side, name).items()}


def identity_counts(identity: Sequence[Mapping[str, Any]], side: str, name: Optional[str]) -> dict[str, list[int]]:
    """Per condition, [answers that pass :func:`identity_ok`, identity questions asked]."""
    return {key: [sum(v), len(v)] for key, v in _identity_by_condition(identity, side, name).items()}


def data_kinds(samples: Sequence[Mapping[str, Any]], persona: bool) -> list[str]:
    """What the prompts' data teaches, which picks the task metrics: persona, reasoning, actions."""
    kinds = ["persona"] if persona else []
    if any(is_reasoning(s) for s in samples):
        kinds.append("reasoning")
    if any(is_actions(s) for s in samples):
        kinds.append("actions")
    return kinds


def _row(metric: Metric) -> dict[str, Any]:
    return {"key": metric.key, "label": metric.label, "description": metric.description, "over": metric.over,
            "higher_is_better": metric.higher_is_better, "rate": metric.rate}


def metric_rows(kinds: Sequence[str], identity_keys: Sequence[str], name: Optional[str]) -> list[dict[str, Any]]:
    """The table's rows, in order: key, label, description, over (which answers), higher_is_better, rate; task
    metrics only for the data's kinds, loss figures from the run's logs last."""
    rows = [_row(m) for m in METRICS if m.kind in ("similarity", "all") or m.kind in kinds]
    for key in identity_keys:
        condition = key[len("identity_"):].replace("_", " ")
        rows.append({"key": key, "label": IDENTITY_LABEL.format(condition=condition),
                     "description": IDENTITY_DESCRIPTION.format(name=name or "(named in the run's system prompt)"),
                     "over": IDENTITY_OVER.format(condition_text=IDENTITY_CONDITION_TEXT.get(condition, condition)),
                     "higher_is_better": True, "rate": True})
    return rows + [dict(row) for row in LOG_ROWS]


def definition(row: Mapping[str, Any]) -> str:
    """One metric row's whole definition, as the page and `swiftkit eval --help` state it."""
    shape = ("the share of those answers, shown as percent (counted/total)" if row["rate"] else
             "a figure from the run's logs" if row["over"] == "the run's logs" else "the mean over those answers, 0..1")
    return (f"{row['description']}. Over: {row['over']}. Value: {shape}; "
            f"{'higher' if row['higher_is_better'] else 'lower'} is better.")


def help_text() -> str:
    """Every metric's definition for `swiftkit eval --help`, wrapped for a terminal."""
    import textwrap

    rows = metric_rows(["reasoning", "actions", "persona"], ["identity_run_system", "identity_no_system"], None)
    return "\n".join(textwrap.fill(f"{row['label']}: {definition(row)}", width=116, initial_indent="  ",
                                    subsequent_indent="      ", break_on_hyphens=False) for row in rows)
