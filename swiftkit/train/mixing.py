"""Data mixed at a ratio (recipe ``data.mix``): the exact row counts, planned through ms-swift's own ``file#N``.

A recipe trains every row of its own files (``data.train``, and ``data.val`` where it is trained on: the *base*) and
adds each ``data.mix`` file at a share of the whole: with B base rows and shares s_i (sum S < 1), the total is
T = B / (1 - S) and file i contributes N_i = round(s_i x T) rows, planned as ``--dataset FILE#N_i``. ms-swift 3.12.6
turns ``#N`` into exactly N rows (``DatasetSyntax.parse``, then ``sample_dataset`` in swift/llm/dataset/utils.py):
N up to the file's rows are drawn without replacement (a permutation); more than that is every row
floor(N / rows) times plus the rest drawn without replacement. The draw uses one ``numpy.random.RandomState``
seeded with ``--data_seed`` (ms-swift's default 42, not ``--seed``) and shared by the files in ``--dataset`` order;
a file without ``#N`` draws nothing. So the counts, and the share they make, are exact and known before training:
``swiftkit plan`` prints them and the run directory records them (``swiftkit_run.json`` ``data_mix``).

Counting reads the files (plan_run does it; :func:`swiftkit.train.plan.plan` stays pure and takes the result).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Optional

from swiftkit.core.errors import SwiftkitError
from swiftkit.train.recipes import MixSpec, Recipe

SAMPLED = re.compile(r"^(?P<path>.+)#(?P<n>\d+)$")
"""ms-swift's ``file.jsonl#50``: 50 records sampled from the file."""

MS_SWIFT_DATA_SEED = 42
"""ms-swift 3.12's default ``--data_seed`` (DataArguments), the seed of every ``#N`` draw unless extra_args sets it."""


def dataset_file(name: str) -> str:
    """The file of a dataset entry, without ms-swift's ``#N`` sampling suffix."""
    match = SAMPLED.match(name)
    return match.group("path") if match else name


def file_rows(path: str) -> int:
    """Records in a JSONL file: its non-blank lines. One-line SwiftkitError when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except OSError as exc:
        why = "no such file (run `make prep`?)" if isinstance(exc, FileNotFoundError) else exc.strerror or str(exc)
        raise SwiftkitError(f"{path}: {why}") from None


def entry_rows(name: str) -> Optional[int]:
    """Rows a ``--dataset`` entry gives training: N for ``file#N``, else the file's records; None when unreadable."""
    match = SAMPLED.match(name)
    if match:
        return int(match.group("n"))
    try:
        return file_rows(name)
    except SwiftkitError:
        return None


@dataclass(frozen=True)
class MixPart:
    """One ``--dataset`` entry of a mixed plan and the rows it gives."""

    file: str
    rows: int
    """Rows this entry contributes to the training set (exact)."""
    available: int
    """Rows in the file."""
    role: Literal["base", "mix"]
    """base: the recipe's own files, every row once (or their own ``#N``); mix: a data.mix file at a share."""
    target: Optional[float] = None
    """The recipe's share for a mix file (None for base files)."""
    entry: str = ""
    """The ``--dataset`` value: the file, or ``file#rows``."""

    @property
    def repeats(self) -> tuple[int, int]:
        """(whole copies of the file, rows drawn once more without replacement): ms-swift's sample_dataset split."""
        return divmod(self.rows, self.available) if self.available else (0, 0)

    def how(self) -> str:
        """How ms-swift takes the rows, in words."""
        if self.entry == self.file:
            return f"all {self.available}"
        whole, rest = self.repeats
        if whole == 0:
            return f"{self.rows} of {self.available} drawn without replacement"
        if rest == 0:
            return f"every row {whole} times"
        return f"every row {whole} times + {rest} drawn without replacement"


@dataclass(frozen=True)
class Mixture:
    """The mixed training set: every ``--dataset`` entry with its exact row count."""

    parts: tuple[MixPart, ...]
    data_seed: int

    @property
    def total(self) -> int:
        return sum(p.rows for p in self.parts)

    @property
    def datasets(self) -> list[str]:
        """The ``--dataset`` values, base files first."""
        return [p.entry for p in self.parts]

    def share(self, part: MixPart) -> float:
        return part.rows / self.total if self.total else 0.0

    def lines(self) -> list[str]:
        """What `swiftkit plan` prints: each entry's rows, share and how ms-swift takes them."""
        width = max(len(p.entry) for p in self.parts)
        out = [f"# data mix: {self.total} rows per epoch (ms-swift draws each file#N with data_seed {self.data_seed})"]
        for p in self.parts:
            target = f", target {p.target:.1%}" if p.target is not None else ""
            out.append(f"#   {p.entry:<{width}}  {p.rows:>7} rows  {self.share(p):6.1%}  ({p.how()}{target})")
        return out

    def to_json(self) -> list[dict[str, object]]:
        """The run directory's record (``swiftkit_run.json`` ``data_mix``): one object per entry."""
        return [{**asdict(p), "share": round(self.share(p), 6), "how": p.how(), "data_seed": self.data_seed}
                for p in self.parts]


def mix_counts(base_rows: int, targets: list[float]) -> list[int]:
    """Rows of each mix file so that each makes its share of the whole: round(s x B / (1 - S))."""
    total = base_rows / (1.0 - sum(targets))
    return [round(s * total) for s in targets]


def resolve_mixture(recipe: Recipe) -> Optional[Mixture]:
    """The recipe's mixture from the files' row counts; None when it mixes nothing. One-line SwiftkitError naming the
    file when one cannot be read, or a share that gives no row."""
    if not recipe.data.mix:
        return None
    parts: list[MixPart] = []
    for name in recipe.trained_files:
        available = file_rows(dataset_file(name))
        rows = entry_rows(name)
        assert rows is not None  # the file was readable just now
        parts.append(MixPart(dataset_file(name), rows, available, "base", entry=name))
    base = sum(p.rows for p in parts)
    if base == 0:
        raise SwiftkitError(f"{recipe.name}: data.mix: the train files hold no rows to mix with")
    counts = mix_counts(base, [m.share for m in recipe.data.mix])
    for i, (m, n) in enumerate(zip(recipe.data.mix, counts)):
        available = file_rows(m.file)
        if available == 0:
            raise SwiftkitError(f"{recipe.name}: data.mix.{i}.file: {m.file} holds no rows")
        if n == 0:
            raise SwiftkitError(f"{recipe.name}: data.mix.{i}.share: {m.share} of {base} base rows rounds to 0 rows")
        parts.append(MixPart(m.file, n, available, "mix", m.share, entry=f"{m.file}#{n}"))
    seed = recipe.extra_args.get("data_seed", MS_SWIFT_DATA_SEED)
    return Mixture(tuple(parts), int(seed))


def absolute_mix(recipe: Recipe) -> list[MixSpec]:
    """``data.mix`` with each file made absolute (the launcher's record does not depend on the cwd)."""
    return [m.model_copy(update={"file": str(Path(m.file).resolve())}) for m in recipe.data.mix]
