"""`make gpu-bench`: a recipe's model shape trained for a fixed number of steps with plain torch + transformers, with
and without the fast path, measured beside swiftkit's estimate (issue 21 item 6).

Made for a GPU machine that has torch, transformers, peft and accelerate but no ms-swift, trl, deepspeed or vllm and
no network: the model is built from its shape with random weights (swiftkit.train.sizing: the model's config.json
where one is here, else the bundled table of the shipped recipes' shapes), the batch is random token ids at the
recipe's max_length (every sample at max_length: the estimate's worst case), and nothing is downloaded. What it needs
beyond that stack is liger-kernel (a pure-Python wheel: scripts/gpu_wheelhouse.sh puts it in benchmarks/wheelhouse/,
which `make gpu-bench` installs into .cache/gpu-wheels first).

Variants, each in a fresh process (liger patches transformers' classes for the whole process, and each peak is its own):

- ``baseline``: sdpa attention, transformers' loss (the fp32 logits);
- ``liger``: liger-kernel's patch for the model family (RMSNorm, RoPE, SwiGLU, fused linear cross entropy), when it
  imports and the device is CUDA;
- ``liger_flash``: the same with flash_attention_2, when flash_attn imports.

Per variant: torch.cuda.max_memory_allocated (the allocator's peak: no CUDA context, no allocator slack), tokens/s over
the timed steps (after warm-up), MFU (6·N·tokens/s over the card's dense bf16 peak from swiftkit.train.sizing.GPUS),
and swiftkit's estimate of the same setup (one process, no DeepSpeed; components, total, total without the framework
term that max_memory_allocated cannot see, and tokens/s at the estimate's assumed MFU). Written to
benchmarks/results/gpu-<card>.json (atomically). A variant that fails is recorded with its error; the others stand.

  python -m benchmarks.gpu_bench                                   # muice_full's shape on the CUDA card
  python -m benchmarks.gpu_bench --device cpu --shape tiny --steps 2 --warmup 1 --seq-len 32 --out /tmp/g.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TINY_SHAPE = dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=512, tie_embeddings=True,
                  qkv_bias=True, max_position=512)
"""``--shape tiny``: a shape small enough to train two steps on a CPU in a test."""
CHILD_TIMEOUT_S = 300
"""A variant that takes longer (a kernel compile that hangs) is recorded as failed; the others still run."""


def recipe_fields(name: str) -> dict[str, Any]:
    """The recipe's own YAML (model, max_length, per_device_batch_size, gradient_checkpointing, torch_dtype,
    train_type), read without swiftkit's recipe model (pydantic is not on the GPU machine)."""
    import yaml

    path = ROOT / "recipes" / f"{name}.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"{path}: cannot read the recipe ({type(exc).__name__})")
    missing = [k for k in ("model", "max_length", "per_device_batch_size") if k not in data]
    if missing:
        raise SystemExit(f"{path}: {', '.join(missing)}: missing (the benchmark needs them)")
    return data


def shape_for(args: argparse.Namespace, recipe: dict[str, Any]):
    """(ModelShape, where it came from)."""
    from swiftkit.train.sizing import ModelShape, find_shape

    if args.shape == "tiny":
        return ModelShape(**TINY_SHAPE), "benchmarks.gpu_bench.TINY_SHAPE"
    shape, where = find_shape(recipe["model"])
    if shape is None:
        raise SystemExit(where)
    return shape, where


def model_config(shape) -> Any:
    """A transformers config of the shape's family: Qwen2 (q/k/v bias), Qwen3 (q/k norm), else Llama."""
    import transformers

    common = dict(hidden_size=shape.hidden, num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                  num_key_value_heads=shape.kv_heads, intermediate_size=shape.intermediate, vocab_size=shape.vocab,
                  tie_word_embeddings=shape.tie_embeddings, max_position_embeddings=shape.max_position or 4096,
                  use_cache=False)
    if shape.qk_norm:
        return transformers.Qwen3Config(head_dim=shape.hd, **common)
    if shape.qkv_bias:
        return transformers.Qwen2Config(**common)
    return transformers.LlamaConfig(head_dim=shape.hd, **common)


