"""Print the exact `swift sft` command a recipe becomes on a given cluster (imports neither torch nor ms-swift).

The recipe states a global batch; gradient accumulation is derived from nodes x GPUs x per-device batch, so the
optimization is the same on 1, 2 or 8 GPUs (a global batch that does not divide is refused).

examples:
  swiftkit plan muice_full                      # the recipe's default: one node of 8 GPUs, DeepSpeed ZeRO-2
  swiftkit plan muice_full --gpus 2             # same global batch 32: accumulation 16 instead of 4
  swiftkit plan muice_full --nnodes 2 --node-rank 0 --master-addr 10.0.0.1 --master-port 29500
  swiftkit plan fortune_lora --set lora.qlora=true --set learning_rate=1e-4
  swiftkit plan smoke_tiny --json               # {"env": {...}, "argv": ["swift", "sft", ...]}

The shell line can be pasted as is. Secrets (SWANLAB_API_KEY, HF_TOKEN, MODELSCOPE_API_TOKEN) are never part
of a plan: export them in the shell and the training processes inherit them. `swiftkit train` runs the same
arguments through swiftkit's worker so compatibility shims reach every rank.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from swiftkit.plan import Cluster, Plan


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by `plan` and `train`."""
    parser.add_argument("recipe", help="recipe name (see `swiftkit recipes`) or path to a recipe YAML")
    parser.add_argument("--gpus", type=int, default=None,
                        help="processes (GPUs) per node; default: the recipe's launch.nproc_per_node")
    parser.add_argument("--nnodes", type=int, default=1, help="number of nodes (default 1)")
    parser.add_argument("--node-rank", type=int, default=0, help="this node's rank, 0..nnodes-1 (default 0)")
    parser.add_argument("--master-addr", default=None, help="address of node rank 0 (needed with --nnodes > 1)")
    parser.add_argument("--master-port", type=int, default=None, help="rendezvous port (default: torchrun's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe field, dotted for sections (e.g. --set lora.rank=32); repeatable")
    parser.add_argument("--runs-root", default="runs", help="where run directories go (default runs/)")


def cluster_from_args(args: argparse.Namespace, default_nproc: int) -> Cluster:
    return Cluster(
        nproc_per_node=args.gpus if args.gpus is not None else default_nproc,
        nnodes=args.nnodes, node_rank=args.node_rank, master_addr=args.master_addr, master_port=args.master_port,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_cluster_arguments(parser)
    parser.add_argument("--json", action="store_true", help='print {"env": {...}, "argv": [...]} instead')


def build(args: argparse.Namespace) -> Plan:
    from swiftkit.dialect import SWIFT3, dialect_for
    from swiftkit.errors import SwiftkitError
    from swiftkit.plan import plan
    from swiftkit.recipes import load_recipe
    from swiftkit.rundir import next_run_dir
    from swiftkit.versions import installed

    recipe = load_recipe(args.recipe, args.overrides)
    try:
        dialect = dialect_for(installed("ms-swift"))
    except SwiftkitError:
        dialect = SWIFT3  # planning for 3.12 still works without ms-swift installed
    out = next_run_dir(Path(args.runs_root), recipe.name)
    return plan(recipe, cluster_from_args(args, recipe.launch.nproc_per_node), output_dir=str(out), dialect=dialect)


def run(args: argparse.Namespace) -> int:
    p = build(args)
    if args.json:
        print(json.dumps(p.to_json(), ensure_ascii=False, indent=2))
    else:
        print(f"# global batch {p.global_batch_size} = {p.world_size} process(es) x per-device "
              f"{p.per_device_batch_size} x accumulation {p.gradient_accumulation_steps}")
        print(p.shell())
    return 0
