"""Convert every known source found under a folder (``SRC_DIR/<source>/`` -> ``OUT/<source>/``): the library half of
`swiftkit prep-all` (`make prep`). :func:`source_names` picks the folders, :func:`skipped_folders` says which are
left out and why, :func:`prep_all` converts each and yields its manifest as it finishes."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Optional, Sequence

from datasets_prep.errors import SwiftkitError
from datasets_prep.options import PrepOptions, PrepOptionsError
from datasets_prep.oserrors import shown


class Converted(NamedTuple):
    source: str
    out: Path
    manifest: dict[str, Any]


def source_names(src_dir: Path, only: Optional[Sequence[str]] = None) -> list[str]:
    """``only`` (each a known source), or every source of ``MAKE_ALL_SOURCES`` with a folder under ``src_dir``."""
    from datasets_prep.registry import MAKE_ALL_SOURCES, get_source

    if not src_dir.is_dir():
        raise SwiftkitError(f"--src-dir {shown(str(src_dir))}: no such folder")
    names = list(only) if only else [n for n in MAKE_ALL_SOURCES if (src_dir / n).exists()]
    for name in names:
        get_source(name)
    if not names:
        raise SwiftkitError(f"--src-dir {shown(str(src_dir))}: no subfolder named after a source "
                            f"({', '.join(MAKE_ALL_SOURCES)})")
    return names


def skipped_folders(src_dir: Path) -> list[str]:
    """One line per subfolder of ``src_dir`` that is not converted (never skipped silently)."""
    from datasets_prep.registry import MAKE_ALL_SOURCES, SOURCES

    known = ", ".join(MAKE_ALL_SOURCES)
    lines: list[str] = []
    try:
        entries = sorted(p for p in src_dir.iterdir() if not p.name.startswith(".") and p.is_dir())
    except OSError:
        return lines  # a folder that cannot be listed fails later, naming it
    for path in entries:
        name = path.name
        if name in MAKE_ALL_SOURCES:
            continue
        if name in SOURCES:
            lines.append(f"skipping {shown(name)}/ (prep-all converts only {known}; "
                         f"run `swiftkit prep {name} --src {shown(str(path))}`)")
        else:
            lines.append(f"skipping {shown(name)}/ (no source of that name; known: {known})")
    return lines


def prep_all(src_dir: str | os.PathLike[str], out: str | os.PathLike[str], options: Mapping[str, PrepOptions],
             progress_for: Optional[Callable[[str], Optional[Callable[[int], None]]]] = None) -> Iterator[Converted]:
    """Convert ``SRC_DIR/<source>`` into ``OUT/<source>`` with ``options[source]`` for each source, in order, yielding
    each result as it finishes. Every source's options are validated before the first is converted (all problems at
    once). ``progress_for(source)``, called just before a source starts, gives its ``progress`` callback (see
    :func:`datasets_prep.pipeline.prep`)."""
    from datasets_prep.pipeline import prep
    from datasets_prep.registry import get_source

    found: dict[str, list[str]] = {}
    for name, opts in options.items():
        get_source(name)
        found[name] = opts.problems()
    common = [p for p in next(iter(found.values()), []) if all(p in ps for ps in found.values())]
    problems = common + [f"{name}: {p}" for name, ps in found.items() for p in ps if p not in common]
    if problems:  # an option all sources share is reported once, a source's own with its name
        raise PrepOptionsError(problems)
    for name, opts in options.items():
        target = Path(out) / name
        progress = progress_for(name) if progress_for is not None else None
        manifest = prep(name, Path(src_dir) / name, target, opts, progress)
        yield Converted(name, target, manifest)