def card_from_name(name: str) -> tuple[str, Optional[float]]:
    """(card name for the file name, dense bf16 TFLOPS) of a CUDA device name such as "NVIDIA H100 80GB HBM3", from
    swiftkit.train.sizing.GPUS (the longest entry whose model number stands alone in the name, and whose memory,
    when the entry names one, is in it: "A100-SXM4-80GB" is the A100-80G, "A10" is not an A100); an unknown card
    keeps its own name and has no peak (no MFU)."""
    import re

    from swiftkit.train.sizing import GPUS

    low = name.lower()
    for gpu in sorted(GPUS.values(), key=lambda g: len(g.name), reverse=True):
        model, _, memory = gpu.name.lower().partition("-")
        if re.search(rf"(?<![0-9a-z]){re.escape(model)}(?![0-9a-z])", low) and (not memory or memory in low):
            return gpu.name.lower(), gpu.bf16_tflops
    return "-".join(filter(None, re.split(r"[^0-9a-z]+", low))), None


def card_of(device: str) -> tuple[str, Optional[float]]:
    """(card name, dense bf16 TFLOPS or None) of the device that trains: "cpu" for the CPU."""
    if device == "cpu":
        return "cpu", None
    import torch

    return card_from_name(torch.cuda.get_device_name(0))


def estimate_for(shape, seq_len: int, batch: int, gc: bool, dtype_bytes: int, liger: bool,
                 tflops: Optional[float]) -> dict[str, Any]:
    """swiftkit's estimate of one process training this shape (full parameters, no DeepSpeed)."""
    from swiftkit.train.sizing import DEFAULT_MFU, FRAMEWORK_BYTES, Setup, estimate

    est = estimate(Setup(shape=shape, train_type="full", seq_len=seq_len, micro_batch=batch, world=1, zero=None,
                         gradient_checkpointing=gc, dtype_bytes=dtype_bytes, loss="fused" if liger else "torch"))
    out: dict[str, Any] = {
        "components": {name: nbytes for name, nbytes, _ in est.components},
        "total_bytes": est.total,
        "total_without_framework_bytes": est.total - FRAMEWORK_BYTES,
        "assumptions": est.assumptions,
        "assumed_mfu": DEFAULT_MFU,
    }
    if tflops:
        out["tokens_per_s_at_assumed_mfu"] = round(DEFAULT_MFU * tflops * 1e12 / (6 * shape.params()), 1)
    return out


# ---- one variant, in its own process --------------------------------------------------------------------------------

def train_variant(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import transformers

    recipe = recipe_fields(args.recipe)
    shape, _ = shape_for(args, recipe)
    seq_len, batch = args.seq_len or recipe["max_length"], args.batch or recipe["per_device_batch_size"]
    gc = bool(recipe.get("gradient_checkpointing", True)) if args.gradient_checkpointing is None \
        else args.gradient_checkpointing
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    attn = "flash_attention_2" if variant == "liger_flash" else "sdpa"
    if variant.startswith("liger"):
        import liger_kernel.transformers as lk

        family = {"Qwen2Config": "qwen2", "Qwen3Config": "qwen3", "LlamaConfig": "llama"}
        apply = getattr(lk, f"apply_liger_kernel_to_{family[type(model_config(shape)).__name__]}")
        apply(rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=True)
    torch.manual_seed(0)
    config = model_config(shape)
    torch.set_default_dtype(dtype)  # built in place in its dtype (no torch_dtype/dtype keyword: renamed across releases)
    with device:
        model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation=attn)
    model.train()
    if gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)  # states in the weights' dtype: plain PyTorch
    ids = torch.randint(0, shape.vocab, (batch, seq_len), device=device)
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    losses, start = [], 0.0
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens_per_s = args.steps * batch * seq_len / seconds
    card, tflops = card_of(args.device)
    peak = torch.cuda.max_memory_allocated() if cuda else None
    est = estimate_for(shape, seq_len, batch, gc, 2 if dtype == torch.bfloat16 else 4, variant.startswith("liger"),
                       tflops)
    result: dict[str, Any] = {
        "name": variant, "attn_implementation": attn, "liger": variant.startswith("liger"),
        "peak_memory_bytes": peak, "peak_memory_gib": round(peak / (1 << 30), 2) if peak is not None else None,
        "tokens_per_s": round(tokens_per_s, 1), "seconds_per_step": round(seconds / args.steps, 4),
        "mfu": round(6 * shape.params() * tokens_per_s / (tflops * 1e12), 4) if tflops else None,
        "losses": [round(x, 4) for x in losses],
        "estimate": est,
    }
    if peak is not None:
        result["peak_over_estimate_without_framework"] = round(peak / est["total_without_framework_bytes"], 3)
    return result


