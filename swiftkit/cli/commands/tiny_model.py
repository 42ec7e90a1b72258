"""Build a tiny random Qwen2 (about 9.8M parameters) with the real Qwen tokenizer, offline.

It is the model the smoke run trains on CPU in seconds: Qwen2ForCausalLM, hidden 64, 2 layers,
4 attention heads, 2 KV heads, tied embeddings, the Qwen vocabulary (151,646 ids incl. the three
chat specials), float32, max_position_embeddings 2048, generation_config eos ids [151645, 151643].
ms-swift accepts it with `--model OUT --model_type qwen2_5 --template qwen2_5`.

The weights come from torch's RNG seeded with --seed, so the same seed gives byte-identical files
(safetensors, config, tokenizer). An existing OUT built with the same spec is left as it is.

examples:
  swiftkit tiny-model models/tiny-qwen2               # seed 0
  swiftkit tiny-model /tmp/tiny --seed 7
  swiftkit tiny-model /tmp/bad --bad-eos              # eos [151643] only: for testing `swiftkit check --fix`
"""
from __future__ import annotations

import argparse
from pathlib import Path

from swiftkit.core.errors import SwiftkitError
from swiftkit.dev.tiny import (
    ENDOFTEXT_ID,
    IM_END_ID,
    TinySpec,
    build_tiny_model,
    is_built,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (replaced when it holds something else)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed for the random weights (default 0)")
    parser.add_argument("--force", action="store_true", help="rebuild even when OUT already matches")
    parser.add_argument(
        "--bad-eos",
        action="store_true",
        help="write generation_config eos [151643] only (the classic never-stops bug), to exercise `check --fix`",
    )


def run(args: argparse.Namespace) -> int:
    if args.seed < 0:
        raise SwiftkitError(f"--seed {args.seed}: must be >= 0")
    spec = TinySpec(seed=args.seed, eos_token_ids=(ENDOFTEXT_ID,) if args.bad_eos else (IM_END_ID, ENDOFTEXT_ID))
    out = Path(args.out)
    reused = not args.force and is_built(out, spec)
    build_tiny_model(out, spec, force=args.force)
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"{'kept' if reused else 'built'} {out}  seed={spec.seed}  {size / 1e6:.1f} MB  eos={list(spec.eos_token_ids)}")
    return 0
