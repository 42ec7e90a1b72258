"""Run `swift infer` on a trained run: batch over the val split, a few prompts, or interactively.

The backend is vLLM where the installed vLLM can run (a CUDA build with a visible GPU: tensor parallel over every
visible GPU; or vLLM's CPU build, `make install-vllm`), `pt` (plain PyTorch) otherwise; max LoRA rank from the run's
LoRA rank, max model length = training max_length + --max-new-tokens.
Decoding is greedy by default (--temperature 0), so the same run gives the same answers.

Results go to RUN/infer/<name>.jsonl (one line per sample: messages, response, labels), written atomically;
the name defaults to `val` for --val and `prompt` for --prompt. ms-swift's log goes to RUN/infer/<name>.log.

examples:
  swiftkit infer runs/muice_full/v1 --val                   # the run's val split, batch path
  swiftkit infer runs/muice_full/v1 --prompt "你是谁？"       # one answer, printed and saved
  swiftkit infer runs/fortune_lora/v2 --val --merge-lora    # merge the adapter first (vLLM-friendly)
  swiftkit infer runs/muice_full/v1 --checkpoint best       # best|last (default last) or a checkpoint folder
  swiftkit infer runs/muice_full/v1                         # interactive chat in the terminal
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from swiftkit.cli import options
from swiftkit.core.errors import SwiftkitError
from swiftkit.core.jsonl import read_jsonl
from swiftkit.core.secrets import quote
from swiftkit.deploy.infer import (
    batch_infer,
    interactive_command,
    prompt_input_file,
    val_input_file,
)
from swiftkit.deploy.infer_args import Backend, GenerationOptions
from swiftkit.run.rundir import read_run_info
from swiftkit.stack.backend import default_backend


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_run(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--val", action="store_true", help="run the run's val files through the batch path")
    mode.add_argument("--prompt", action="append", metavar="TEXT", help="a user message (repeatable)")
    options.add_backend(parser)
    options.add_checkpoint(parser)
    parser.add_argument("--merge-lora", action="store_true", help="LoRA runs: merge the adapter before inference")
    parser.add_argument("--name", help="result name under RUN/infer/ (default: val or prompt)")
    parser.add_argument("--system", help="system prompt (default: the run's)")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="default 512")
    parser.add_argument("--temperature", type=float, default=0.0, help="default 0 (greedy)")
    parser.add_argument("--max-batch-size", type=int, default=16, help="pt backend batch size (default 16)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vLLM (default 0.9)")
    parser.add_argument("--max-model-len", type=int, help="vLLM (default: training max_length + max-new-tokens)")
    options.add_offline(parser)


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run)
    info = read_run_info(run_dir)
    generation = GenerationOptions(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                   max_batch_size=args.max_batch_size)
    backend: Backend = args.backend or default_backend()
    if not args.val and not args.prompt:
        if not sys.stdin.isatty():
            raise SwiftkitError("interactive infer reads a terminal and stdin is not one: pass --prompt TEXT "
                                "(repeatable) or --val")
        cmd = interactive_command(run_dir, backend=backend, generation=generation, checkpoint=args.checkpoint,
                                  system=args.system, merge_lora=args.merge_lora,
                                  gpu_memory_utilization=args.gpu_memory_utilization,
                                  max_model_len=args.max_model_len)
        print("$ " + quote(cmd), flush=True)
        return subprocess.call(cmd)
    if args.val:
        name = args.name or "val"
        records = val_input_file(run_dir, info)
    else:
        name = args.name or "prompt"
        system = args.system if args.system is not None else info.system
        records = prompt_input_file(run_dir, name, args.prompt, system)
    print(f"swift infer ({backend}) on {records} ...", flush=True)
    out = batch_infer(run_dir, records_file=records, name=name, checkpoint=args.checkpoint, backend=backend,
                      merge_lora=args.merge_lora, generation=generation,
                      gpu_memory_utilization=args.gpu_memory_utilization, max_model_len=args.max_model_len,
                      system=args.system)
    results = read_jsonl(out)
    if args.prompt:
        for prompt, row in zip(args.prompt, results):
            print(f"> {prompt}\n{row.get('response', '')}")
    else:
        exact = sum(1 for r in results if r.get("labels") is not None and r.get("response") == r.get("labels"))
        print(f"{len(results)} answers, {exact} identical to the reference")
    print(f"results: {out}")
    return 0
