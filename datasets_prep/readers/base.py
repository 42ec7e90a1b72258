"""Shared reader plumbing: run a per-record converter over files, turning its errors into rejects."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Union

from datasets_prep.oserrors import shown
from datasets_prep.records import Conversation, FieldError, Reject
from datasets_prep.scorefield import ScoreField
from datasets_prep.sourcefiles import iter_file, list_data_files

# A converter maps one parsed record (a dict) to Conversation keyword arguments:
# system, turns and optionally tag / actions. It raises FieldError for a record it cannot use.
Converter = Callable[[dict[str, Any]], dict[str, Any]]
Item = Union[Conversation, Reject]
FileSpec = tuple[Path, str, Optional[str]]  # (path, label written into rejects, forced split or None)


def convert_files(files: Iterable[tuple[Path, str, Optional[str]]], converter: Converter,
                  digests: Optional[dict[str, str]] = None, score_from: Optional[ScoreField] = None, *,
                  encoding: Optional[str] = None, columns: Optional[dict[str, str]] = None) -> Iterator[Item]:
    """``files`` is (path, label written into rejects, forced split or None), read in that order.

    With ``digests``, each file's sha256 is stored there under its label as it is read. With ``score_from``,
    each record's ``score`` is taken from its raw object here (once the converter accepted it), so no reader
    needs to know; a record without a usable score is a Reject naming the field. ``encoding`` and ``columns``
    (``--encoding``, ``--columns``) are applied per file by ``iter_file``, so converters see UTF-8 text and the
    field names they expect.
    """
    for path, label, split in files:
        for item in iter_file(path, label, digests, encoding=encoding, columns=columns):
            if item.__class__ is Reject:
                yield item
                continue
            line, raw, obj = item
            if obj.__class__ is not dict:
                yield Reject(label, line, f"record is a JSON {type(obj).__name__}, expected an object", raw)
                continue
            try:
                fields = converter(obj)
                score = None if score_from is None else score_from.take(obj)
            except FieldError as exc:
                yield Reject(label, line, str(exc), raw)
                continue
            yield Conversation(label, line, raw, fields["system"], fields["turns"], fields.get("tag"), split,
                               fields.get("actions"), score)


def plain_files(src: Path) -> list[tuple[Path, str, Optional[str]]]:
    """Every data file of a file or folder, labelled relative to the folder, split left to the hash."""
    return labelled(src, list_data_files(src))


def labelled(src: Path, files: list[Path], split: Optional[str] = None) -> list[tuple[Path, str, Optional[str]]]:
    """``files`` (from ``list_data_files(src)``) with their labels: the name relative to ``src`` (a file: its name),
    as valid text (undecodable bytes in a name escaped), as rejects and the manifest write it."""
    if files == [src]:
        return [(src, shown(src.name), split)]
    return [(p, shown(p.relative_to(src).as_posix()), split) for p in files]


def pairs_to_turns(pairs: list[tuple[Any, Any]]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for query, response in pairs:
        turns.append({"role": "user", "content": query})
        turns.append({"role": "assistant", "content": response})
    return turns


def history_pairs(obj: dict[str, Any], key: str = "history") -> list[tuple[Any, Any]]:
    """``[[q, a], ...]`` history as pairs; anything else raises FieldError naming the field."""
    history = obj.get(key)
    if history is None:
        return []
    if not isinstance(history, list):
        raise FieldError(f"field '{key}' is {type(history).__name__}, expected a list of [query, response] pairs")
    pairs = []
    for i, pair in enumerate(history):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise FieldError(f"field '{key}[{i}]' is not a [query, response] pair")
        pairs.append((pair[0], pair[1]))
    return pairs


def messages_turns(obj: dict[str, Any], key: str = "messages") -> tuple[Optional[Any], list[dict[str, Any]]]:
    """Split an ms-swift ``messages`` list into (system content or None, the other messages)."""
    messages = obj.get(key)
    if not isinstance(messages, list) or not messages:
        raise FieldError(f"field '{key}' is missing or not a non-empty list")
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
            raise FieldError(f"field '{key}[{i}]' is not a {{role, content}} object")
        out.append({"role": msg["role"], "content": msg["content"]})
    system = None
    if out[0]["role"] == "system":
        system = out.pop(0)["content"]
        if not isinstance(system, str):
            raise FieldError(f"field '{key}[0].content' (system) is not a string")
    return system, out
