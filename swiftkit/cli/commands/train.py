"""Preflight, then train a recipe: the plan of `swiftkit plan`, run through swiftkit's worker in every rank.

examples:
  swiftkit train smoke_tiny                     # tiny CPU model, 2 CPU processes (gloo)
  swiftkit train muice_full --dry-run           # print the plan and the preflight result, start nothing
  swiftkit train muice_full --gpus 2            # the recipe's global batch (8) on 2 GPUs: more accumulation
  swiftkit train fortune_lora --set lora.qlora=true
  swiftkit train muice_full --resume runs/muice_full/v3      # continue from its last checkpoint
  make train RECIPE=muice_full ARGS=--dry-run
  swiftkit train muice_full --gpus 8 --dry-run --json     # the same JSON as `swiftkit plan muice_full --gpus 8 --json`

Preflight checks, each failure one line: the model is a readable local folder or a hub id; every dataset file
exists and is non-empty; max_length fits the model's max_position_embeddings; the GPUs requested are visible;
the run goes to a new runs/<recipe>/v<N> unless --resume. The run directory then records the recipe, the
resolved argument list (swiftkit_run.json), versions.json, the data manifests, train.log and result.json.
Secrets come from the environment (export SWANLAB_API_KEY=...) and never reach the plan, the log or the run dir.
"""
from __future__ import annotations

import argparse
import sys

from swiftkit.cli import options
from swiftkit.cli.commands.plan import add_cluster_arguments, plan_options, print_plan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_cluster_arguments(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the preflight result only")
    parser.add_argument("--json", action="store_true",
                        help="with --dry-run: the plan as `swiftkit plan --json` prints it; preflight goes to stderr")
    parser.add_argument("--resume", default=None, metavar="RUN_OR_CHECKPOINT",
                        help="continue a run directory (from its last checkpoint) or a checkpoint folder")
    parser.add_argument("--join-timeout", type=int, default=None, metavar="SECONDS",
                        help="several nodes: how long a node waits for the others to join (default 300); node k > 0 "
                        "first waits this long for node 0 to listen, and each gives up with one line")
    options.add_offline(parser)


def run(args: argparse.Namespace) -> int:
    from swiftkit.core.errors import SwiftkitError
    from swiftkit.train.launch import execute, prepare

    if args.json and not args.dry_run:
        raise SwiftkitError("--json goes with --dry-run (training prints its progress, not a plan)")
    prep = prepare(args.recipe, **plan_options(args))
    notes = sys.stderr if args.json else sys.stdout
    print(f"# run directory: {prep.run_dir}", file=notes)
    print_plan(prep, as_json=args.json)
    print("# preflight:", file=notes)
    for line in prep.preflight.lines():
        print(f"#   {line}", file=notes)
    if args.dry_run:
        if prep.resume_note:  # training says it as it starts
            print(f"# {prep.resume_note}", file=notes)
        print("# dry run: nothing started" if prep.preflight.ok else "# dry run: preflight failed", file=notes)
        return 0 if prep.preflight.ok else 1
    prep.preflight.raise_if_failed()
    join = {} if args.join_timeout is None else {"join_timeout": args.join_timeout}
    run_dir = execute(prep, on_output=lambda line: print(line, flush=True), **join)
    print(f"# trained: {run_dir}", file=sys.stderr)
    return 0
