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

import codecs
import csv
import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from datasets_prep import fastjson, hub
from datasets_prep.atomic import sha256_file
from datasets_prep.errors import SwiftkitError
from datasets_prep.oserrors import os_failure, shown
from datasets_prep.records import Reject

RawRecord = tuple[int, Union[str, bytes], Any]
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
_BOM = b"\xef\xbb\xbf"
_BLOCK = 1 << 20
_TOO_DEEP = object()  # marks a JSON array element nested too deep to parse
_SNIFF = 1 << 16  # bytes of a text file checked for UTF-8 (and for GBK, to hint --encoding) before reading
_UTF8 = ("utf-8", "utf-8-sig")


def check_encoding(encoding: Optional[str]) -> Optional[str]:
    """``--encoding`` as Python's codec name (``None``: UTF-8, BOM accepted); an unknown one is a one-line error."""
    if encoding is None:
        return None
    try:
        info = codecs.lookup(encoding)
    except (LookupError, ValueError):
        raise SwiftkitError(f"--encoding {shown(encoding)}: unknown encoding (e.g. utf-8, gbk, gb18030, "
                            "utf-8-sig)") from None
    if not getattr(info, "_is_text_encoding", True):
        raise SwiftkitError(f"--encoding {shown(encoding)}: not a text encoding")
    return None if info.name in _UTF8 else info.name


def parse_columns(spec: Any) -> Optional[dict[str, str]]:
    """``--columns FROM=TO,...`` as {FROM: TO} (a mapping is taken as it is); a malformed one is a one-line error."""
    if spec is None or isinstance(spec, dict):
        return spec or None
    mapping: dict[str, str] = {}
    for pair in str(spec).split(","):
        old, sep, new = (part.strip() for part in pair.partition("="))
        if not sep or not old or not new:
            raise SwiftkitError(f"--columns {shown(spec)!r}: expected FROM=TO[,FROM=TO...], e.g. "
                                "actions=行动,question=问题,answer=回答")
        if old in mapping:
            raise SwiftkitError(f"--columns {shown(spec)!r}: column '{shown(old)}' is renamed twice")
        mapping[old] = new
    if len(set(mapping.values())) != len(mapping):
        raise SwiftkitError(f"--columns {shown(spec)!r}: two columns are renamed to the same name")
    return mapping


def _looks_gbk(sample: bytes) -> bool:
    """Whether ``sample`` (not valid UTF-8) decodes as GB18030 (GBK's superset), a cut character at the end aside."""
    for cut in range(4):
        try:
            sample[:len(sample) - cut].decode("gb18030")
            return True
        except UnicodeDecodeError:
            continue
    return False


def sniff_utf8(path: Path, name: str) -> None:
    """Refuse, with one line, a text file whose start is not UTF-8 but reads as GBK: what Excel saves a CSV as on
    Chinese Windows. Only the first 64 KiB are checked (a stray bad byte later is that record's reject)."""
    with open(path, "rb") as fh:
        sample = fh.read(_SNIFF)
    try:
        sample.decode("utf-8")
        return
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data" and exc.end == len(sample) and len(sample) == _SNIFF:
            return  # a character cut by the sample's end
        start = exc.start
    if not _looks_gbk(sample):
        return  # not GBK either: the bad records are rejects, the rest is kept
    raise SwiftkitError(f"{name}: not valid UTF-8 (byte 0x{sample[start]:02x} at offset {start}); it looks like GBK, "
                        "which Excel writes on Chinese Windows: pass --encoding gbk")


