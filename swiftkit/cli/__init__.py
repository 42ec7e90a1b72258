"""One convention: every `swiftkit` command is ``swiftkit/cli/commands/<command>.py`` (dashes as underscores) with
``add_arguments(parser)`` and ``run(args) -> int``: it parses options, calls library functions, prints. Options that
several commands share are defined once, in :mod:`swiftkit.cli.options`. Library modules never define argparse
parsers and never read sys.argv; long work reports through a callback (eval's answering loop draws its bar only when
its command asks for one).

This module is the route table of those thin subcommands. A command module's docstring is its ``--help``
description. Command modules are imported only when their command runs and import heavy packages inside ``run``,
so ``swiftkit --help`` and ``swiftkit plan`` never pay for torch or ms-swift imports (the same idea as ms-swift's
``swift/cli/main.py`` route table). The modules swiftkit starts as child processes (``swiftkit.train.worker``,
``swiftkit.deploy.deploy_child``, ``swiftkit.deploy.llamacpp``) are process entry points, not commands: they read their own argv.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType
from typing import Sequence


def module_name(command: str) -> str:
    """The module that implements ``command``: ``swiftkit.cli.commands.<command>``, dashes as underscores."""
    return "swiftkit.cli.commands." + command.replace("-", "_")


ROUTES: dict[str, str] = {
    # command: one-line summary for `swiftkit --help`; the code is in module_name(command)
    "prep": "convert a dataset source into ms-swift messages JSONL",
    "prep-all": "convert every source folder under a directory (what `make prep` runs)",
    "prep-pairs": "build DPO preference pairs (chosen: the persona's answer; rejected: a model's own or curated)",
    "sources": "list the dataset sources prep knows",
    "recipes": "list the training recipes",
    "show": "print a recipe, resolved and validated",
    "plan": "print the exact `swift sft` / `swift rlhf` command a recipe becomes",
    "train": "preflight, then run a recipe's training",
    "doctor": "report the installed stack and which shims apply",
    "tiny-model": "build the tiny random Qwen2 used by the smoke run",
    "smoke": "the main job end to end on CPU with the tiny model (what `make smoke` runs)",
    "smoke-grpo": "GRPO end to end on CPU with the tiny model (what `make smoke-grpo` runs)",
    "smoke-dpo": "DPO for a persona end to end on CPU with the tiny model (what `make smoke-dpo` runs)",
    "infer": "run `swift infer` on a trained run",
    "serve": "serve a trained run with `swift deploy` (OpenAI API)",
    "export": "merge LoRA weights or write a GGUF file",
    "check": "post-train checks: eos ids, stop labels, identity probe",
    "eval": "base vs tuned answers side by side, task metrics, an HTML report",
    "preview": "show which tokens of a recipe's records are trained and which masked",
}

EPILOG = """\
typical flow:
  swiftkit prep muice --src path/to/Muice-Dataset --out data/muice
  swiftkit plan muice_full --gpus 8          # see the exact swift sft command
  swiftkit train muice_full                  # preflight, then train
  swiftkit preview muice_full                # which tokens training sees as labels
  swiftkit check runs/muice_full/v1          # eos, stop labels, identity probe
  swiftkit eval runs/muice_full/v1           # base vs tuned, metrics, runs/muice_full/v1/eval/report.html
  swiftkit infer runs/muice_full/v1 --val    # batch inference on the val split

`swiftkit COMMAND --help` explains each command.
"""


def _top_level_help() -> str:
    width = max(len(name) for name in ROUTES)
    lines = ["usage: swiftkit COMMAND [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {summary}" for name, summary in ROUTES.items()]
    return "\n".join(lines) + "\n\n" + EPILOG


def _did_you_mean(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(ROUTES), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def command_parser(name: str) -> tuple[ModuleType, argparse.ArgumentParser]:
    """The module of command ``name`` and its parser; the module's docstring is the ``--help`` description, shown as
    written (RawDescriptionHelpFormatter)."""
    module = importlib.import_module(module_name(name))
    parser = argparse.ArgumentParser(
        prog=f"swiftkit {name}",
        description=(module.__doc__ or ROUTES[name]).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    return module, parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_top_level_help(), end="")
        return 0
    if argv[0] in ("-V", "--version"):
        from swiftkit import __version__

        print(f"swiftkit {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    summary = ROUTES.get(name)
    if summary is None:
        print(f"swiftkit: unknown command '{name}'{_did_you_mean(name)}; see `swiftkit --help`", file=sys.stderr)
        return 2
    module, parser = command_parser(name)
    args = parser.parse_args(rest)
    raise_on_termination()
    trust = _trust_run_code(bool(getattr(args, "trust_run_code", False)))
    if getattr(args, "offline", False):
        trust.callback(_restore_env, go_offline())
    try:
        return int(module.run(args) or 0)
    except Terminated as stop:
        print(f"swiftkit: stopped by signal {stop.signum}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print("swiftkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `swiftkit plan ... | head`: the reader left; say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except SwiftkitError as exc:
        print(f"swiftkit {name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        trust.close()


def _trust_run_code(on: bool):
    """``--trust-run-code`` as the environment the ms-swift children inherit (swiftkit.stack.guards), for this
    command only."""
    import contextlib
    import os

    from swiftkit.stack.guards import TRUST_ENV

    stack = contextlib.ExitStack()
    previous = os.environ.pop(TRUST_ENV, None)
    if on:
        os.environ[TRUST_ENV] = "1"
    stack.callback(lambda: os.environ.pop(TRUST_ENV, None) if previous is None
                   else os.environ.__setitem__(TRUST_ENV, previous))
    return stack


def _restore_env(previous: dict) -> None:
    """Put environment variables back as they were (None: unset)."""
    import os

    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


from datasets_prep.hub import go_offline  # noqa: E402  (kept light: os and re only)
from swiftkit.core.errors import SwiftkitError, Terminated, raise_on_termination  # noqa: E402  (kept light)
