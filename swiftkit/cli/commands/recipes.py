"""List the training recipes, one line each (name, model, method, description).

Recipes live in recipes/*.yaml (or the folder named by $SWIFTKIT_RECIPES). `swiftkit show NAME` prints one
resolved; `swiftkit plan NAME` prints the `swift sft` command it becomes. A recipe that does not validate is
listed with its first problem instead of hiding the others.
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from swiftkit.core.errors import SwiftkitError
    from swiftkit.train.recipes import list_recipes, load_recipe

    paths = list_recipes()
    width = max((len(p.stem) for p in paths), default=0)
    bad = 0
    for path in paths:
        try:
            r = load_recipe(path)
        except SwiftkitError as exc:
            bad += 1
            print(f"{path.stem.ljust(width)}  INVALID: {str(exc).splitlines()[0]}")
            continue
        print(f"{r.name.ljust(width)}  {r.description}")
    return 1 if bad else 0
