"""Pure builders of `swift infer` / `swift deploy` / `swift export` argument lists (ms-swift 3.12 dialect).

No torch, no ms-swift, no I/O beyond reading nothing: each function maps a resolved description of what to
run to the flag list ms-swift parses. The flag names are checked against ms-swift's own ``InferArguments`` /
``DeployArguments`` / ``ExportArguments`` dataclass fields in tests/test_infer.py (ms-swift rejects unknown flags).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from swiftkit.stack.backend import Backend
from swiftkit.stack.dialect import pinned_flags

DEFAULT_GPU_MEMORY_UTILIZATION = 0.9


@dataclass(frozen=True)
class ModelSpec:
    """Which weights to load: a full checkpoint (``model``) or a base model plus LoRA ``adapters``."""

    model: str
    adapters: tuple[str, ...] = ()
    model_type: Optional[str] = None
    template: Optional[str] = None
    system: Optional[str] = None
    torch_dtype: Optional[str] = None


@dataclass(frozen=True)
class VllmOptions:
    """vLLM engine settings; tensor_parallel_size is the number of visible GPUs."""

    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    max_model_len: Optional[int] = None
    tensor_parallel_size: int = 1
    max_lora_rank: Optional[int] = None


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int = 512
    temperature: float = 0.0
    """0 = greedy decoding (reproducible answers); ms-swift's own default samples."""
    max_batch_size: int = 16


@dataclass(frozen=True)
class InferJob:
    spec: ModelSpec
    backend: Backend = "pt"
    vllm: VllmOptions = field(default_factory=VllmOptions)
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    val_dataset: Optional[str] = None
    """A messages JSONL run through the batch path; None = interactive."""
    result_path: Optional[str] = None
    merge_lora: bool = False


def _model_args(spec: ModelSpec) -> list[str]:
    args: list[str] = []
    if spec.adapters:
        # ms-swift reads the base model from the adapter's args.json; naming it explicitly keeps runs portable.
        args += ["--model", spec.model, "--adapters", *spec.adapters]
    else:
        args += ["--model", spec.model]
    if spec.model_type:
        args += ["--model_type", spec.model_type]
    if spec.template:
        args += ["--template", spec.template, *pinned_flags(spec.template)]
    if spec.system is not None:
        args += ["--system", spec.system]
    if spec.torch_dtype:
        args += ["--torch_dtype", spec.torch_dtype]
    return args


def _engine_args(backend: Backend, vllm: VllmOptions, gen: GenerationOptions, has_adapters: bool) -> list[str]:
    args = ["--infer_backend", backend]
    if backend == "vllm":
        args += [
            "--vllm_gpu_memory_utilization", f"{vllm.gpu_memory_utilization:g}",
            "--vllm_tensor_parallel_size", str(vllm.tensor_parallel_size),
        ]
        if vllm.max_model_len:
            args += ["--vllm_max_model_len", str(vllm.max_model_len)]
        if has_adapters and vllm.max_lora_rank:
            args += ["--vllm_max_lora_rank", str(vllm.max_lora_rank)]
    else:
        args += ["--max_batch_size", str(gen.max_batch_size)]
    args += ["--max_new_tokens", str(gen.max_new_tokens), "--temperature", f"{gen.temperature:g}"]
    return args


def infer_args(job: InferJob) -> list[str]:
    """Arguments after ``swift infer``."""
    args = _model_args(job.spec)
    if job.merge_lora and job.spec.adapters:
        args += ["--merge_lora", "true"]
    args += _engine_args(job.backend, job.vllm, job.generation, bool(job.spec.adapters) and not job.merge_lora)
    if job.val_dataset:
        args += ["--val_dataset", job.val_dataset, "--stream", "false"]
    if job.result_path:
        args += ["--result_path", job.result_path]
    return args


def deploy_args(
    spec: ModelSpec,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    served_model_name: Optional[str] = None,
    backend: Backend = "pt",
    vllm: VllmOptions = VllmOptions(),
    generation: GenerationOptions = GenerationOptions(),
) -> list[str]:
    """Arguments after ``swift deploy``. Never the API key: swiftkit.deploy.deploy_child adds it in memory."""
    args = _model_args(spec)
    args += _engine_args(backend, vllm, generation, bool(spec.adapters))
    args += ["--host", host, "--port", str(port)]
    if served_model_name:
        args += ["--served_model_name", served_model_name]
    return args


def export_merge_args(spec: ModelSpec, output_dir: str) -> list[str]:
    """Arguments after ``swift export`` that merge ``spec.adapters`` into the base weights at ``output_dir``."""
    if not spec.adapters:
        raise ValueError("merging needs a LoRA adapter")
    args = ["--adapters", *spec.adapters, "--model", spec.model]
    if spec.model_type:
        args += ["--model_type", spec.model_type]
    if spec.template:
        args += ["--template", spec.template]
    args += ["--merge_lora", "true", "--output_dir", output_dir]
    return args
