"""GRPO rewards for Chinese chat data, in ms-swift's reward-function shape, and their registry.

ms-swift (3.12.x) calls a reward as ``reward(completions, **kwargs) -> list[float | None]``: ``kwargs`` holds every
dataset column as a list with one item per completion (``messages`` with the completion appended as the last
assistant message, ``solution``, ``score``, ...) plus ``trainer_state``. A reward returns one float per completion,
or None where it does not apply to that record: ms-swift turns None into NaN and leaves it out of the mean and of
the weighted sum, so one run can mix actions, medical and persona records. Metrics are logged per class name
(``rewards/ActionMatch/mean``).

ms-swift builds each reward as ``orms[name](**kw)`` with ``kw`` only those ``__init__`` parameters that are also
training arguments, so every class here is constructible with no arguments: its options then come from the
``SWIFTKIT_REWARD_OPTIONS`` environment variable (JSON: reward name -> options). :mod:`swiftkit.train.grpo.swiftkit_plugin`
registers :data:`REWARDS` into ms-swift's table.

ms-swift's built-in rewards split on spaces, which is useless for Chinese; these work on characters.
Pure Python (pydantic only): importing this module stays fast and never imports torch or ms-swift.
"""
from __future__ import annotations

import difflib
import json
import math
import os
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from datasets_prep.vocab import (
    MALFORMED_TAG,
    THINK_CLOSE,
    THINK_OPEN,
    action_tags,
    answer_part,
    offered_actions,
)
from swiftkit.core.errors import ProblemsError
from swiftkit.core.identity import (
    FORBIDDEN_IDENTITIES,
    IDENTITY_QUESTIONS,
    judge_identity,
    persona_name,
)

OPTIONS_ENV = "SWIFTKIT_REWARD_OPTIONS"
"""Environment variable holding reward options as JSON: ``{"swiftkit_reference": {"score_max": 1.0}}``."""




class RewardOptionsError(ProblemsError):
    """Every problem of the reward options, one line each."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- one record -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Record:
    """What a reward sees of one completion: its text and the record's columns, each None when absent or odd."""

    completion: str
    system: Optional[str]
    user: Optional[str]
    """The last user message."""
    solution: Optional[str]
    score: Optional[float]


def _item(kwargs: Mapping[str, Any], key: str, i: int) -> Any:
    column = kwargs.get(key)
    if isinstance(column, Sequence) and not isinstance(column, str) and i < len(column):
        return column[i]
    return None


def _content(messages: Any, role: str, last: bool) -> Optional[str]:
    """Content of the first (or last) ``role`` message; None when there is none or it is not a string."""
    if not isinstance(messages, Sequence) or isinstance(messages, str):
        return None
    found = [m for m in messages if isinstance(m, Mapping) and m.get("role") == role]
    if not found:
        return None
    content = found[-1 if last else 0].get("content")
    return content if isinstance(content, str) else None


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def make_record(completion: Any, kwargs: Mapping[str, Any], i: int) -> Optional[Record]:
    """The record of completion ``i``; None when the completion is not a string."""
    if not isinstance(completion, str):
        return None
    messages = _item(kwargs, "messages", i)
    solution = _item(kwargs, "solution", i)
    return Record(
        completion=completion,
        system=_content(messages, "system", last=False),
        user=_content(messages, "user", last=True),
        solution=solution if isinstance(solution, str) else None,
        score=_number(_item(kwargs, "score", i)),
    )


# --- text helpers ---------------------------------------------------------------------------------------------

def content_chars(text: str) -> str:
    """Letters and digits only, lower-cased: whitespace and punctuation (Chinese or ASCII) carry no meaning here."""
    return "".join(c for c in text.lower() if unicodedata.category(c)[0] in "LN")


def _grams(text: str, n: int) -> Counter[str]:
    if len(text) < n:
        return Counter([text]) if text else Counter()
    return Counter(text[i:i + n] for i in range(len(text) - n + 1))


def char_f1(candidate: str, reference: str, n: int = 2) -> float:
    """F1 of the character n-gram multisets of two strings (after :func:`content_chars`)."""
    a, b = _grams(content_chars(candidate), n), _grams(content_chars(reference), n)
    overlap = sum((a & b).values())
    if not overlap:
        return 0.0
    return 2 * overlap / (sum(a.values()) + sum(b.values()))








