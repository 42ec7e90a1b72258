"""Convert every known source found under --src-dir into --out/<source>/ (what `make prep` runs).

  swiftkit prep-all --src-dir datasets_prep/samples --out data
  make prep SRC_DIR=~/downloads DATA_DIR=data     # ~/downloads/muice, ~/downloads/medical_r1, ...

Each subfolder of --src-dir named after a source (muice, fortune, medical_r1, actions) is converted with that
source's defaults (any other subfolder is reported on stderr, one line each, not skipped silently); other options
(--seed, --val-ratio, --max-length) apply to all. Scores are placeholders unless --score-from SOURCE=FIELD names a
source's own rating (repeatable), e.g.

  make prep SRC_DIR=~/downloads ARGS="--score-from medical_r1=metrics.quality_f1"

(the bundled medical_r1 samples are not all rated, so the default `make prep` keeps placeholders).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Callable, Sequence

from swiftkit.cmd_prep import record_bar, summary_line
from swiftkit.errors import SwiftkitError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src-dir", default="datasets_prep/samples",
                        help="folder holding one subfolder per source (default datasets_prep/samples)")
    parser.add_argument("--out", default="data", help="output root (default data)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--val-ratio", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--sources", nargs="*", help="only these sources (default: every known one present)")
    parser.add_argument("--score-from", action="append", default=[], metavar="SOURCE=FIELD",
                        help="take SOURCE's scores from FIELD of each raw record (see `swiftkit prep --help`); "
                             "repeatable")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


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


def run(args: argparse.Namespace) -> int:
    from datasets_prep.interrupt import Interrupted, stop_on_signals
    from datasets_prep.oserrors import shown
    from datasets_prep.prep_all import prep_all, skipped_folders, source_names

    src_dir = Path(args.src_dir)
    if not args.sources:  # before any error: a download with only misnamed folders says so
        for line in skipped_folders(src_dir):
            print(f"swiftkit prep-all: {line}", file=sys.stderr, flush=True)
    names = source_names(src_dir, args.sources)
    fields = score_fields(args.score_from, names)

    def options(name: str) -> dict:
        return dict(seed=args.seed, val_ratio=args.val_ratio, max_length=args.max_length,
                    score_from=fields.get(name))

    with contextlib.ExitStack() as bar:
        def progress_for(name: str) -> Callable[[int], None]:
            bar.close()  # the previous source's bar
            return bar.enter_context(record_bar(f"prep {name}"))

        try:
            with stop_on_signals():  # SIGINT/SIGTERM unwind like an error: temp files removed, locks released
                for done in prep_all(src_dir, args.out, names, options,
                                     None if args.no_progress else progress_for):
                    bar.close()
                    print(summary_line(done.manifest, shown(done.out)), flush=True)
        except Interrupted as stop:
            bar.close()
            print(f"swiftkit prep-all: {stop}; no partial output left in {shown(args.out)}", file=sys.stderr)
            return stop.exit_code
    return 0
