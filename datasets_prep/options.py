"""How one source is converted: :class:`PrepOptions`, the options of :func:`datasets_prep.pipeline.prep`.

Each field is one `swiftkit prep` option (``val_ratio`` is ``--val-ratio``); its default is stated here once, and the
command line takes its defaults from here. :meth:`PrepOptions.validate` reports every problem at once, one line each,
named by the option as the user typed it (the recipe validator's style: all problems, one per line).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

from datasets_prep.errors import ProblemsError, SwiftkitError
from datasets_prep.oserrors import shown
from datasets_prep.raw_format import PROMPT_FORMATS
from datasets_prep.vocab import special_token_text

OVER_LENGTH = ("keep", "truncate", "drop")
"""The ``over_length`` policies."""


class PrepOptionsError(ProblemsError):
    """Every problem found in one set of prep options, one line each (``--flag value: problem``)."""


@dataclass(frozen=True)
class PrepOptions:
    """The options of one prep run. Immutable; ``dataclasses.replace(options, seed=7)`` gives a changed copy."""

    system: Optional[str] = None
    """System prompt for every record, replacing the source's default and the data's own. For sources that build
    the prompt per record (actions) it replaces the instruction and each record's action list stays. None: the
    source's prompt."""

    keep_system: Optional[bool] = None
    """True: keep each record's own system prompt (the source's only where a record has none); False: always the
    source's. None: the source's own policy (the generic sources keep, the named ones replace)."""

    val_ratio: float = 0.1
    """Share of records drawn into val, in [0, 1), when the source has no val file of its own."""

    seed: int = 42
    """Seed of the split, the placeholder scores and the action-list shuffle. Same inputs and seed give
    byte-identical outputs."""

    score_choices: Sequence[float] = (8.0, 8.5, 9.0, 9.5, 10.0)
    """Placeholder scores, one drawn per record by its hash (finite numbers); unused with ``score_from``."""

    score_from: Optional[str] = None
    """Dotted field path into the raw record (``metrics.quality_f1``) whose number is the record's score; a record
    without one is rejected. None: placeholder scores from ``score_choices``."""

    single_turn: bool = False
    """Keep only the first user/assistant exchange of each record."""

    max_length: int = 2048
    """Token budget a record is measured against (statistics, ``over_length``); at least 1."""

    over_length: str = "keep"
    """Records over ``max_length`` tokens: ``keep`` (counted only), ``drop`` (rejected, naming the count) or
    ``truncate`` (the last assistant message cut to fit; rejected where even that cannot fit)."""

    model_name: Optional[Sequence[str]] = None
    """(ZH, EN) names filling ``{{NAME}}`` placeholders (self-cognition data)."""

    model_author: Optional[Sequence[str]] = None
    """(ZH, EN) names filling ``{{AUTHOR}}`` placeholders."""

    encoding: Optional[str] = None
    """Text encoding of CSV/JSON/JSONL inputs (``gbk`` for a CSV Excel saved on Chinese Windows). None: UTF-8, a
    byte-order mark accepted."""

    columns: Optional[str | Mapping[str, str]] = None
    """Input columns/fields renamed before the reader sees them: ``"FROM=TO,..."`` or a mapping {FROM: TO}."""

    keep_duplicates: bool = False
    """Keep exact duplicate records (counted in the manifest's ``duplicates_kept``) instead of dropping them."""

    tokenizer: Optional[str] = None
    """A local tokenizer folder that counts the tokens (statistics, ``over_length``), loaded by transformers with
    ``trust_remote_code=False`` (a folder whose tokenizer needs its own code is refused); records are rendered with
    its chat template when it has one. None: the bundled Qwen tokenizer on the qwen2_5 chat rendering."""

    token_stats: bool = True
    """Count every record's tokens for the manifest's statistics. Off only to time the rest (benchmarks); a drop or
    truncate ``over_length`` counts tokens regardless."""

    histogram: bool = True
    """Write ``lengths.png`` beside the statistics."""

    prompt_format: str = "chat"
    """chat: ms-swift messages records (system, user, assistant); raw: seed 004's plain text, one assistant message
    per record, for a recipe with ``data.prompt_format: raw`` (datasets_prep/raw_format.py)."""

    def __post_init__(self) -> None:
        # sequences as tuples: the options stay immutable, and equal options compare equal however they were given
        for name in ("score_choices", "model_name", "model_author"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, tuple)):
                object.__setattr__(self, name, tuple(value))

    def problems(self) -> list[str]:
        """Every problem with these options, one line each; empty when they are usable."""
        from datasets_prep.scorefield import ScoreField
        from datasets_prep.sourcefiles import check_encoding, parse_columns

        found: list[str] = []
        if not 0.0 <= self.val_ratio < 1.0:
            found.append(f"--val-ratio {self.val_ratio}: must be in [0, 1)")
        choices = list(self.score_choices)
        if not choices:
            found.append("--score-choices: give at least one score")
        bad = [c for c in choices if not math.isfinite(c)]
        if bad:  # JSON has no NaN or infinity
            found.append(f"--score-choices {','.join(map(str, choices))}: {bad[0]} is not a finite number")
        if self.max_length < 1:
            found.append(f"--max-length {self.max_length}: must be positive")
        if self.prompt_format not in PROMPT_FORMATS:
            found.append(f"--prompt-format {shown(str(self.prompt_format))}: choose {', '.join(PROMPT_FORMATS)}")
        if self.over_length not in OVER_LENGTH:
            found.append(f"--over-length {shown(str(self.over_length))}: choose {', '.join(OVER_LENGTH)}")
        for label, pair in (("--model-name", self.model_name), ("--model-author", self.model_author)):
            if pair is not None and len(pair) != 2:
                found.append(f"{label}: give two values, ZH and EN")
        texts = {"--system": None if self.system is None else [self.system], "--model-name": self.model_name,
                 "--model-author": self.model_author}
        for label, values in texts.items():
            for value in values or ():
                if not _is_text(value):
                    found.append(f"{label} {shown(value)!r}: not valid text (undecodable bytes or a lone surrogate)")
                elif (token := special_token_text(value)) is not None:  # every record would be rejected for it
                    found.append(f"{label}: holds special-token text {token!r}, which the tokenizer reads as a "
                                 "control token, not as text; remove it")
        if self.tokenizer is not None and not Path(self.tokenizer).is_dir():
            found.append(f"--tokenizer {shown(self.tokenizer)}: no such folder")
        for check, value in ((check_encoding, self.encoding), (parse_columns, self.columns),
                             (ScoreField, self.score_from)):
            if value is None:
                continue
            try:
                check(value)
            except SwiftkitError as exc:
                found.append(str(exc))
        return found

    def validate(self) -> None:
        """Raise :class:`PrepOptionsError` listing every problem, one per line; nothing when the options are usable."""
        found = self.problems()
        if found:
            raise PrepOptionsError(found)


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
