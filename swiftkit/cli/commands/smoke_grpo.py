"""The GRPO smoke run (`make smoke-grpo`): proof on CPU that GRPO trains through swiftkit end to end.

  1. prep the bundled action and medical-R1 samples  -> data/{actions,medical_r1}/ (with `solution` and `score`)
  2. build the tiny random Qwen2                      -> models/tiny-qwen2
  3. SFT warm-up, recipe smoke_grpo_sft (1 CPU process): a random model never varies its rewards
  4. GRPO, recipe smoke_grpo (2 CPU processes, gloo; `init_from` the warm-up run), swiftkit's rewards
  5. per-reward means per step from ms-swift's log; sampled completions from <run>/completions.jsonl

Passes only when rewards were computed at every step, at least one group of completions of the same prompt got
different total rewards (a group whose completions all score alike gives GRPO no gradient), every logged loss is
finite, and completions.jsonl is in the run directory. Reward *improvement* is printed, not required: a dozen GRPO
steps on a 10M-parameter model are a plumbing proof, not a learning curve.

examples:
  swiftkit smoke-grpo
  swiftkit smoke-grpo --runs-root /tmp/runs --set max_steps=20
"""
from __future__ import annotations

import argparse

from datasets_prep.samples_dir import SAMPLES_DIR
from swiftkit.cli.commands.smoke import add_common_arguments, run_pipeline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", default=str(SAMPLES_DIR),
                        help="folder holding actions/ and medical_r1/ (default: the bundled samples)")
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from swiftkit.dev.smoke_grpo import smoke_grpo, summary

    return run_pipeline(args, "smoke-grpo", smoke_grpo, summary, lambda r: [f"grpo: {p}" for p in r.verdict.problems])
