"""``--out`` for one prep: kept apart from ``--src``, locked against a second prep, written all or nothing.

- Apart: ``--out`` may not be ``--src``, lie inside it (the next run would read the outputs as input) or hold it
  (or any file read from it): the outputs would replace the source. Checked on the real paths (symlinks resolved)
  before anything is written.
- Locked: ``fcntl.flock`` on ``OUT/.prep.lock``, holding the holder's pid. A second prep into the same ``--out``
  fails at once naming that pid, and the first finishes intact. The OS drops the lock when its process dies, so it
  is never stale; the file is removed on exit. The lock is opened without following a link (``O_NOFOLLOW``) and
  only a file prep could have made (regular, one name, empty or a pid) is truncated: a link or a foreign file named
  ``.prep.lock`` is refused with one line, its target untouched. Temp files a killed (SIGKILL) prep left are
  removed once locked.
- All or nothing: each output is written to a temp file beside it (``datasets_prep.atomic``); ``commit()`` syncs them
  all, then renames them over the old files in order, ``manifest.json`` last, with stop signals (``interrupt.held``)
  waiting until the renames are done. A stale manifest is removed first, so a manifest beside the data means the run finished.
- Every OS error is one line naming the path (``SwiftkitError``).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path
from types import TracebackType
from typing import IO, Any, ContextManager, Iterable, Optional

from datasets_prep.atomic import atomic_open, remove_temps
from datasets_prep.errors import SwiftkitError
from datasets_prep.interrupt import held
from datasets_prep.oserrors import os_failure, shown

LOCK_NAME = ".prep.lock"
OUTPUT_NAMES = ("train.jsonl", "val.jsonl", "rejects.jsonl", "lengths.png", "manifest.json")


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_apart(src: str, src_path: Path, inputs: Iterable[Path], out: Path) -> None:
    """Refuse an ``--out`` that is, or is inside, ``--src``, or that holds ``--src`` or any file read from it."""
    out_real, src_real = _real(out), _real(src_path)
    where = f"--out {shown(out)}"
    if out_real == src_real:
        raise SwiftkitError(f"{where} is --src {shown(src)}: the outputs would replace the source files; "
                            "choose another --out")
    if src_path.is_dir() and _within(out_real, src_real):
        raise SwiftkitError(f"{where} is inside --src {shown(src)}: the outputs would be read as input by the next "
                            "run; choose an --out outside it")
    for path in (src_path, *inputs):
        if _within(_real(path), out_real):
            what = f"--src {shown(src)} is" if path == src_path else f"--src {shown(src)} reads {shown(path)}, which is"
            raise SwiftkitError(f"{what} inside {where}: the outputs could replace the source files; "
                                "choose an --out outside it")


class OutputDir:
    """``with OutputDir(out) as out_dir:`` create, lock and clean ``out``; ``open()`` outputs; ``commit()`` them.

    Leaving the block without ``commit()`` (an error, an interrupt) removes every temp file and keeps the old
    outputs; the lock is released either way.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_fd: Optional[int] = None
        self._files: list[tuple[Path, ContextManager[IO[Any]], IO[Any]]] = []

    def __enter__(self) -> "OutputDir":
        self._create()
        self._lock()
        try:
            with contextlib.suppress(FileNotFoundError):
                (self.path / "manifest.json").unlink()  # a stale manifest must never describe new data
            for name in OUTPUT_NAMES:
                remove_temps(self.path / name)
        except OSError as exc:
            self._unlock()
            raise os_failure(f"--out {self.path}", "write there", exc) from None
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        try:
            self._discard(exc)
        finally:
            self._unlock()

    def _discard(self, exc: Optional[BaseException]) -> None:
        """Remove the temp files not committed (all of them, unless commit() failed half way)."""
        reason = exc if exc is not None else _NotCommitted()
        while self._files:
            _, cm, _ = self._files.pop()
            with contextlib.suppress(OSError):  # closing retries the failed write (a full disk): the temp goes anyway
                cm.__exit__(type(reason), reason, reason.__traceback__)

    def _create(self) -> None:
        where = f"--out {self.path}"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise SwiftkitError(f"{shown(where)}: not a folder (a file is in the way)") from None
        except OSError as exc:
            raise os_failure(where, "create the folder", exc) from None

    def _lock(self) -> None:
        """Take the lock. The file is removed by its holder on exit, so the one opened here may be gone by the
        time it is locked: then the lock is on a deleted file, and the open is tried again."""
        lock_path = self.path / LOCK_NAME
        while True:
            try:  # never through a link: the pid written below would overwrite the link's target
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK,
                             0o666)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise SwiftkitError(f"{shown(lock_path)}: a symbolic link, not a prep lock; prep never writes "
                                        "through a link: remove it") from None
                raise os_failure(f"--out {self.path}", "write there", exc) from None
            try:
                foreign = _foreign(fd)
            except OSError as exc:
                os.close(fd)
                raise os_failure(lock_path, "read", exc) from None
            if foreign is not None:
                os.close(fd)
                raise SwiftkitError(f"{shown(lock_path)}: {foreign}, not a prep lock; prep will not overwrite it: "
                                    "remove it")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_pid(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise SwiftkitError(
                        f"--out {shown(self.path)}: another prep (pid {holder}) is writing there; "
                        "wait for it to finish or choose another --out") from None
                raise os_failure(f"--out {self.path}", "lock", exc) from None
            try:
                current = os.lstat(lock_path)
                opened = os.fstat(fd)
                same = (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino)
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._lock_fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            self._unlock()
            raise os_failure(f"--out {self.path}", "write there", exc) from None

    def _unlock(self) -> None:
        if self._lock_fd is None:
            return
        with contextlib.suppress(OSError):  # unlinked while still locked: no other prep can hold this file
            (self.path / LOCK_NAME).unlink()
        os.close(self._lock_fd)
        self._lock_fd = None

    def open(self, name: str, mode: str = "wb") -> IO[Any]:
        """A temp file for ``out/name``; it replaces ``out/name`` at ``commit()``."""
        path = self.path / name
        cm = atomic_open(path, mode)
        try:
            handle = cm.__enter__()
        except OSError as exc:
            raise os_failure(path, "write", exc) from None
        self._files.append((path, cm, handle))
        return handle

    def write(self, name: str, data: bytes) -> None:
        """``data`` as the whole of ``out/name``, at ``commit()``."""
        handle = self.open(name)
        try:
            handle.write(data)
        except OSError as exc:
            raise os_failure(self.path / name, "write", exc) from None

    def commit(self) -> None:
        """Sync every file (a full disk shows up here, before anything is replaced), then rename them in the order
        they were opened. Stop signals wait until the renames are done."""
        for path, _, handle in self._files:
            try:
                handle.flush()
                os.fsync(handle.fileno())
            except OSError as exc:
                raise os_failure(path, "write", exc) from None
        with held():
            while self._files:
                path, cm, _ = self._files.pop(0)
                try:
                    cm.__exit__(None, None, None)
                except OSError as exc:
                    raise os_failure(path, "write", exc) from None


class _NotCommitted(Exception):
    """Thrown into the temp files of an ``OutputDir`` left without ``commit()``, so they are removed."""


def _foreign(fd: int) -> Optional[str]:
    """Why the opened ``.prep.lock`` is not one prep made (so truncating it would destroy someone's data), or
    ``None``: it must be a regular file with one name, empty or holding a pid (a SIGKILLed prep leaves that)."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_nlink > 1:
        return f"a hard link ({st.st_nlink} names for one file)"
    if st.st_size and (st.st_size > 32 or not os.pread(fd, 33, 0).strip().isdigit()):
        return "a file holding other data"
    return None


def _read_pid(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        if text.isdigit():
            return text
    return "unknown"
