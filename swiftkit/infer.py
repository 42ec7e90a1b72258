"""Run `swift infer` on a trained run: batch over the val split, a few prompts, or interactively.

The backend is vLLM when a GPU is visible (tensor parallel over every visible GPU, max LoRA rank from the
run's LoRA rank, max model length = training max_length + --max-new-tokens), `pt` (plain PyTorch) otherwise.
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
import json
import sys
import subprocess
from pathlib import Path
from typing import Callable, Optional, Sequence

from datasets_prep.atomic import atomic_open
from swiftkit.devices import visible_gpus
from swiftkit.errors import SwiftkitError
from swiftkit.jsonl import read_jsonl
from swiftkit.proc import run_child
from swiftkit.infer_args import (
    Backend,
    GenerationOptions,
    InferJob,
    ModelSpec,
    VllmOptions,
    infer_args,
    python_module_command,
    quote,
)
from swiftkit.remote_code import refuse_remote_code
from swiftkit.rundir import RunInfo, read_run_info, resolve_checkpoint

INFER_DIR = "infer"


def model_spec_for(run_dir: str | Path, checkpoint: str = "last", system: Optional[str] = None) -> ModelSpec:
    """What to load for a run: the full checkpoint, or the base model plus the LoRA adapter checkpoint."""
    info = read_run_info(run_dir)
    ckpt = resolve_checkpoint(run_dir, checkpoint).resolve()
    common = dict(model_type=info.model_type, template=info.template, trust_remote_code=info.trust_remote_code,
                  system=system if system is not None else info.system)
    for folder in {ckpt, ckpt if info.train_type == "full" else Path(info.model)}:
        refuse_remote_code(folder, info.trust_remote_code)
    if info.train_type == "full":
        return ModelSpec(model=str(ckpt), **common)
    return ModelSpec(model=info.model, adapters=(str(ckpt),), **common)


def default_backend() -> Backend:
    return "vllm" if visible_gpus() > 0 else "pt"


def require_backend(backend: Backend) -> None:
    import importlib.util

    if backend == "vllm":
        if visible_gpus() == 0:
            raise SwiftkitError("--backend vllm needs a visible GPU; use --backend pt on CPU")
        if importlib.util.find_spec("vllm") is None:
            raise SwiftkitError("--backend vllm needs vLLM: pip install -e '.[vllm]' (or use --backend pt)")


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
    run_child("swift.cli.infer", infer_args(job), out.with_suffix(".log"), on_output=on_output)
    if not partial.is_file():
        raise SwiftkitError(f"swift infer wrote no results to {partial}; see {out.with_suffix('.log')}")
    with atomic_open(out) as handle:
        handle.write(partial.read_text(encoding="utf-8"))
    partial.unlink()
    return out


def greedy_answers(spec: ModelSpec, conversations: Sequence[list[dict]], max_new_tokens: int = 64) -> list[str]:
    """Greedy answers from ms-swift's own PyTorch engine, in this process (no subprocess start-up cost).

    Each conversation is a messages list ending with the user turn. Used by `check` (identity probe) and by the
    smoke run's learning assertion on an untrained model.
    """
    from swift.llm import InferRequest, PtEngine, RequestConfig

    engine = PtEngine(spec.model, adapters=list(spec.adapters) or None, model_type=spec.model_type,
                      max_batch_size=max(len(conversations), 1))
    if spec.template:
        from swift.llm import get_template

        engine.default_template = get_template(spec.template, engine.processor, default_system=spec.system)
    config = RequestConfig(max_tokens=max_new_tokens, temperature=0)
    responses = engine.infer([InferRequest(messages=list(c)) for c in conversations], config, use_tqdm=False)
    return [r.choices[0].message.content for r in responses]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory (runs/<recipe>/v<N>)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--val", action="store_true", help="run the run's val files through the batch path")
    mode.add_argument("--prompt", action="append", metavar="TEXT", help="a user message (repeatable)")
    parser.add_argument("--backend", choices=["vllm", "pt"], help="default: vllm when a GPU is visible, else pt")
    parser.add_argument("--checkpoint", default="last", help="best | last (default) | a checkpoint folder")
    parser.add_argument("--merge-lora", action="store_true", help="LoRA runs: merge the adapter before inference")
    parser.add_argument("--name", help="result name under RUN/infer/ (default: val or prompt)")
    parser.add_argument("--system", help="system prompt (default: the run's)")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="default 512")
    parser.add_argument("--temperature", type=float, default=0.0, help="default 0 (greedy)")
    parser.add_argument("--max-batch-size", type=int, default=16, help="pt backend batch size (default 16)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vLLM (default 0.9)")
    parser.add_argument("--max-model-len", type=int, help="vLLM (default: training max_length + max-new-tokens)")


def _val_file(run: Path, info: RunInfo) -> Path:
    """The run's val files joined into one JSONL under RUN/infer/ (ms-swift takes one --val_dataset per file)."""
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
        require_backend(backend)
        spec = model_spec_for(run_dir, args.checkpoint, args.system)
        job = InferJob(spec=spec, backend=backend, generation=generation, merge_lora=args.merge_lora,
                       vllm=vllm_options(info, gpu_memory_utilization=args.gpu_memory_utilization,
                                         max_model_len=args.max_model_len, max_new_tokens=args.max_new_tokens,
                                         gpus=visible_gpus() if backend == "vllm" else 0))
        cmd = python_module_command("swift.cli.infer", infer_args(job))
        print("$ " + quote(cmd), flush=True)
        return subprocess.call(cmd)
    if args.val:
        name = args.name or "val"
        records = _val_file(run_dir, info)
    else:
        name = args.name or "prompt"
        records = run_dir / INFER_DIR / f"{name}.input.jsonl"
        system = args.system if args.system is not None else info.system
        with atomic_open(records) as handle:
            for rec in prompt_records(args.prompt, system):
                handle.write(json.dumps(rec, ensure_ascii=False) + "\n")
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