def list_data_files(root: Path) -> list[Path]:
    """A file, or every data file under a folder (sorted, recursive, hidden entries skipped, links followed while
    they stay inside the folder).

    Nothing under the folder is left out silently (that would be data loss): a folder that cannot be listed, an
    entry that cannot be looked at (a broken link) and one that is neither a file nor a folder (a FIFO, a socket,
    a device) are each an error naming the path. A link to a data file or a folder that really lies outside the
    folder is an error too, before anything is read (prep reads what ``--src`` holds, never what a link in it points
    at elsewhere; a Hugging Face cache snapshot's links into its own repo folder are inside, see
    :func:`datasets_prep.hub.link_boundary`).
    """
    if not os.path.lexists(root):
        raise SwiftkitError(f"{shown(root)}: no such file or folder")
    top = _stat(root)
    if stat.S_ISREG(top.st_mode):
        return [root]
    boundary = hub.link_boundary(Path(os.path.realpath(root)))
    files = []
    seen = {(top.st_dev, top.st_ino)}
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as entries:
                names = [(entry.name, entry.is_symlink()) for entry in entries if not entry.name.startswith(".")]
        except OSError as exc:
            raise os_failure(folder, "read the folder", exc) from None
        for name, link in names:
            path = folder / name
            st = _stat(path)
            is_dir = stat.S_ISDIR(st.st_mode)
            if not is_dir and path.suffix.lower() not in SUFFIXES:
                continue  # not data: never read, wherever it points
            if link:  # entries of a folder inside the boundary are inside it too; only a link can lead out
                real = Path(os.path.realpath(path))
                if real != boundary and boundary not in real.parents:
                    raise SwiftkitError(f"{shown(path)}: a symbolic link to {shown(real)}, outside --src "
                                        f"{shown(root)}; prep reads only what lies inside --src: copy it in, or "
                                        "pass it as --src itself")
            if is_dir:
                if (st.st_dev, st.st_ino) not in seen:  # a link back to a folder already listed adds nothing
                    seen.add((st.st_dev, st.st_ino))
                    folders.append(path)
            else:
                files.append(path)
    if not files:
        raise SwiftkitError(f"{shown(root)}: no data files (looked for {', '.join(SUFFIXES)})")
    return sorted(files)


_SPECIAL = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"))


