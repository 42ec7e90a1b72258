"""Build DPO preference pairs for a persona from a `swiftkit prep` output folder.

  swiftkit prep-pairs data/muice --out data/muice_pairs --model Qwen/Qwen2-1.5B-Instruct
  swiftkit prep-pairs data/muice --out data/muice_pairs --model runs/muice_full/v1
  swiftkit prep-pairs data/muice --out data/muice_pairs            # no model: curated rejected answers

Each record of SRC's train.jsonl and val.jsonl becomes one pair, the shape ms-swift's DPO reads: its `messages` as
they are (the last assistant message is the **chosen** answer: the persona's) plus `rejected_response`, the
**rejected** answer to the same prompt:

- with --model (a hub id, a local model folder or a run directory: its last checkpoint): the model's own greedy
  answer to the same conversation (system prompt included), through its saved chat template: for the base model,
  its real out-of-character answers ("我是通义千问，由阿里云开发的…");
- without --model, or where the model's answer is empty or is the chosen answer itself: a curated out-of-character
  answer (a Qwen-style assistant naming its maker; Chinese for a Chinese prompt).

Writes into --out: train.jsonl and val.jsonl (the pairs), rejects.jsonl (file, line, reason, raw of every record that
cannot be a pair: no final assistant answer, no user turn, bad JSON) and manifest.json (the model, counts of
rejected answers from the model and from the curated list, and for every pair which, and why it fell back; sha256
of inputs and outputs). Outputs are written atomically, the manifest last. A DPO recipe (`method: dpo`, e.g.
muice_dpo) trains on them; its preflight checks every pair (a chosen answer, a different rejected one, one prompt).
"""
from __future__ import annotations

import argparse

from swiftkit.cli import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="a `swiftkit prep` output folder (train.jsonl, optional val.jsonl)")
    parser.add_argument("--out", required=True, help="folder for the pairs (not SRC)")
    parser.add_argument("--model", help="the model whose answers are the rejected ones: a hub id, a local model "
                        "folder or a run directory (default: none, curated answers)")
    parser.add_argument("--max-new-tokens", type=int, default=128,
                        help="longest generated rejected answer in tokens (default 128)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let --model's own Python code (auto_map) run; refused otherwise")
    options.add_offline(parser)


def run(args: argparse.Namespace) -> int:
    from swiftkit.core.errors import SwiftkitError
    from swiftkit.train.dpo.pairs import model_generator, prep_pairs

    if args.max_new_tokens < 1:
        raise SwiftkitError(f"--max-new-tokens {args.max_new_tokens}: need at least 1")
    generate, label = (None, None)
    if args.model:
        generate, label = model_generator(args.model, max_new_tokens=args.max_new_tokens,
                                          trust_remote_code=args.trust_remote_code)
    result = prep_pairs(args.src, args.out, generate=generate, model_label=label, max_new_tokens=args.max_new_tokens)
    counts = ", ".join(f"{n} {k}" for k, n in result.counts.items())
    sources = ", ".join(f"{k} {n}" for k, n in result.rejected_from.items())
    print(f"{result.out}: {counts} pairs; rejected answers from {sources}; {result.rejects} record(s) rejected "
          f"(rejects.jsonl); manifest.json says which pair's came from where")
    return 0
