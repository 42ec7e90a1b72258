"""Show which tokens of a recipe's first training records are trained and which are masked, encoded exactly as
`swift sft` will encode them (ms-swift's template, the recipe's model tokenizer, its max_length and truncation).

On a terminal, masked tokens (label -100: system prompt, question, template markup) are dim and trained tokens
(answers and their end-of-turn token) green; piped, each masked run is a marker such as [-100 × 41] followed by the
trained text. Warnings:
  end-of-turn token <|im_end|> is not trained   the model would never learn to stop after its answer
  N tokens > max_length M: training drops it     ms-swift's default truncation_strategy delete
  truncated at max_length M (N tokens)           with --set extra_args.truncation_strategy=right|left

--ids shows every token on its own row, as seed 002 explained the -100 masking by hand: position, token id, label
(the id itself where training learns the token, -100 where the loss ignores it) and the token's text (␣ ↵ ⇥ for
space, newline, tab; a token holding part of a character shows its bytes, <0xE7>). One row per token, so a
2048-token record is 2048 rows: the plain view above stays the default.

Works offline: the model must be a local folder or already in the hub cache. Exit status 0 (warnings are shown,
not failed; `swiftkit check RUN` fails a trained run whose end-of-turn token carried no label).

examples:
  swiftkit preview smoke_tiny
  swiftkit preview smoke_tiny --ids --n 1                # token ids, labels (-100 masked) and text, side by side
  swiftkit preview muice_full --n 10 | less             # plain markers when piped
  swiftkit preview medical_r1_full --set max_length=512  # what a shorter budget would cut
  swiftkit preview smoke_tiny --set data.train=[my.jsonl] --set model=/models/Qwen2-1.5B-Instruct
"""
from __future__ import annotations

import argparse
import os
import sys

from swiftkit.cli import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_recipe(parser)
    parser.add_argument("--n", type=int, default=3, help="how many records of data.train to show (default 3)")
    options.add_overrides(parser)
    parser.add_argument("--ids", action="store_true",
                        help="one row per token: position, token id, label (-100 where masked), token text")
    parser.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                        help="auto (default): colour on a terminal, markers when piped or NO_COLOR is set")
    options.add_offline(parser)


def use_color(choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def run(args: argparse.Namespace) -> int:
    from swiftkit.core.errors import SwiftkitError
    from swiftkit.evaluate.preview import (
        IDS_HEAD,
        preview_records,
        render,
        render_ids,
        training_template,
    )

    if args.n < 1:
        raise SwiftkitError(f"--n {args.n}: must be at least 1")
    tt = training_template(args.recipe, args.overrides)
    color = use_color(args.color)
    print(f"{args.recipe}: {tt.describe()}")
    if args.ids:
        print(IDS_HEAD)
    else:
        print("dim: masked (label -100), green: trained" if color else "[-100 × N]: N masked tokens (label -100); "
              "the text shown is trained")
    warnings = 0
    for preview in preview_records(tt, args.n, tokens=args.ids):
        print((render_ids if args.ids else render)(preview, color=color), flush=True)
        warnings += len(preview.warnings)
    print(f"{warnings} warning(s)")
    return 0
