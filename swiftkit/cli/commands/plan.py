"""Print the exact `swift sft` (or, for GRPO and DPO, `swift rlhf --rlhf_type grpo|dpo`) command a recipe becomes on a given
cluster (imports neither torch nor ms-swift).

The recipe states a global batch; gradient accumulation is derived from nodes x GPUs x per-device batch, so the
optimization is the same on every GPU count that forms it (one that does not divide is refused, naming the
nearest global batches that do). A val file that is empty (prep --val-ratio 0) is left out: no evaluation.

examples:
  swiftkit plan muice_full                      # the recipe's default: one node of 8 GPUs, DeepSpeed ZeRO-2
  swiftkit plan muice_full --gpus 2             # same global batch 8: accumulation 4 instead of 1
  swiftkit plan actions_lora --gpus 8 --nnodes 2 --node-rank 0 --master-addr 10.0.0.1 --master-port 29500 \\
      --run-dir /shared/runs/actions_lora/v1  # every node names the same run directory
  swiftkit plan fortune_lora --set lora.qlora=false --set learning_rate=1e-4
  swiftkit plan muice_full --set model=Qwen/Qwen2.5-1.5B-Instruct   # model_type/template follow the model
  swiftkit plan smoke_tiny --json               # {"env": {...}, "argv": ["swift", "sft", ...]}
  swiftkit plan actions_grpo --gpus 8           # GRPO from the actions_lora run, vLLM colocate
  swiftkit plan muice_dpo --gpus 8              # DPO from the muice_full run, on prep-pairs' pairs
  swiftkit plan muice_full --gpus 8 --gpu-type 5090   # will it fit? memory per GPU, verdict, time per epoch

Will it fit: the plan starts with the estimated memory per GPU by component (weights, gradients, optimizer states,
activations, logits, framework), from the model's config.json alone (swiftkit/train/sizing.py); --gpu-type adds a
verdict (fits / tight / does not fit, with the nearest fix) and, from the prepared data's manifest, steps and time
per epoch at --mfu. `train` preflight refuses a plan whose estimate exceeds the visible GPUs' memory
(--set launch.memory_check=false to train anyway).

Local model/data paths and the run directory (the next runs/<recipe>/v<N>) are printed absolute, exactly as
`swiftkit train` runs them (`train --dry-run --json` prints the same).

The shell line can be pasted as is. Secrets (SWANLAB_API_KEY, HF_TOKEN, MODELSCOPE_API_TOKEN) are never part
of a plan: export them in the shell and the training processes inherit them. `swiftkit train` runs the same
arguments through swiftkit's worker so compatibility shims reach every rank.
"""
from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Optional

from swiftkit.cli import options

if TYPE_CHECKING:
    from swiftkit.train.launch import Planned


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by `plan` and `train`."""
    options.add_recipe(parser)
    parser.add_argument("--gpus", type=int, default=None,
                        help="processes (GPUs) per node; default: the recipe's launch.nproc_per_node")
    parser.add_argument("--nnodes", type=int, default=1, help="number of nodes (default 1)")
    parser.add_argument("--node-rank", type=int, default=0, help="this node's rank, 0..nnodes-1 (default 0)")
    parser.add_argument("--master-addr", default=None, help="address of node rank 0 (needed with --nnodes > 1)")
    parser.add_argument("--master-port", type=int, default=None, help="rendezvous port (default: torchrun's)")
    options.add_overrides(parser)
    parser.add_argument("--runs-root", default="runs", help="where run directories go (default runs/)")
    parser.add_argument("--run-dir", default=None,
                        help="the run directory to write (new or empty) instead of the next runs/<recipe>/v<N>; "
                        "required with --nnodes > 1, so that every node writes the same one (on shared storage)")


def plan_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`swiftkit.train.launch.plan_run` from `plan` / `train` options."""
    return dict(gpus=args.gpus, nnodes=args.nnodes, node_rank=args.node_rank, master_addr=args.master_addr,
                master_port=args.master_port, overrides=args.overrides, runs_root=args.runs_root,
                run_dir=args.run_dir, resume=getattr(args, "resume", None))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_cluster_arguments(parser)
    parser.add_argument("--json", action="store_true",
                        help='print {"env": {...}, "argv": [...], "sizing": {...}} instead')
    parser.add_argument("--gpu-type", default=None, metavar="NAME",
                        help="the card to judge the fit on and time with: 3090, 4090, 5090, A10, L4, L40S, A100-40G, "
                        "A100-80G, H100, H200")
    parser.add_argument("--mfu", type=float, default=None,
                        help="model FLOPs utilisation assumed for the time estimate (default 0.35)")


def print_plan(planned: "Planned", *, as_json: bool, gpu_type: Optional[str] = None,
               mfu: Optional[float] = None) -> None:
    """The plan as `swiftkit plan` prints it (`train --dry-run` prints the same), with the memory estimate."""
    from swiftkit.train.fast_path import liger_on
    from swiftkit.train.sizing import DEFAULT_MFU, size_recipe

    p, recipe = planned.plan, planned.recipe
    sizing = size_recipe(recipe, p.world_size, gpu_type=gpu_type, mfu=DEFAULT_MFU if mfu is None else mfu,
                         liger=liger_on(list(planned.fast)))
    if as_json:
        fast = {s.name: {"on": s.on, "why": s.why} for s in planned.fast}
        mix = {"data_mix": planned.mixture.to_json()} if planned.mixture is not None else {}
        print(json.dumps({**p.to_json(), **mix, "fast_path": fast, "sizing": sizing.to_json()}, ensure_ascii=False,
                         indent=2))
        return
    unit = " completions" if recipe.grpo is not None else " pairs" if recipe.dpo is not None else ""
    batch = f"# global batch {p.global_batch_size}{unit} = {p.world_size} process(es) x per-device " \
            f"{p.per_device_batch_size} x accumulation {p.gradient_accumulation_steps}"
    if recipe.grpo is not None:
        g = recipe.grpo.num_generations
        batch += f" = {p.global_batch_size // g} prompts x {g} generations per step"
    print(batch)
    if planned.mixture is not None:
        print("\n".join(planned.mixture.lines()))
    for name in planned.empty_val:
        print(f"# {name}: empty (prep --val-ratio 0?), left out: no evaluation")
    if recipe.init_from:
        found = planned.init_checkpoint
        print(f"# starts from {found}" if found else
              f"# init_from {recipe.init_from}: no checkpoint there yet (train that run first)")
    print("\n".join(f"# fast path: {s.line()}" for s in planned.fast))
    print("\n".join(sizing.lines()))
    print(p.shell())


def run(args: argparse.Namespace) -> int:
    from swiftkit.train.launch import plan_run

    print_plan(plan_run(args.recipe, **plan_options(args)), as_json=args.json, gpu_type=args.gpu_type, mfu=args.mfu)
    return 0