# --- rewards --------------------------------------------------------------------------------------------------

class Reward:
    """Base: options, and the per-completion loop that turns odd input (not bugs) into None."""

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = _Strict

    def __init__(self, swiftkit_options: Optional[Mapping[str, Any]] = None, args: Any = None) -> None:
        # ms-swift 3.x passes only __init__ parameters that are training arguments: none of ours, so options come
        # from the environment (the parameter name can never collide with a training argument). ms-swift 4.x passes
        # its training arguments as ``args=``: accepted, not used.
        raw = dict(swiftkit_options) if swiftkit_options is not None else env_options(self.name)
        problems = option_problems(self.name, raw)
        if problems:
            raise RewardOptionsError(problems)
        self.options = self.Options.model_validate(raw)

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[Optional[float]]:
        return [self._safe_score(c, kwargs, i) for i, c in enumerate(completions if completions is not None else [])]

    def _safe_score(self, completion: Any, kwargs: Mapping[str, Any], i: int) -> Optional[float]:
        # Odd input (a missing column, a non-string completion or solution) is None here, by make_record. A bug in
        # a reward is not swallowed: it raises, and preflight, which runs every reward once, reports it in seconds.
        record = make_record(completion, kwargs, i)
        value = None if record is None else self.score(record)
        return None if value is None or not math.isfinite(value) else float(value)

    def score(self, record: Record) -> Optional[float]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"


class ThinkFormat(Reward):
    """Format: one <think>…</think> block at the start, then a non-empty answer (records whose solution thinks).

    Scores: 1.0 exactly one block at the very start (leading whitespace allowed) with non-empty thinking and a
    non-empty answer after it; 0.5 one closed block with empty thinking, an empty answer or text before it; 0.25 an
    unclosed ``<think>`` or several blocks; 0.0 no ``<think>`` at all. None where the record's solution has no
    ``<think>`` (unless ``require``), since then thinking is not what the data teaches.
    """

    name = "swiftkit_think"
    FULL, PARTIAL, BROKEN, ABSENT = 1.0, 0.5, 0.25, 0.0

    class Options(_Strict):
        require: bool = Field(False, description="Score every record, not only those whose solution has <think>.")

    def score(self, record: Record) -> Optional[float]:
        applies = self.options.require or (record.solution is not None and THINK_OPEN in record.solution)
        return self.format_score(record.completion) if applies else None

    @classmethod
    def format_score(cls, text: str) -> float:
        opens, closes = text.count(THINK_OPEN), text.count(THINK_CLOSE)
        if opens == 0:
            return cls.ABSENT
        if opens > 1 or closes != 1:
            return cls.BROKEN
        head, rest = text.split(THINK_OPEN, 1)
        if THINK_CLOSE not in rest:  # the only </think> comes before <think>
            return cls.BROKEN
        thinking, answer = rest.split(THINK_CLOSE, 1)
        if head.strip() or not thinking.strip() or not answer.strip():
            return cls.PARTIAL
        return cls.FULL


