"""`make prep`: convert every known source found under --src-dir into --out/<source>/.

  python -m datasets_prep.make_all --src-dir datasets_prep/samples --out data
  make prep SRC_DIR=~/downloads DATA_DIR=data     # ~/downloads/muice, ~/downloads/medical_r1, ...

Each subfolder of --src-dir named after a source (muice, fortune, medical_r1, actions) is converted with that
source's defaults; other options (--seed, --val-ratio, --max-length) apply to all.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from swiftkit.errors import SwiftkitError


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m datasets_prep.make_all", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src-dir", default="datasets_prep/samples", help="folder holding one subfolder per source")
    parser.add_argument("--out", default="data", help="output root (default data)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--val-ratio", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--sources", nargs="*", help="only these sources (default: every known one present)")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        from datasets_prep.cli import summary_line
        from datasets_prep.pipeline import prep
        from datasets_prep.progress import record_bar
        from datasets_prep.registry import MAKE_ALL_SOURCES, get_source

        src_dir = Path(args.src_dir)
        if not src_dir.is_dir():
            raise SwiftkitError(f"--src-dir {src_dir}: no such folder")
        names = args.sources or [n for n in MAKE_ALL_SOURCES if (src_dir / n).exists()]
        for name in names:
            get_source(name)
        if not names:
            raise SwiftkitError(f"--src-dir {src_dir}: no subfolder named after a source ({', '.join(MAKE_ALL_SOURCES)})")
        for name in names:
            out = Path(args.out) / name
            options = dict(seed=args.seed, val_ratio=args.val_ratio, max_length=args.max_length)
            if args.no_progress:
                manifest = prep(name, src_dir / name, out, **options)
            else:
                with record_bar(f"prep {name}") as update:
                    manifest = prep(name, src_dir / name, out, progress=update, **options)
            print(summary_line(manifest, str(out)), flush=True)
    except SwiftkitError as exc:
        print(f"make prep: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
