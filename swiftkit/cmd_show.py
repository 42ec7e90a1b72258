"""Print a recipe resolved and validated: every field with its default filled in, overrides applied.

examples:
  swiftkit show muice_full
  swiftkit show fortune_lora --set lora.qlora=true

An invalid recipe prints every problem at once, as file:line: field: problem (with a did-you-mean for typos).
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe name or path to a recipe YAML")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field (dotted for sections); repeatable")


def run(args: argparse.Namespace) -> int:
    from swiftkit.recipes import find_recipe, load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    print(f"# {find_recipe(args.recipe)}")
    print(recipe.to_yaml(), end="")
    return 0