# ---- the parent: variants, versions, the file ---------------------------------------------------------------------

def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _version(dist: str) -> Optional[str]:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def variants_for(device: str, requested: str) -> tuple[list[str], list[str]]:
    """(variants to run, why each other one is skipped)."""
    if requested != "auto":
        return [v.strip() for v in requested.split(",") if v.strip()], []
    run, skipped = ["baseline"], []
    if device != "cuda":
        skipped.append("liger, liger_flash: CUDA kernels (device cpu)")
    elif not _importable("liger_kernel"):
        skipped.append("liger, liger_flash: liger_kernel does not import (scripts/gpu_wheelhouse.sh)")
    else:
        run.append("liger")
        if _importable("flash_attn"):
            run.append("liger_flash")
        else:
            skipped.append("liger_flash: flash_attn does not import")
    return run, skipped


def _child_args(args: argparse.Namespace) -> list[str]:
    out = ["--recipe", args.recipe, "--shape", args.shape, "--device", args.device, "--steps", str(args.steps),
           "--warmup", str(args.warmup)]
    if args.seq_len:
        out += ["--seq-len", str(args.seq_len)]
    if args.batch:
        out += ["--batch", str(args.batch)]
    if args.gradient_checkpointing is not None:
        out += ["--gradient-checkpointing", str(args.gradient_checkpointing).lower()]
    return out


def run_variant(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """One variant in a fresh process: its JSON line, or its error."""
    cmd = [sys.executable, "-m", "benchmarks.gpu_bench", "--child", variant, *_child_args(args)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.child_timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"name": variant, "error": f"timed out after {args.child_timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"name": variant, "error": f"exit {done.returncode}: {tail[:300]}"}
    return json.loads(lines[-1])


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="muice_full", help="whose model shape, max_length and batch (muice_full)")
    parser.add_argument("--shape", choices=["recipe", "tiny"], default="recipe",
                        help="recipe: the recipe model's shape; tiny: a small shape for a CPU check")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seq-len", type=int, default=None, help="default: the recipe's max_length")
    parser.add_argument("--batch", type=int, default=None, help="default: the recipe's per_device_batch_size")
    parser.add_argument("--gradient-checkpointing", type=lambda s: s.lower() == "true", default=None,
                        help="true/false; default: the recipe's")
    parser.add_argument("--variants", default="auto", help="auto, or a comma list of baseline,liger,liger_flash")
    parser.add_argument("--child-timeout", type=int, default=CHILD_TIMEOUT_S)
    parser.add_argument("--out", default=None, help="default: benchmarks/results/gpu-<card>.json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    if args.child:
        print(json.dumps(train_variant(args.child, args)), flush=True)
        return 0
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("gpu-bench: no CUDA device here (--device cpu runs the CPU check)", file=sys.stderr)
            return 2
    from datasets_prep.atomic import write_json
    from swiftkit.train.sizing import BUNDLED_SHAPES  # noqa: F401  (fails here, not in a child, when swiftkit is absent)

    recipe = recipe_fields(args.recipe)
    shape, where = shape_for(args, recipe)
    card, tflops = card_of(args.device)
    names, skipped = variants_for(args.device, args.variants)
    results = []
    for name in names:
        print(f"gpu-bench: {name} ...", file=sys.stderr, flush=True)
        results.append(run_variant(name, args))
        print(f"gpu-bench: {json.dumps(results[-1])[:300]}", file=sys.stderr, flush=True)
    out = Path(args.out) if args.out else RESULTS / f"gpu-{card}.json"
    write_json(out, {
        "card": card, "device": args.device, "bf16_tflops": tflops,
        "recipe": args.recipe, "model": recipe["model"], "shape": {"source": where, "params": shape.params(),
                                                                   **vars(shape)},
        "seq_len": args.seq_len or recipe["max_length"], "micro_batch": args.batch or recipe["per_device_batch_size"],
        "steps": args.steps, "warmup_steps": args.warmup,
        "versions": {d: _version(d) for d in ("torch", "transformers", "liger-kernel", "flash-attn")},
        "variants": results, "skipped": skipped,
    })
    print(f"gpu-bench: wrote {out}", flush=True)
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