def _stat(path: Path) -> os.stat_result:
    """``os.stat`` (links followed) of a file or folder; anything else is a one-line error naming it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise SwiftkitError(f"{shown(path)}: broken symbolic link (its target does not exist)") from None
        raise SwiftkitError(f"{shown(path)}: no such file or folder") from None
    except OSError as exc:
        raise os_failure(path, "read", exc) from None
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return st
    kind = next((what for test, what in _SPECIAL if test(st.st_mode)), "not a regular file")
    raise SwiftkitError(f"{shown(path)}: {kind}, not a file or folder; prep reads only files and folders, "
                        "move it out of --src")


def iter_file(path: Path, label: str | None = None, digests: Optional[dict[str, str]] = None, *,
              encoding: Optional[str] = None,
              columns: Optional[dict[str, str]] = None) -> Iterator[Union[RawRecord, Reject]]:
    """Raw records of one file; ``label`` is the file name written into rejects (default: the path).

    With ``digests``, the file's sha256 is stored there under ``label`` once the file has been read.
    ``encoding`` (from ``check_encoding``; ``None`` = UTF-8) is how CSV/JSON/JSONL text is decoded; without it, a
    file that is not UTF-8 but reads as GBK is a one-line error hinting ``--encoding gbk``. ``columns`` renames
    fields ({FROM: TO}) before any reader sees them: CSV and Parquet rename their header once, JSON objects are
    renamed per record; a FROM that the file never has is a one-line error naming the file and its columns.
    """
    name = label or shown(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise SwiftkitError(f"{shown(path)}: unsupported file type '{shown(suffix)}' (use {', '.join(SUFFIXES)})")
    try:  # an OSError here is about this one file: one line naming it
        if suffix != ".parquet" and encoding is None:
            sniff_utf8(path, name)
        if suffix in (".json", ".jsonl"):
            array = encoding is None and _first_byte(path) == b"["
            if encoding is not None:
                records = _iter_json_text(path, name, encoding)
            elif not array:
                records = _iter_jsonl(path, name, digests)
            else:
                records = _iter_json_array(path, name)
            yield from (records if columns is None else _rename_json(records, name, columns))
            if encoding is None and not array:
                return  # JSON Lines hashed its blocks on the way
        elif suffix == ".csv":
            yield from _iter_csv(path, name, encoding, columns)
        else:
            yield from _iter_parquet(path, name, columns)
        if digests is not None:  # small formats: hash the file once it has been read
            digests[name] = sha256_file(path)
    except OSError as exc:
        raise os_failure(path, "read", exc) from None


def _first_byte(path: Path) -> bytes:
    """The first byte of ``path`` after a UTF-8 BOM and any amount of whitespace (``b""`` when there is none): ``[``
    makes a ``.json``/``.jsonl`` file a JSON array, anything else JSON Lines. Reads on until it finds one, so
    leading whitespace of any length cannot make an array look like JSON Lines."""
    with open(path, "rb") as fh:
        block = fh.read(_SNIFF).removeprefix(_BOM)
        while block:
            rest = block.lstrip()
            if rest:
                return rest[:1]
            block = fh.read(_SNIFF)
    return b""


def _missing_columns(name: str, columns: dict[str, str], have: Any, what: str = "columns") -> SwiftkitError:
    missing = [old for old in columns if old not in have]
    listed = ", ".join(shown(str(c)) for c in have) or "none"
    return SwiftkitError(f"--columns: {name} has no column {', '.join(repr(shown(m)) for m in missing)} "
                         f"({what}: {listed})")


def _renamed_header(name: str, header: list[str], columns: dict[str, str]) -> list[str]:
    """A tabular file's header with --columns applied, checked: every FROM present, no name twice after it."""
    if any(old not in header for old in columns):
        raise _missing_columns(name, columns, header)
    renamed = [columns.get(c, c) for c in header]
    clash = next((c for c in renamed if renamed.count(c) > 1), None)
    if clash is not None:
        raise SwiftkitError(f"--columns: {name} would have two columns named '{shown(clash)}' (it already has one; "
                            f"columns: {', '.join(map(shown, header))})")
    return renamed


def _rename_json(records: Iterator[Union[RawRecord, Reject]], name: str,
                 columns: dict[str, str]) -> Iterator[Union[RawRecord, Reject]]:
    """JSON objects with their top-level keys renamed; a FROM no record of the file has is an error at its end."""
    seen: set[str] = set()
    keys: dict[str, None] = {}
    wanted = set(columns)
    for item in records:
        if item.__class__ is not Reject and item[2].__class__ is dict:
            line, raw, obj = item
            if len(keys) < 50:
                keys.update(dict.fromkeys(obj))
            if not wanted.isdisjoint(obj):
                seen.update(wanted.intersection(obj))
                obj = {columns.get(k, k): v for k, v in obj.items()}
                item = (line, raw, obj)
        yield item
    if seen != wanted:
        raise _missing_columns(name, {c: columns[c] for c in columns if c not in seen}, list(keys),
                               "keys its records have")


def _iter_jsonl(path: Path, name: str, digests: Optional[dict[str, str]] = None) -> Iterator[Union[RawRecord, Reject]]:
    """The hot path: read 1 MiB blocks (hashed on the way when ``digests`` is given), split them into lines,
    parse each line's bytes directly; decode and explain only lines that fail."""
    loads, error = fastjson.loads, fastjson.DecodeError
    sha = hashlib.sha256() if digests is not None else None
    lineno = 0
    rest = b""
    with open(path, "rb") as fh:
        while True:
            block = fh.read(_SNIFF)
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


def _iter_json_text(path: Path, name: str, encoding: str) -> Iterator[Union[RawRecord, Reject]]:
    """JSON Lines or a JSON array in a non-UTF-8 encoding (``--encoding gbk``): decoded as text, then read as
    UTF-8 like any other (bytes the encoding cannot decode are that record's reject)."""
    with open(path, "rb") as fh:
        data = fh.read()
    text = data.decode(encoding, "surrogateescape")
    if text.lstrip("\ufeff \t\r\n").startswith("["):
        yield from _iter_json_array(path, name, text=text, encoding=encoding)
        return
    loads, error = fastjson.loads, fastjson.DecodeError
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if lineno == 1:
            line = line.lstrip("\ufeff")
        if not line.strip():
            continue
        if (reason := _bad_text(line, encoding)) is not None:
            yield Reject(name, lineno, reason, _clean(line))
            continue
        encoded = line.encode("utf-8")
        try:
            obj = loads(encoded)
        except error:
            yield Reject(name, lineno, fastjson.explain(encoded), line)
            continue
        yield lineno, encoded, obj


_SURROGATE = re.compile("[\ud800-\udfff]")


def _bad_text(value: Any, encoding: str = "UTF-8") -> Optional[str]:
    """Why a parsed record's text is not valid Unicode, or ``None``: bytes that were not ``encoding`` (decoded with
    surrogateescape) or a lone surrogate (a ``\\ud800`` escape). Iterative: a record nested as deep as the parser
    allows must not overflow the stack here."""
    stack = [value]
    while stack:
        item = stack.pop()
        if item.__class__ is str:
            if not item.isascii():
                found = _SURROGATE.search(item)
                if found:
                    char = found.group()
                    return f"invalid {encoding}" if "\udc80" <= char <= "\udcff" else \
                        f"lone surrogate \\u{ord(char):04x} (not valid Unicode)"
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _clean(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _value_end(text: str, pos: int) -> int:
    """Where the array or object starting at ``pos`` ends, found by matching brackets outside strings, without
    parsing it (for one nested too deep to parse); -1 when it does not end."""
    depth = 0
    for token in _BRACKETS.finditer(text, pos):
        char = token.group()[0]
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                return token.end()
    return -1


_BRACKETS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def _iter_json_array(path: Path, name: str, text: Optional[str] = None,
                     encoding: str = "UTF-8") -> Iterator[Union[RawRecord, Reject]]:
    if text is None:
        with open(path, "rb") as fh:
            text = fh.read().removeprefix(_BOM).decode("utf-8", "surrogateescape")
    text = text.removeprefix("\ufeff")
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
        except RecursionError:  # this record only: find its end without parsing it, reject it, go on
            obj, end = _TOO_DEEP, _value_end(text, pos)
            if end < 0:
                raise SwiftkitError(f"{name}:{lineno}: invalid JSON array (a record nested too deep to parse does "
                                    "not end); records after it cannot be read") from None
        raw = text[pos:end]
        if obj is _TOO_DEEP:
            yield Reject(name, lineno, "invalid JSON: nested too deep to parse", _clean(raw))
        elif (reason := _bad_text(obj, encoding)) is not None:
            yield Reject(name, lineno, reason, _clean(raw))
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


def _iter_csv(path: Path, name: str, encoding: Optional[str] = None,
              columns: Optional[dict[str, str]] = None) -> Iterator[Union[RawRecord, Reject]]:
    with open(path, encoding=encoding or "utf-8-sig", errors="surrogateescape", newline="") as fh:
        if encoding is not None:  # a BOM some tools write even before non-UTF-8 text
            if fh.read(1) != "\ufeff":
                fh.seek(0)
        reader = csv.DictReader(fh)
        if columns is not None:
            reader.fieldnames = _renamed_header(name, list(reader.fieldnames or []), columns)
        for row in reader:
            lineno = reader.line_num
            raw = json.dumps(row, ensure_ascii=False)
            if (reason := _bad_text(row, encoding or "UTF-8")) is not None:
                yield Reject(name, lineno, reason, _clean(raw))
                continue
            if None in row:  # more cells than header columns
                yield Reject(name, lineno, f"row has {len(reader.fieldnames or []) + len(row[None])} cells, header has {len(reader.fieldnames or [])}", raw)
                continue
            yield lineno, raw, row


def _iter_parquet(path: Path, name: str, columns: Optional[dict[str, str]] = None) -> Iterator[Union[RawRecord, Reject]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except OSError:
        raise  # the file cannot be read at all: iter_file names it
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise SwiftkitError(f"{name}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    names = None
    if columns is not None:
        names = _renamed_header(name, list(pf.schema_arrow.names), columns)
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=1024):
            if names is not None:
                batch = batch.rename_columns(names)
            for obj in batch.to_pylist():
                row += 1
                yield row, json.dumps(obj, ensure_ascii=False, default=str), obj
    except pa.ArrowException as exc:
        if isinstance(exc, OSError):
            raise
        raise SwiftkitError(f"{name}: not a readable Parquet file after row {row} ({type(exc).__name__}: {exc}); "
                            "rows after it cannot be read") from None