class ActionMatch(Reward):
    """Actions: the reference answer's <&ACTION&> tags win; an offered action never scores below acting not at all.

    Applies where the system prompt offers actions (``- X`` lines after ``可选动作:``) or the solution has a tag;
    None otherwise, and None without a solution. The offered set is the system's list plus the solution's own tags.
    Tags are read from the answer (thinking removed); an unclosed ``<&`` counts as an unoffered tag.

    When the reference acts (tags R), the completion's offered tags C score, best first:
      1.0   C == R, same order
      0.6   same set as R, other order or repeats (``order_credit``)
      0.1 + 0.4 * Jaccard(C, R): partly right; an offered but different action scores 0.1
      0.0   no tag at all
    so emitting the right action is clearly best and emitting an offered one is never worse than emitting none (a
    reward where "no tag" beat "wrong tag" taught a model to stop acting). When the reference does not act:
    1.0 no tag, 0.3 any tag. Any unoffered tag then subtracts ``unoffered_penalty`` (0.6): an invented action
    scores below every offered one (reference acts: only unoffered -0.6; reference silent: -0.3). Where the tags
    sit relative to the text is left to ``swiftkit_reference``.
    """

    name = "swiftkit_action"
    EXACT, NONE_WHEN_ACTING, PARTIAL_BASE, PARTIAL_SPAN, TAGS_WHEN_SILENT = 1.0, 0.0, 0.1, 0.4, 0.3

    class Options(_Strict):
        order_credit: float = Field(
            0.6, gt=0.5, lt=1.0,
            description="Score for the reference's actions in another order (or repeated); above any partial match.",
        )
        unoffered_penalty: float = Field(
            0.6, gt=0.0, le=1.0,
            description="Subtracted when the answer uses an action the system prompt does not offer.",
        )

    def score(self, record: Record) -> Optional[float]:
        if record.solution is None:
            return None
        reference = [t for t in action_tags(answer_part(record.solution)) if t != MALFORMED_TAG]
        offered = set(offered_actions(record.system))
        if not offered and not reference:
            return None
        offered |= set(reference)
        tags = action_tags(answer_part(record.completion))
        used = [t for t in tags if t in offered]
        penalty = self.options.unoffered_penalty if len(used) < len(tags) else 0.0
        return self.match_score(used, reference, bool(tags)) - penalty

    def match_score(self, used: list[str], reference: list[str], any_tag: bool) -> float:
        """Score of the offered tags ``used`` against the reference's tags (before any unoffered penalty)."""
        if not reference:
            return self.TAGS_WHEN_SILENT if any_tag else self.EXACT
        if used == reference:
            return self.EXACT
        if not used:
            return self.NONE_WHEN_ACTING
        got, want = set(used), set(reference)
        if got == want:
            return self.options.order_credit
        return self.PARTIAL_BASE + self.PARTIAL_SPAN * len(got & want) / len(got | want)


class ReferenceSimilarity(Reward):
    """Similarity: character-bigram F1 of the answer to the solution's answer, weighted by the record's score.

    Whitespace and punctuation are removed first, so it works for Chinese (ms-swift's built-ins split on spaces).
    The ``<think>`` blocks are stripped from both sides unless ``include_think``. Weight = score / ``score_max``
    clipped to [0, 1]; a record without a numeric score weighs 1. None without a solution or when the solution's
    answer has no letters or digits.
    """

    name = "swiftkit_reference"

    class Options(_Strict):
        include_think: bool = Field(False, description="Compare whole texts, thinking included, not only the answers.")
        score_max: float = Field(
            10.0, gt=0,
            description="The record score that weighs 1 (10 for the 8..10 placeholders, 1 for 0..1 ratings).",
        )

    def score(self, record: Record) -> Optional[float]:
        if record.solution is None:
            return None
        strip = (lambda t: t) if self.options.include_think else answer_part
        reference = strip(record.solution)
        if not content_chars(reference):
            return None
        return char_f1(strip(record.completion), reference) * self.weight(record.score)

    def weight(self, score: Optional[float]) -> float:
        if score is None:
            return 1.0
        return min(1.0, max(0.0, score / self.options.score_max))


class CharRepetition(Reward):
    """Repetition: -max_penalty * (1 - unique/total) over character n-grams (whitespace removed); every record.

    ms-swift's ``repetition`` counts space-separated words and so is always 0 on Chinese text. 0 for a completion
    shorter than ``ngram_size`` characters.
    """

    name = "swiftkit_repetition"

    class Options(_Strict):
        ngram_size: int = Field(3, ge=1, description="Characters per n-gram.")
        max_penalty: float = Field(1.0, ge=0, description="Penalty magnitude for text that is all repeats.")

    def score(self, record: Record) -> Optional[float]:
        text = "".join(record.completion.split())
        n = self.options.ngram_size
        if len(text) < n:
            return 0.0
        grams = [text[i:i + n] for i in range(len(text) - n + 1)]
        return 0.0 - self.options.max_penalty * (1 - len(set(grams)) / len(grams))  # 0.0 - x: never -0.0


