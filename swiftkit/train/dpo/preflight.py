"""DPO's preflight checks: every record of the files the run reads is a usable preference pair
(:func:`swiftkit.train.dpo.pairs.pair_problems`: a chosen answer, a rejected one, the two different, one prompt), each
problem as ``file:line: field: problem``. ms-swift would drop such a record with a warning after the model loaded,
or fail on it mid-epoch. Where the pairs came from (their manifest) is shown."""
from __future__ import annotations

import json
from pathlib import Path

from swiftkit.core.errors import SwiftkitError
from swiftkit.core.jsonl import read_lines
from swiftkit.train.checks import Check
from swiftkit.train.dpo.pairs import pair_problems
from swiftkit.train.plan import dataset_file
from swiftkit.train.recipes import Recipe

SHOWN = 10
"""Problems listed one per line; the rest are counted."""


def pair_file_problems(path: Path) -> tuple[int, list[str]]:
    """``(records, problems)`` of one pairs file, each problem ``file:line: field: problem``."""
    try:
        lines = read_lines(path)
    except SwiftkitError as exc:
        return 0, [str(exc)]
    problems = []
    for number, line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{number}: not valid JSON ({exc.msg})")
            continue
        problems += [f"{path}:{number}: {where}: {what}" for where, what in pair_problems(record)]
    return len(lines), problems


def _provenance(path: Path) -> str:
    """``rejected from model 5, curated 2`` from the pairs' manifest (`swiftkit prep-pairs`), or why not known."""
    try:
        counts = json.loads((path.parent / "manifest.json").read_text(encoding="utf-8"))["rejected_from"]
        return "rejected from " + ", ".join(f"{k} {v}" for k, v in counts.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "no prep-pairs manifest: where the rejected answers came from is not recorded"


def dpo_checks(recipe: Recipe) -> list[Check]:
    """One ``dpo pairs`` check per problem (at most :data:`SHOWN`, then a count), or one line saying all are pairs."""
    files = [Path(dataset_file(name)) for name in [*recipe.trained_files, *recipe.held_out_files]]
    total, problems, sources = 0, [], []
    for path in dict.fromkeys(files):
        if not path.is_file():
            continue  # the data check names a missing file
        count, found = pair_file_problems(path)
        total += count
        problems += found
        sources.append(f"{path.name} ({_provenance(path)})")
    if problems:
        out = [Check("dpo pairs", False, p) for p in problems[:SHOWN]]
        if len(problems) > SHOWN:
            out.append(Check("dpo pairs", False, f"... and {len(problems) - SHOWN} more problem(s) in these files"))
        return out
    return [Check("dpo pairs", True, f"{total} pairs, each a chosen and a different rejected answer to one prompt; "
                                     + "; ".join(sources))]
