"""Answers read from the installed ms-swift, kept on disk per install, so a launch need not import ms-swift to ask.

Preflight asks ms-swift two things before anything starts: which model_type and template a model gets (its model
registry) and which fields the method's argument class has (extra_args). Importing ms-swift to ask costs more CPU than
anything else swiftkit does before training (swift -> transformers -> torch: about 5 CPU-seconds; measured with
``make bench ARGS=train``), and the ranks import it again a moment later. The answer depends only on the question,
the installed ms-swift and transformers, and swiftkit's own code that computes it, so :func:`remembered` computes it
once and keeps it under ``cache_root()/stack-answers/`` (``$SWIFTKIT_CACHE``, else ``~/.cache/swiftkit``), keyed by
all of those:

- the question (the caller's JSON ``inputs``);
- each distribution's version, where it is installed, and the size and mtime of its dist-info ``RECORD`` (a
  reinstall or an upgrade rewrites it);
- the source text of the swiftkit modules that compute the answer (``code``).

An ms-swift edited in place under site-packages (no reinstall) is not seen; remove the folder to forget every answer.
Errors are not kept (the next launch asks again), and a cache that cannot be written only costs the import.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

from datasets_prep.atomic import write_json
from datasets_prep.qwen_tokenizer import cache_root

FORMAT = 1
"""Bump when the stored layout changes."""
FOLDER = "stack-answers"
DISTRIBUTIONS = ("ms-swift", "transformers")
"""What an answer about ms-swift depends on besides swiftkit's code (ms-swift registers models by transformers' classes)."""


def _distribution_id(name: str) -> list[Any]:
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return [name, None]
    where = getattr(dist, "_path", None)  # the dist-info folder (a PathDistribution); None for exotic finders
    record = Path(where) / "RECORD" if where is not None else None
    try:
        stat = record.stat() if record is not None else None
    except OSError:
        stat = None
    return [name, dist.version, str(where), stat.st_size if stat else None, stat.st_mtime_ns if stat else None]


def _code_id(modules: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        digest.update(name.encode())
        try:
            digest.update(Path(origin).read_bytes() if origin else b"-")
        except OSError:
            digest.update(b"-")
    return digest.hexdigest()


def answer_path(kind: str, inputs: Any, code: Sequence[str]) -> Path:
    """Where the answer to ``inputs`` about ``kind`` is kept for the installed stack and this swiftkit's ``code``."""
    key = json.dumps([FORMAT, kind, inputs, [_distribution_id(d) for d in DISTRIBUTIONS], _code_id(code)],
                     sort_keys=True, ensure_ascii=False, default=repr)
    return cache_root() / FOLDER / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def remembered(kind: str, inputs: Any, compute: Callable[[], Any], *, code: Sequence[str]) -> Any:
    """``compute()`` (a JSON value) for this question on the installed stack: the kept answer when there is one, else
    computed now and kept. ``inputs`` (JSON) is the whole question; ``code`` names the swiftkit modules whose source
    decides the answer. Exceptions from ``compute`` propagate and nothing is kept."""
    path = answer_path(kind, inputs, code)
    try:
        return json.loads(path.read_text(encoding="utf-8"))["answer"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    answer = json.loads(json.dumps(compute(), ensure_ascii=False))  # the same shape whether computed or read back
    try:
        write_json(path, {"kind": kind, "answer": answer})
    except OSError:
        pass  # a read-only or full cache: the answer stands, the next launch asks again
    return answer
