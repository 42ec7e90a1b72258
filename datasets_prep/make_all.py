"""`make prep`: convert every known source found under --src-dir into --out/<source>/.

  python -m datasets_prep.make_all --src-dir datasets_prep/samples --out data
  make prep SRC_DIR=~/downloads DATA_DIR=data     # ~/downloads/muice, ~/downloads/medical_r1, ...

Each subfolder of --src-dir named after a source (muice, fortune, medical_r1, actions) is converted with that
source's defaults (any other subfolder is reported on stderr, one line each, not skipped silently); other options (--seed, --val-ratio, --max-length) apply to all. Scores are placeholders
unless --score-from SOURCE=FIELD names a source's own rating (repeatable), e.g.

  make prep SRC_DIR=~/downloads ARGS="--score-from medical_r1=metrics.quality_f1"

(the bundled medical_r1 samples are not all rated, so the default `make prep` keeps placeholders).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from datasets_prep.errors import SwiftkitError


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m datasets_prep.make_all", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src-dir", default="datasets_prep/samples", help="folder holding one subfolder per source")
    parser.add_argument("--out", default="data", help="output root (default data)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--val-ratio", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--sources", nargs="*", help="only these sources (default: every known one present)")
    parser.add_argument("--score-from", action="append", default=[], metavar="SOURCE=FIELD",
                        help="take SOURCE's scores from FIELD of each raw record (see `swiftkit prep --help`); "
                             "repeatable")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def score_fields(pairs: Sequence[str], names: Sequence[str]) -> dict[str, str]:
    """``SOURCE=FIELD`` pairs as {source: field}; a source that is not converted in this run is an error."""
    fields: dict[str, str] = {}
    for pair in pairs:
        name, sep, field = pair.partition("=")
        if not sep or not name or not field:
            raise SwiftkitError(f"--score-from {pair!r}: expected SOURCE=FIELD, e.g. medical_r1=metrics.quality_f1")
        if name not in names:
            raise SwiftkitError(f"--score-from {pair!r}: {name} is not converted in this run ({', '.join(names)})")
        fields[name] = field
    return fields


def unknown_folders(src_dir: Path) -> list[str]:
    """One line per subfolder of ``src_dir`` that `make prep` does not convert (never skipped silently)."""
    from datasets_prep.registry import MAKE_ALL_SOURCES, SOURCES

    from datasets_prep.oserrors import shown

    known = ", ".join(MAKE_ALL_SOURCES)
    lines = []
    try:
        entries = sorted(p for p in src_dir.iterdir() if not p.name.startswith(".") and p.is_dir())
    except OSError:
        return lines  # a folder that cannot be listed fails later, naming it
    for path in entries:
        name = path.name
        if name in MAKE_ALL_SOURCES:
            continue
        if name in SOURCES:
            lines.append(f"make prep: skipping {shown(name)}/ (make prep converts only {known}; "
                         f"run `swiftkit prep {name} --src {shown(path)}`)")
        else:
            lines.append(f"make prep: skipping {shown(name)}/ (no source of that name; known: {known})")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    from datasets_prep.interrupt import Interrupted, stop_on_signals
    from datasets_prep.oserrors import shown

    args = parse_args(argv)
    try:
        with stop_on_signals():  # SIGINT/SIGTERM unwind like an error: temp files removed, locks released
            _make_all(args)
    except SwiftkitError as exc:
        print(f"make prep: error: {exc}", file=sys.stderr)
        return 1
    except Interrupted as stop:
        print(f"make prep: {stop}; no partial output left in {shown(args.out)}", file=sys.stderr)
        return stop.exit_code
    return 0


def _make_all(args: argparse.Namespace) -> None:
    from datasets_prep.cli import summary_line
    from datasets_prep.pipeline import prep
    from datasets_prep.progress import record_bar
    from datasets_prep.registry import MAKE_ALL_SOURCES, get_source

    src_dir = Path(args.src_dir)
    if not src_dir.is_dir():
        raise SwiftkitError(f"--src-dir {src_dir}: no such folder")
    names = args.sources or [n for n in MAKE_ALL_SOURCES if (src_dir / n).exists()]
    if not args.sources:
        for line in unknown_folders(src_dir):
            print(line, file=sys.stderr, flush=True)
    for name in names:
        get_source(name)
    if not names:
        raise SwiftkitError(f"--src-dir {src_dir}: no subfolder named after a source ({', '.join(MAKE_ALL_SOURCES)})")
    fields = score_fields(args.score_from, names)
    for name in names:
        out = Path(args.out) / name
        options = dict(seed=args.seed, val_ratio=args.val_ratio, max_length=args.max_length,
                       score_from=fields.get(name))
        if args.no_progress:
            manifest = prep(name, src_dir / name, out, **options)
        else:
            with record_bar(f"prep {name}") as update:
                manifest = prep(name, src_dir / name, out, progress=update, **options)
        print(summary_line(manifest, str(out)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
