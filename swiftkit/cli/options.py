"""Options several commands share, each defined once: the run directory, ``--checkpoint``, ``--backend``, a recipe
and its ``--set`` overrides. A command calls the helper; the flag, its default and its help text live here."""
from __future__ import annotations

import argparse

from swiftkit.stack.backend import BACKEND_HELP, BACKENDS


def add_run(parser: argparse.ArgumentParser) -> None:
    """The positional run directory of the after-training commands, and the one switch that lets it run code."""
    parser.add_argument("run", help="run directory (runs/<recipe>/v<N>)")
    parser.add_argument("--trust-run-code", action="store_true",
                        help="let ms-swift import the Python plugins the run's checkpoint args.json names "
                        "(external_plugins, custom_register_path); without it they are ignored, with a line saying so")


def add_checkpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="last", help="best | last (default) | a checkpoint folder")


def add_backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=list(BACKENDS), help=BACKEND_HELP)


def add_recipe(parser: argparse.ArgumentParser) -> None:
    """The positional recipe of the planning commands."""
    parser.add_argument("recipe", help="recipe name (see `swiftkit recipes`) or path to a recipe YAML")


def add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe field, dotted for sections (e.g. --set lora.rank=32); repeatable")


def add_offline(parser: argparse.ArgumentParser) -> None:
    """``--offline``: the command's hub lookups read the local caches only (swiftkit.cli.main applies it)."""
    parser.add_argument("--offline", action="store_true",
                        help="never reach a model or dataset hub: look in the local caches only, and fail at once "
                        "with one line when a model or dataset is not there (also: HF_HUB_OFFLINE=1, "
                        "MODELSCOPE_OFFLINE=1)")
