"""File output and identity: atomic writes (temp file in the same folder, fsync, rename over the target: an
interrupted run leaves the old file or none, never a half-written one) and the sha256 every manifest records.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; on clean exit it replaces ``path``, on error it is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _temp_affixes(target)
    fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding, newline=None if binary else "\n") as handle:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make every output private to its writer
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _temp_affixes(target: Path) -> tuple[str, str]:
    return f".{target.name}.", ".tmp"


def remove_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temp files ``atomic_open`` left beside ``path`` (its process was killed: SIGKILL, power loss).

    Only for a caller that knows no other process is writing ``path`` (it holds a lock on the folder).
    Returns the files removed.
    """
    target = Path(path)
    prefix, suffix = _temp_affixes(target)
    size = len(prefix) + 8 + len(suffix)  # mkstemp's names: prefix, 8 random characters, suffix
    removed = []
    with os.scandir(target.parent) as entries:
        names = [e.name for e in entries
                 if len(e.name) == size and e.name.startswith(prefix) and e.name.endswith(suffix)]
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target.parent / name)
            removed.append(target.parent / name)
    return removed


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Stable, diffable JSON (``json_text``) written atomically."""
    write_text(path, json_text(data))


def json_text(data: Any) -> str:
    """Stable, diffable JSON: sorted keys, 2-space indent, UTF-8 kept readable, trailing newline."""
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
