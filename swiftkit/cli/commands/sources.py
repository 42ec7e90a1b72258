"""List the dataset sources `swiftkit prep` knows: name, default hub id, what it reads.

  swiftkit sources
  swiftkit sources --system      # also print each default system prompt
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--system", action="store_true", help="print each source's default system prompt")


def run(args: argparse.Namespace) -> int:
    from datasets_prep.registry import SOURCES

    width = max(map(len, SOURCES))
    for src in SOURCES.values():
        hub_id = src.hub_id or "-"
        print(f"{src.name.ljust(width)}  {hub_id:<44}  {src.description}")
        if args.system:
            prompt = src.system if src.system_builder is None else "(built per record: the record's actions, shuffled)"
            print(f"{'':{width}}  system: {prompt!r}")
    return 0