class PersonaIdentity(Reward):
    """Identity: the one identity rule (:mod:`swiftkit.core.identity`) as a reward, on who-are-you questions only.

    Applies only where the last user message asks who the model is (:data:`IDENTITY_QUESTIONS`); None otherwise,
    and None when no persona name is known (option ``name``, else "名为X的" / "你是X" in the system prompt). On the
    answer (thinking removed): -1 when it claims a forbidden identity (a denial such as "才不是Qwen呢" is no claim),
    else +1 when it names the persona, else 0. "我是沐雪…才不是Qwen呢！" scores +1, "我才不是千问呢" 0,
    "我是沐雪，基于通义千问" -1.
    """

    name = "swiftkit_persona"
    NAMED, NEITHER, FORBIDDEN = 1.0, 0.0, -1.0

    class Options(_Strict):
        name: Optional[str] = Field(
            None, min_length=1, description="The persona's name; default: read from the record's system prompt.",
        )
        forbidden: list[str] = Field(
            default_factory=lambda: list(FORBIDDEN_IDENTITIES),
            description="Identities the model must not claim (case-insensitive substrings).",
        )

    def score(self, record: Record) -> Optional[float]:
        if not record.user or not IDENTITY_QUESTIONS.search(record.user):
            return None
        name = self.options.name or persona_name(record.system)
        if not name:
            return None
        verdict = judge_identity(answer_part(record.completion), name, self.options.forbidden)
        return {"claims": self.FORBIDDEN, "named": self.NAMED, "neither": self.NEITHER}[verdict]


# --- registry and options ---------------------------------------------------------------------------------------

REWARDS: dict[str, type[Reward]] = {
    cls.name: cls for cls in (ThinkFormat, ActionMatch, ReferenceSimilarity, CharRepetition, PersonaIdentity)
}
"""Reward name (``--reward_funcs``) -> class; :mod:`swiftkit.train.grpo.swiftkit_plugin` registers each into ms-swift."""


def option_problems(name: str, options: Any) -> list[str]:
    """Every problem of ``options`` for reward ``name``, one short line each; [] when they are fine. Never raises."""
    if name not in REWARDS:
        close = difflib.get_close_matches(str(name), list(REWARDS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(REWARDS)}"
        return [f"reward {name!r}: unknown reward{hint}"]
    if not isinstance(options, Mapping):
        return [f"reward {name!r}: options must be a mapping, got {type(options).__name__}"]
    model = REWARDS[name].Options
    try:
        model.model_validate(dict(options))
    except ValidationError as exc:
        return [_problem_line(name, error, list(model.model_fields)) for error in exc.errors()]
    return []


def _problem_line(name: str, error: Mapping[str, Any], fields: list[str]) -> str:
    where = ".".join(str(p) for p in error.get("loc", ())) or "options"
    if error.get("type") == "extra_forbidden":
        close = difflib.get_close_matches(where, fields, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(fields)}"
        return f"reward {name!r}: option {where!r}: unknown option; {hint}"
    return f"reward {name!r}: option {where!r}: {error.get('msg', 'invalid')}"


def env_options(name: str, environ: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
    """Options for reward ``name`` from :data:`OPTIONS_ENV`; {} (defaults) when unset or when it names other rewards.

    Every entry of the variable is checked, not only ``name``'s, so a misspelt reward name fails loudly at start.
    """
    raw = (os.environ if environ is None else environ).get(OPTIONS_ENV, "").strip()
    if not raw:
        return {}
    try:
        table = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RewardOptionsError([f"{OPTIONS_ENV}: not valid JSON ({exc.msg} at char {exc.pos})"]) from None
    if not isinstance(table, dict):
        raise RewardOptionsError([f"{OPTIONS_ENV}: must be a JSON object of reward name -> options"])
    problems = [line for key, value in table.items() for line in option_problems(key, value)]
    if problems:
        raise RewardOptionsError([f"{OPTIONS_ENV}: {p}" for p in problems])
    return dict(table.get(name, {}))


def options_env_value(options_by_name: Mapping[str, Mapping[str, Any]]) -> str:
    """The :data:`OPTIONS_ENV` value for these options; RewardOptionsError listing every problem."""
    problems = [line for key, value in options_by_name.items() for line in option_problems(key, value)]
    if problems:
        raise RewardOptionsError(problems)
    return json.dumps({k: dict(v) for k, v in options_by_name.items()}, ensure_ascii=False, sort_keys=True)


def make_reward(name: str, options: Optional[Mapping[str, Any]] = None) -> Reward:
    """An instance of reward ``name``; ``options`` None reads :data:`OPTIONS_ENV`. RewardOptionsError on problems."""
    if name not in REWARDS:
        raise RewardOptionsError(option_problems(name, {}))
    return REWARDS[name](options)
