"""Convert every known source found under --src-dir into --out/<source>/ (what `make prep` runs).

  swiftkit prep-all --src-dir datasets_prep/samples --out data
  make prep SRC_DIR=~/downloads DATA_DIR=data     # ~/downloads/muice, ~/downloads/medical_r1, ...

Each subfolder of --src-dir named after a source (muice, fortune, medical_r1, actions) is converted with that
source's system prompt (any other subfolder is reported on stderr, one line each, not skipped silently). The options
are `swiftkit prep`'s (see `swiftkit prep --help`): --seed, --val-ratio, --max-length, --score-choices,
--single-turn, --keep-duplicates, --over-length and --tokenizer apply to every source; --score-from, --encoding
and --columns belong to one source's files, so they name it (SOURCE=VALUE, repeatable), e.g.

  make prep SRC_DIR=~/downloads ARGS="--score-from medical_r1=metrics.quality_f1 --encoding actions=gbk"

(the bundled medical_r1 samples are not all rated, so the default `make prep` keeps placeholders). --system,
--keep-system, --model-name and --model-author are one source's choice: use `swiftkit prep SOURCE` for those.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Callable, Sequence

from datasets_prep.samples_dir import SAMPLES_DIR
from swiftkit.cli.commands.prep import (
    PER_SOURCE,
    PER_SOURCE_EXAMPLES,
    add_option_arguments,
    prep_options,
    record_bar,
    summary_line,
    tokenizer_folder,
)
from swiftkit.core.errors import SwiftkitError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src-dir", default=str(SAMPLES_DIR),
                        help="folder holding one subfolder per source (default: the bundled samples, "
                        "datasets_prep/samples)")
    parser.add_argument("--out", default="data", help="output root (default data)")
    parser.add_argument("--sources", nargs="*", help="only these sources (default: every known one present)")
    add_option_arguments(parser, per_source=True)


def per_source_values(field: str, pairs: Sequence[str], names: Sequence[str]) -> dict[str, str]:
    """``SOURCE=VALUE`` pairs of option ``field`` as {source: value} (split at the first '='; the last pair for a
    source wins); a source that is not converted in this run is an error."""
    flag = "--" + field.replace("_", "-")
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or not value:
            raise SwiftkitError(f"{flag} {pair!r}: expected SOURCE=VALUE, e.g. {PER_SOURCE_EXAMPLES[field]}")
        if name not in names:
            raise SwiftkitError(f"{flag} {pair!r}: {name} is not converted in this run ({', '.join(names)})")
        values[name] = value
    return values


def run(args: argparse.Namespace) -> int:
    from datasets_prep.interrupt import Interrupted, stop_on_signals
    from datasets_prep.oserrors import shown
    from datasets_prep.prep_all import prep_all, skipped_folders, source_names

    src_dir = Path(args.src_dir)
    if not args.sources:  # before any error: a download with only misnamed folders says so
        for line in skipped_folders(src_dir):
            print(f"swiftkit prep-all: {line}", file=sys.stderr, flush=True)
    names = source_names(src_dir, args.sources)
    given = {field: per_source_values(field, getattr(args, field), names) for field in PER_SOURCE}
    tokenizer = tokenizer_folder(args, "prep-all")
    options = {name: prep_options(args, given, name, tokenizer) for name in names}

    with contextlib.ExitStack() as bar:
        def progress_for(name: str) -> Callable[[int], None]:
            bar.close()  # the previous source's bar
            return bar.enter_context(record_bar(f"prep {name}"))

        try:
            with stop_on_signals():  # SIGINT/SIGTERM unwind like an error: temp files removed, locks released
                for done in prep_all(src_dir, args.out, options,
                                     None if args.no_progress else progress_for):
                    bar.close()
                    print(summary_line(done.manifest, shown(done.out)), flush=True)
        except Interrupted as stop:
            bar.close()
            print(f"swiftkit prep-all: {stop}; no partial output left in {shown(args.out)}", file=sys.stderr)
            return stop.exit_code
    return 0
