"""`swift infer` on a trained run: what to load (:func:`model_spec_for`), the backend (swiftkit.stack.backend),
batch inference into RUN/infer/<name>.jsonl (:func:`batch_infer`) and the interactive command.
`swiftkit infer` (swiftkit/cli/commands/infer.py) is its command.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional, Sequence

from datasets_prep.atomic import atomic_open
from swiftkit.core.devices import visible_gpus
from swiftkit.core.errors import SwiftkitError
from swiftkit.core.proc import python_module_command, run_child
from swiftkit.deploy.infer_args import (
    Backend,
    GenerationOptions,
    InferJob,
    ModelSpec,
    VllmOptions,
    infer_args,
)
from swiftkit.run.rundir import RunInfo, read_run_info, resolve_checkpoint
from swiftkit.stack.backend import default_backend, engine_env, require_backend
from swiftkit.stack.remote_code import refuse_remote_code

INFER_DIR = "infer"


def model_spec_for(run_dir: str | Path, checkpoint: str = "last", system: Optional[str] = None) -> ModelSpec:
    """What to load for a run: the full checkpoint, or the base model plus the LoRA adapter checkpoint."""
    info = read_run_info(run_dir)
    ckpt = resolve_checkpoint(run_dir, checkpoint).resolve()
    common = dict(model_type=info.model_type, template=info.template,
                  system=system if system is not None else info.system)
    # ms-swift 3.12 loads with trust_remote_code=True whatever it is told: refuse model code here unless the run asked
    for folder in {ckpt, ckpt if info.train_type == "full" else Path(info.model)}:
        refuse_remote_code(folder, info.trust_remote_code)
    if info.train_type == "full":
        return ModelSpec(model=str(ckpt), **common)
    return ModelSpec(model=info.model, adapters=(str(ckpt),), **common)


def vllm_options(info: RunInfo, *, gpu_memory_utilization: float, max_model_len: Optional[int],
                 max_new_tokens: int, gpus: int) -> VllmOptions:
    return VllmOptions(
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len or info.max_length + max_new_tokens,
        tensor_parallel_size=max(gpus, 1),
        max_lora_rank=info.lora_rank,
    )


def prompt_records(prompts: Sequence[str], system: Optional[str]) -> list[dict]:
    """One messages record per prompt (system first when the run has one), for the batch path."""
    head = [{"role": "system", "content": system}] if system else []
    return [{"messages": head + [{"role": "user", "content": p}]} for p in prompts]


def batch_infer(
    run_dir: str | Path,
    *,
    records_file: Path,
    name: str,
    checkpoint: str = "last",
    backend: Optional[Backend] = None,
    merge_lora: bool = False,
    generation: GenerationOptions = GenerationOptions(),
    gpu_memory_utilization: float = 0.9,
    max_model_len: Optional[int] = None,
    system: Optional[str] = None,
    on_output: Optional[Callable[[str], None]] = None,
) -> Path:
    """Run ``records_file`` (messages JSONL) through ``swift infer``; returns RUN/infer/<name>.jsonl."""
    run = Path(run_dir)
    info = read_run_info(run)
    backend = backend or default_backend()
    require_backend(backend)
    spec = model_spec_for(run, checkpoint, system)
    gpus = visible_gpus() if backend == "vllm" else 0
    out = run / INFER_DIR / f"{name}.jsonl"
    partial = out.with_name(f".{name}.partial.jsonl")
    partial.unlink(missing_ok=True)  # ms-swift appends to an existing result file
    job = InferJob(
        spec=spec, backend=backend, generation=generation, merge_lora=merge_lora and bool(spec.adapters),
        vllm=vllm_options(info, gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                          max_new_tokens=generation.max_new_tokens, gpus=gpus),
        val_dataset=str(Path(records_file).resolve()), result_path=str(partial.resolve()),
    )
    run_child("swiftkit.stack.swift_child", ["infer_main", *infer_args(job)], out.with_suffix(".log"), on_output=on_output,
              env=engine_env(backend))
    if not partial.is_file():
        raise SwiftkitError(f"swift infer wrote no results to {partial}; see {out.with_suffix('.log')}")
    with atomic_open(out) as handle:
        handle.write(partial.read_text(encoding="utf-8"))
    partial.unlink()
    return out


def val_input_file(run_dir: str | Path, info: RunInfo) -> Path:
    """The run's val files joined into RUN/infer/val.input.jsonl (ms-swift takes one --val_dataset per file)."""
    run = Path(run_dir)
    if not info.val_files:
        raise SwiftkitError(f"{run}: the run has no val files (swiftkit_run.json val_files is empty)")
    missing = [f for f in info.val_files if not Path(f).is_file()]
    if missing:
        raise SwiftkitError(f"val file {missing[0]}: not found")
    joined = run / INFER_DIR / "val.input.jsonl"
    with atomic_open(joined) as handle:
        for f in info.val_files:
            text = Path(f).read_text(encoding="utf-8")
            handle.write(text if text.endswith("\n") or not text else text + "\n")
    return joined


def prompt_input_file(run_dir: str | Path, name: str, prompts: Sequence[str], system: Optional[str]) -> Path:
    """``prompts`` as messages records in RUN/infer/<name>.input.jsonl, for the batch path."""
    records = Path(run_dir) / INFER_DIR / f"{name}.input.jsonl"
    with atomic_open(records) as handle:
        for rec in prompt_records(prompts, system):
            handle.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return records


def interactive_command(run_dir: str | Path, *, backend: Backend, generation: GenerationOptions,
                        checkpoint: str = "last", system: Optional[str] = None, merge_lora: bool = False,
                        gpu_memory_utilization: float = 0.9, max_model_len: Optional[int] = None) -> list[str]:
    """The ``swift infer`` command line for an interactive chat in the terminal (the caller runs it)."""
    info = read_run_info(run_dir)
    require_backend(backend)
    spec = model_spec_for(run_dir, checkpoint, system)
    job = InferJob(spec=spec, backend=backend, generation=generation, merge_lora=merge_lora,
                   vllm=vllm_options(info, gpu_memory_utilization=gpu_memory_utilization,
                                     max_model_len=max_model_len, max_new_tokens=generation.max_new_tokens,
                                     gpus=visible_gpus() if backend == "vllm" else 0))
    return python_module_command("swiftkit.stack.swift_child", ["infer_main", *infer_args(job)])
