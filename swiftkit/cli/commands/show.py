"""Print a recipe resolved and validated: every field with its default filled in, overrides applied.

examples:
  swiftkit show muice_full
  swiftkit show fortune_lora --set lora.qlora=true

An invalid recipe prints every problem at once, as file:line: field: problem (with a did-you-mean for typos).
"""
from __future__ import annotations

import argparse

from swiftkit.cli import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_recipe(parser)
    options.add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    from swiftkit.train.recipes import find_recipe, load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    print(f"# {find_recipe(args.recipe)}")
    print(recipe.to_yaml(), end="")
    return 0
