"""swiftkit command line: a route table of thin subcommands.

Each route names a module that exposes ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are imported only when their command runs, so ``swiftkit --help`` and
``swiftkit plan`` never pay for torch or ms-swift imports (the same idea as ms-swift's
``swift/cli/main.py`` route table).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import NamedTuple, Sequence


class Route(NamedTuple):
    module: str
    summary: str


ROUTES: dict[str, Route] = {
    "prep": Route("datasets_prep.cli", "convert a dataset source into ms-swift messages JSONL"),
    "sources": Route("datasets_prep.cli_sources", "list the dataset sources prep knows"),
    "recipes": Route("swiftkit.cmd_recipes", "list the training recipes"),
    "show": Route("swiftkit.cmd_show", "print a recipe, resolved and validated"),
    "plan": Route("swiftkit.cmd_plan", "print the exact `swift sft` / `swift rlhf` command a recipe becomes"),
    "train": Route("swiftkit.cmd_train", "preflight, then run a recipe's training"),
    "doctor": Route("swiftkit.doctor", "report the installed stack and which shims apply"),
    "tiny-model": Route("swiftkit.tiny", "build the tiny random Qwen2 used by the smoke run"),
    "infer": Route("swiftkit.infer", "run `swift infer` on a trained run"),
    "serve": Route("swiftkit.serve", "serve a trained run with `swift deploy` (OpenAI API)"),
    "export": Route("swiftkit.export", "merge LoRA weights or write a GGUF file"),
    "check": Route("swiftkit.check", "post-train checks: eos ids, stop labels, identity probe"),
    "eval": Route("swiftkit.cmd_eval", "base vs tuned answers side by side, task metrics, an HTML report"),
    "preview": Route("swiftkit.cmd_preview", "show which tokens of a recipe's records are trained and which masked"),
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
    lines += [f"  {name.ljust(width)}  {route.summary}" for name, route in ROUTES.items()]
    return "\n".join(lines) + "\n\n" + EPILOG


def _did_you_mean(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(ROUTES), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


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
    route = ROUTES.get(name)
    if route is None:
        print(f"swiftkit: unknown command '{name}'{_did_you_mean(name)}; see `swiftkit --help`", file=sys.stderr)
        return 2
    module = importlib.import_module(route.module)
    parser = argparse.ArgumentParser(
        prog=f"swiftkit {name}",
        description=(module.__doc__ or route.summary).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    raise_on_termination()
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


from swiftkit.errors import SwiftkitError, Terminated, raise_on_termination  # noqa: E402  (kept light)

if __name__ == "__main__":
    sys.exit(main())
