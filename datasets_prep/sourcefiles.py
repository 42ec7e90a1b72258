"""Stream raw records out of JSON Lines, JSON array, CSV and Parquet files.

Each file yields, in order, either ``(line, raw, obj)`` (raw is the line's bytes for JSON Lines, text otherwise) for a record that parsed, or a ``Reject``
for one that did not (invalid UTF-8, invalid JSON). A UTF-8 BOM and CRLF line ends are accepted.
Blank lines in JSON Lines are skipped and not counted as records. ``line`` is the 1-based line number in
the file (for a JSON array: the line where the element starts; for CSV: the line where the row ends; for
Parquet: the 1-based row number).

Nothing here holds a whole JSONL/CSV/Parquet file in memory; a JSON array is parsed as one text
(that is how those files are published, and they are small).
"""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from datasets_prep import fastjson
from datasets_prep.records import Reject
from swiftkit.atomic import sha256_file
from swiftkit.errors import SwiftkitError

RawRecord = tuple[int, Union[str, bytes], Any]
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
_BOM = b"\xef\xbb\xbf"
_BLOCK = 1 << 20


def list_data_files(root: Path) -> list[Path]:
    """A file, or every data file under a folder (sorted, recursive, hidden files skipped)."""
    if root.is_file():
        return [root]
    if not root.exists():
        raise SwiftkitError(f"{root}: no such file or folder")
    files = sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in SUFFIXES and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise SwiftkitError(f"{root}: no data files (looked for {', '.join(SUFFIXES)})")
    return files


def iter_file(path: Path, label: str | None = None,
              digests: Optional[dict[str, str]] = None) -> Iterator[Union[RawRecord, Reject]]:
    """Raw records of one file; ``label`` is the file name written into rejects (default: the path).

    With ``digests``, the file's sha256 is stored there under ``label`` once the file has been read.
    """
    name = label or str(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise SwiftkitError(f"{path}: unsupported file type '{suffix}' (use {', '.join(SUFFIXES)})")
    if suffix in (".json", ".jsonl"):
        with open(path, "rb") as fh:
            head = fh.read(4096).lstrip(_BOM).lstrip()
        if not head.startswith(b"["):
            yield from _iter_jsonl(path, name, digests)
            return
        yield from _iter_json_array(path, name)
    elif suffix == ".csv":
        yield from _iter_csv(path, name)
    else:
        yield from _iter_parquet(path, name)
    if digests is not None:  # small formats: hash the file once it has been read
        digests[name] = sha256_file(path)


def _iter_jsonl(path: Path, name: str, digests: Optional[dict[str, str]] = None) -> Iterator[Union[RawRecord, Reject]]:
    """The hot path: read 1 MiB blocks (hashed on the way when ``digests`` is given), split them into lines,
    parse each line's bytes directly; decode and explain only lines that fail."""
    loads, error = fastjson.loads, fastjson.DecodeError
    sha = hashlib.sha256() if digests is not None else None
    lineno = 0
    rest = b""
    with open(path, "rb") as fh:
        while True:
            block = fh.read(_BLOCK)
            if sha is not None:
                sha.update(block)
            if not block:
                lines = [rest] if rest else []
            else:
                if lineno == 0 and not rest and block.startswith(_BOM):
                    block = block[3:]
                lines = (rest + block).split(b"\n")
                rest = lines.pop()
            for data in lines:
                lineno += 1
                try:
                    obj = loads(data)
                except error:
                    data = data.rstrip(b"\r")
                    if not data.strip():  # blank lines are not records
                        continue
                    yield Reject(name, lineno, fastjson.explain(data), data.decode("utf-8", "replace"))
                    continue
                yield lineno, data, obj
            if not block:
                break
    if digests is not None and sha is not None:
        digests[name] = sha.hexdigest()


def _has_surrogates(value: Any) -> bool:
    """True where a decoded string carries bytes that were not valid UTF-8 (surrogateescape)."""
    if isinstance(value, str):
        return any("\udc80" <= ch <= "\udcff" for ch in value)
    if isinstance(value, dict):
        return any(_has_surrogates(k) or _has_surrogates(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogates(v) for v in value)
    return False


def _clean(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _iter_json_array(path: Path, name: str) -> Iterator[Union[RawRecord, Reject]]:
    text = path.read_bytes().removeprefix(_BOM).decode("utf-8", "surrogateescape")
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    lineno, counted_to = 1, 0

    def skip(p: int) -> int:
        while p < len(text) and text[p] in " \t\r\n":
            p += 1
        return p

    pos = skip(pos)
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        lineno += text.count("\n", counted_to, pos)
        counted_to = pos
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise SwiftkitError(
                f"{name}:{exc.lineno}: invalid JSON array ({exc.msg} at column {exc.colno}); records after it cannot be read"
            ) from None
        raw = text[pos:end]
        if _has_surrogates(obj):
            yield Reject(name, lineno, "invalid UTF-8", _clean(raw))
        else:
            yield lineno, raw, obj
        pos = skip(end)
        if pos < len(text) and text[pos] == ",":
            pos = skip(pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            return
        lineno += text.count("\n", counted_to, pos)
        raise SwiftkitError(f"{name}:{lineno}: invalid JSON array (expected ',' or ']'); records after it cannot be read")


def _iter_csv(path: Path, name: str) -> Iterator[Union[RawRecord, Reject]]:
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            lineno = reader.line_num
            raw = json.dumps(row, ensure_ascii=False)
            if _has_surrogates(row):
                yield Reject(name, lineno, "invalid UTF-8", _clean(raw))
                continue
            if None in row:  # more cells than header columns
                yield Reject(name, lineno, f"row has {len(reader.fieldnames or []) + len(row[None])} cells, header has {len(reader.fieldnames or [])}", raw)
                continue
            yield lineno, raw, row


def _iter_parquet(path: Path, name: str) -> Iterator[Union[RawRecord, Reject]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise SwiftkitError(f"{name}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    row = 0
    for batch in pf.iter_batches(batch_size=1024):
        for obj in batch.to_pylist():
            row += 1
            yield row, json.dumps(obj, ensure_ascii=False, default=str), obj
