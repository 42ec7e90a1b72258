"""The DPO smoke run (`make smoke-dpo`): proof on CPU that preference training for a persona works end to end.

  1. prep the bundled Muice samples; the persona data is 8 of them, identity questions first -> data/muice_persona/;
     the same prompts answered as Qwen ("我是通义千问，由阿里云开发的…")                       -> data/muice_qwen/
  2. build the tiny random Qwen2                                     -> models/tiny-qwen2
  3. brief SFT warm-up on the Qwen answers, recipe smoke_dpo_sft (1 CPU process): a model that insists it is Qwen
  4. swiftkit prep-pairs on the persona data with the warm-up run as the model: chosen = the persona's answer,
     rejected = the warmed model's own greedy answer (curated where it gave the chosen one) -> data/muice_pairs/
  5. DPO, recipe smoke_dpo (2 CPU processes, gloo; `init_from` the warm-up run, also the frozen reference)

Passes only when the preference margin ms-swift logs (rewards/margins) rises by 0.5 or more from the first logged
step to the mean of the last three, and, measured with the trained weights (log-likelihood of each answer after its
prompt, through the checkpoint's saved template), every pair's chosen answer out-scores its rejected one and the
pairs whose rejected answer the warmed model generated do so by 5 nats or more on average. The warm-up's figures
are printed beside them: there the model prefers its own Qwen answers. The DPO recipe watches drift every 8 steps
(RUN/samples/): "claims Qwen by step" counts the identity answers that still claim a base identity, and `swiftkit eval
RUN --prompts data/muice/val.jsonl --base <warm-up checkpoint>` charts them beside the stress suite.

examples:
  swiftkit smoke-dpo
  swiftkit smoke-dpo --runs-root /tmp/runs --set dpo.beta=0.02
"""
from __future__ import annotations

import argparse

from datasets_prep.samples_dir import SAMPLES_DIR
from swiftkit.cli.commands.smoke import add_common_arguments, run_pipeline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", default=str(SAMPLES_DIR / "muice"),
                        help="Muice sample folder (default: the bundled samples)")
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from swiftkit.dev.smoke_dpo import smoke_dpo, summary

    return run_pipeline(args, "smoke-dpo", smoke_dpo, summary, lambda r: [f"dpo: {p}" for p in r.verdict.problems])
