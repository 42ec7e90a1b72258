"""Will it fit, and how long will it take? Per-GPU memory and time per epoch from a model's config.json alone.

No weights load and nothing heavy is imported (no torch, no hub client): ``swiftkit plan`` prints this, and train
preflight refuses a plan that cannot fit before any model loads. Every figure is an estimate from stated assumptions
(:attr:`Estimate.assumptions`); tests/test_sizing.py anchors it to published measurements.

Memory per GPU, by component:

- weights, gradients and optimizer states by train type and ZeRO stage. Plain PyTorch (one GPU or DDP) keeps the
  weights, their gradients and AdamW's two states in the weights' dtype (bf16: 2 + 2 + 4 = 8 bytes per trained
  parameter). DeepSpeed follows its own estimators (deepspeed.runtime.zero, 0.17): ZeRO-1/2 ``2P + 18P/N`` (16-bit
  weights; 16- and 32-bit gradients, 32-bit master weights, two 32-bit states partitioned), ZeRO-3
  ``4·largest_layer + 18P/N``, the offload variants their ``cpu_offload`` branches. LoRA: frozen base weights
  plus the adapter's states (peft keeps adapters in fp32); QLoRA: the decoder layers' linear weights in NF4 with
  double quantization (0.5 + 1/64 + 4/(64·256) bytes per weight), embeddings and lm_head in the compute dtype.
- activations: sdpa/flash attention (no sequence² term). With gradient checkpointing, every layer's input
  (tokens × hidden) plus one layer recomputed during backward; without, every layer's saved tensors.
- logits and loss: tokens × vocab × 12 bytes (the fp32 log-softmax, its gradient and the gradient's input, alive
  together in backward); Liger's fused linear cross entropy never builds it (tokens × hidden × 4 instead).
- framework overhead: CUDA context, cuBLAS/NCCL workspaces and allocator slack (1 GiB), and DeepSpeed's buckets.
- GRPO with a colocated vLLM (:func:`recipe_estimate`): the engine's share of the card in the training step (all of
  it without sleep mode, none asleep) and a second phase, generation: the share plus what the trainer keeps.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

from swiftkit.core.errors import SwiftkitError

if TYPE_CHECKING:
    from swiftkit.train.recipes import Recipe

GIB = 1 << 30
FRAMEWORK_BYTES = 1 * GIB
"""CUDA context, cuBLAS/NCCL workspaces and the caching allocator's slack, per GPU (a stated assumption)."""
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
"""Bytes per weight of bitsandbytes NF4 with double quantization: 4 bits, an 8-bit absmax per block of 64, an fp32
scale per 256 blocks."""
ENGINE_ROOM = 1.1
"""A colocated vLLM needs its bf16 weights and at least this much more for a KV cache and its activations."""
TIGHT = 0.9
"""A total above this share of the card's memory is "tight": fragmentation or a longer batch can tip it over."""
DEFAULT_MFU = 0.35
"""Model FLOPs utilisation assumed for time estimates (6·N·tokens model FLOPs over the card's dense bf16 peak)."""

Zero = Optional[Literal["zero0", "zero1", "zero2", "zero3", "zero2_offload", "zero3_offload"]]
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# ---- the model's shape ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of a dense decoder-only transformer (Llama/Qwen family)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tie_embeddings: bool
    head_dim: int = 0
    """0: hidden / heads."""
    qkv_bias: bool = False
    qk_norm: bool = False
    max_position: Optional[int] = None

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each decoder-layer linear, by its usual module name."""
        q, kv, h, i = self.heads * self.hd, self.kv_heads * self.hd, self.hidden, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def linear_params(self) -> int:
        """Weights of all decoder-layer linears (what QLoRA quantizes)."""
        return self.layers * sum(a * b for a, b in self.linear_shapes().values())

    def params(self) -> int:
        q, kv = self.heads * self.hd, self.kv_heads * self.hd
        per_layer = 2 * self.hidden + (q + 2 * kv if self.qkv_bias else 0) + (2 * self.hd if self.qk_norm else 0)
        embeddings = self.vocab * self.hidden * (1 if self.tie_embeddings else 2)
        return self.linear_params() + self.layers * per_layer + embeddings + self.hidden

    def largest_layer(self) -> int:
        """The largest single module's own parameters (DeepSpeed's ``largest_layer_params``): the embedding, unless
        an MLP projection is bigger."""
        return max(self.vocab * self.hidden, self.hidden * self.intermediate)

    def lora_params(self, rank: int, targets: list[str] | tuple[str, ...]) -> int:
        """Adapter parameters: r·(in + out) per targeted linear; ``all-linear`` is every decoder-layer linear."""
        names = LINEARS if "all-linear" in targets else [t for t in targets if t in LINEARS]
        shapes = self.linear_shapes()
        return self.layers * sum(rank * sum(shapes[n]) for n in names)


BUNDLED_SHAPES: dict[str, ModelShape] = {
    # The shipped recipes' models, from their published config.json files (used only when no config.json is here).
    "Qwen/Qwen2-1.5B-Instruct": ModelShape(1536, 28, 12, 2, 8960, 151936, True, qkv_bias=True, max_position=32768),
    "Qwen/Qwen2.5-1.5B": ModelShape(1536, 28, 12, 2, 8960, 151936, True, qkv_bias=True, max_position=131072),
    "Qwen/Qwen3-8B": ModelShape(4096, 36, 32, 8, 12288, 151936, False, head_dim=128, qk_norm=True,
                                max_position=40960),
    "hfl/llama-3-chinese-8b-instruct-v3": ModelShape(4096, 32, 32, 8, 14336, 128256, False, max_position=8192),
}
"""The shipped recipes' model shapes, so that ``swiftkit plan`` answers offline with nothing cached (said so)."""

_QKV_BIAS_TYPES = ("qwen2", "qwen2_5", "qwen2_moe", "qwen")


def shape_from_config(config: dict[str, Any], where: str = "config.json") -> ModelShape:
    """The shape of a dense decoder from its config.json (``text_config`` for multimodal wrappers). A missing or
    non-integer field, or a mixture-of-experts model, is a one-line SwiftkitError naming the field."""
    cfg = config.get("text_config") or config
    if any(k in cfg for k in ("num_experts", "num_local_experts", "n_routed_experts")):
        raise SwiftkitError(f"{where}: a mixture-of-experts model; the estimate covers dense models only")

    def need(key: str) -> int:
        value = cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SwiftkitError(f"{where}: {key}: expected a positive integer, got {value!r}")
        return value

    heads = need("num_attention_heads")
    model_type = str(cfg.get("model_type", ""))
    return ModelShape(
        hidden=need("hidden_size"), layers=need("num_hidden_layers"), heads=heads,
        kv_heads=cfg.get("num_key_value_heads") or heads, intermediate=need("intermediate_size"),
        vocab=need("vocab_size"), tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        head_dim=cfg.get("head_dim") or 0,
        qkv_bias=bool(cfg.get("attention_bias", model_type in _QKV_BIAS_TYPES)),
        qk_norm=model_type.startswith("qwen3"),
        max_position=cfg.get("max_position_embeddings"))


def find_shape(model: str, hub: Optional[str] = None) -> tuple[Optional[ModelShape], str]:
    """The model's shape and where it came from: its local folder's config.json, the hub cache's copy, else the
    bundled table. ``(None, why)`` when none has it; a config.json that is there but unusable raises."""
    from swiftkit.core.local_model import cached_config_file, is_local_model

    if is_local_model(model):
        files = [Path(model).expanduser() / "config.json"]
    else:
        cached = cached_config_file(model, hub)
        files = [cached] if cached else []
    for path in files:
        if path.is_file():
            try:
                config = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise SwiftkitError(f"{path}: unreadable ({type(exc).__name__})") from None
            return shape_from_config(config, str(path)), str(path)
    if model in BUNDLED_SHAPES:
        return BUNDLED_SHAPES[model], f"swiftkit's bundled shape of {model} (no config.json here)"
    return None, (f"{model}: no config.json here (not a local folder, not in the hub cache, not a shipped recipe's "
                  "model): memory not estimated")


# ---- GPUs ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gib: float
    """Total memory as nvidia-smi reports it."""
    bf16_tflops: float
    """Dense bf16 tensor throughput (fp32 accumulate), vendor sheet."""


GPUS: dict[str, Gpu] = {g.name.lower(): g for g in (
    Gpu("3090", 24.0, 71.0),
    Gpu("4090", 24.0, 165.2),
    Gpu("5090", 31.8, 209.5),
    Gpu("A10", 22.5, 125.0),
    Gpu("L4", 22.5, 121.0),
    Gpu("L40S", 45.0, 362.0),
    Gpu("A100-40G", 40.0, 312.0),
    Gpu("A100-80G", 80.0, 312.0),
    Gpu("H100", 79.6, 989.0),
    Gpu("H200", 140.4, 989.0),
)}


def gpu(name: str) -> Gpu:
    """A card of the table by name, case-insensitive (``rtx4090`` and ``RTX 4090`` work too)."""
    key = name.lower().replace(" ", "").removeprefix("rtx").removeprefix("nvidia")
    found = GPUS.get(key) or GPUS.get(key.replace("-80gb", "").replace("80g", "").rstrip("-"))
    if found is None:
        raise SwiftkitError(f"--gpu-type {name}: unknown; choose one of {', '.join(g.name for g in GPUS.values())}")
    return found


# ---- the estimate ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setup:
    """One training configuration as the estimate sees it."""

    shape: ModelShape
    train_type: Literal["full", "lora", "qlora"]
    seq_len: int
    micro_batch: int = 1
    world: int = 1
    zero: Zero = None
    """DeepSpeed preset in use (None: plain PyTorch / DDP)."""
    gradient_checkpointing: bool = True
    dtype_bytes: int = 2
    lora_rank: int = 8
    lora_targets: tuple[str, ...] = ("all-linear",)
    lora_dropout: float = 0.0
    optimizer: Literal["adamw", "adamw_8bit"] = "adamw"
    loss: Literal["torch", "fused"] = "torch"
    """fused: the loss never holds the full-vocabulary fp32 logits (Liger's fused linear cross entropy; torchtune's
    compiled chunked cross entropy)."""
    reference: bool = False
    """A frozen full-weight reference model beside the trained one (full DPO: ms-swift loads ``--model`` twice)."""

    @property
    def tokens(self) -> int:
        """Tokens in one micro-batch, at worst (every sample at seq_len)."""
        return self.seq_len * self.micro_batch


@dataclass
class Estimate:
    """Per-GPU memory by component (bytes), with the assumptions behind each."""

    components: list[tuple[str, int, str]] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    rollout: Optional[tuple[int, str]] = None
    """GRPO with a colocated vLLM: the generation phase's bytes per GPU and how they were counted (the components
    are the training step's); None for every other run."""

    def add(self, name: str, nbytes: float, note: str) -> None:
        self.components.append((name, int(nbytes), note))

    @property
    def total(self) -> int:
        """The training step's bytes per GPU: the sum of the components."""
        return sum(b for _, b, _ in self.components)

    @property
    def peak(self) -> int:
        """What a GPU must hold: the training step, or GRPO's generation phase where that is larger."""
        return max(self.total, self.rollout[0] if self.rollout else 0)

    def part(self, name: str) -> int:
        return sum(b for n, b, _ in self.components if n == name)


def model_states(s: Setup) -> tuple[float, float, float, str]:
    """(weights, gradients, optimizer states) bytes per GPU and how they were counted."""
    shape, n = s.shape, s.world
    total = shape.params()
    if s.train_type == "full":
        trained, frozen_bytes = total, 0.0
    else:
        trained = shape.lora_params(s.lora_rank, s.lora_targets)
        if s.train_type == "qlora":
            linear = shape.linear_params()
            frozen_bytes = linear * NF4_BYTES + (total - linear) * s.dtype_bytes
        else:
            frozen_bytes = total * s.dtype_bytes
    zero = s.zero
    if zero is None:
        # plain PyTorch: full training keeps states in the weights' dtype; peft's adapters are fp32
        wb = s.dtype_bytes if s.train_type == "full" else 4
        opt = 2 * wb if s.optimizer == "adamw" else 2
        how = (f"plain PyTorch: weights, gradients and AdamW states in {'the weights dtype' if wb == s.dtype_bytes else 'fp32'}"
               f" ({wb} + {wb} + {opt} bytes per trained parameter)")
        grads = wb * trained
        if n > 1:
            # DDP's reducer all-reduces through flat buckets that hold a second copy of every gradient unless
            # gradient_as_bucket_view is on, and transformers' Trainer leaves it off.
            grads += wb * trained
            how += f"; DDP over {n}: its gradient buckets, a second copy of the gradients"
        return frozen_bytes + wb * trained, grads, opt * trained, how
    if zero == "zero3":
        # DeepSpeed: 4·largest_layer + 18P/N; the frozen base is partitioned too
        return (frozen_bytes / n + 4 * shape.largest_layer(), 6 * trained / n, 12 * trained / n,
                f"DeepSpeed ZeRO-3: 4·largest_layer ({shape.largest_layer() / 1e6:.0f}M) + 18P/N over {n}")
    if zero == "zero3_offload":
        return (4 * shape.largest_layer(), 0, 0,
                "DeepSpeed ZeRO-3 offload: 4·largest_layer on the GPU; parameters and states in CPU memory")
    if zero == "zero2_offload":
        return frozen_bytes + 2 * trained, 0, 0, "DeepSpeed ZeRO-2 offload: 2P on the GPU; states in CPU memory"
    if zero == "zero1":
        return (frozen_bytes + 2 * trained, 2 * trained + 4 * trained / n, 12 * trained / n,
                f"DeepSpeed ZeRO-1: 2P weights + 2P gradients + 16P/N over {n}")
    parts = n if zero == "zero2" else 1
    return (frozen_bytes + 2 * trained, 6 * trained / parts, 12 * trained / parts,
            f"DeepSpeed {'ZeRO-2' if zero == 'zero2' else 'ZeRO-0'}: 2P + 18P/N over {parts}")


def layer_activation_bytes(s: Setup) -> float:
    """Bytes one decoder layer saves for backward, per token: norms (input and the fp32 copy they compute in),
    q/k/v and their rotated copies, attention output, the MLP's gate, up, activation and product; LoRA dropout
    copies of each adapted linear's input (with dropout > 0)."""
    sh, a = s.shape, s.dtype_bytes
    q, kv, h, i = sh.heads * sh.hd, sh.kv_heads * sh.hd, sh.hidden, sh.intermediate
    per_token = a * (4 * h + 3 * q + 3 * kv + 4 * i) + 2 * 4 * h
    if s.train_type != "full" and s.lora_dropout > 0:
        names = LINEARS if "all-linear" in s.lora_targets else [t for t in s.lora_targets if t in LINEARS]
        per_token += (a + 1) * sum(sh.linear_shapes()[n][0] for n in names)
    return per_token


def estimate(s: Setup) -> Estimate:
    """Per-GPU memory of one training step at its peak, by component."""
    sh, t = s.shape, s.tokens
    e = Estimate()
    weights, grads, optim, how = model_states(s)
    kind = {"full": "all parameters", "lora": f"LoRA r{s.lora_rank}", "qlora": f"QLoRA r{s.lora_rank} on NF4"}
    e.add("weights", weights, f"{sh.params() / 1e9:.2f}B parameters, {kind[s.train_type]}")
    e.add("gradients", grads, how)
    e.add("optimizer", optim, "8-bit AdamW states (2 bytes)" if s.optimizer == "adamw_8bit" else "AdamW, 2 states")
    if s.reference:  # no gradients or optimizer; ZeRO-3 partitions it like the trained weights
        share = s.world if s.zero in ("zero3", "zero3_offload") else 1
        e.add("reference", sh.params() * s.dtype_bytes / share,
              "a frozen copy of the starting weights (DPO; GRPO's KL)")
    layer = layer_activation_bytes(s) * t
    if s.gradient_checkpointing:
        e.add("activations", sh.layers * t * sh.hidden * s.dtype_bytes + layer + 2 * t * sh.hidden * s.dtype_bytes,
              f"gradient checkpointing: {sh.layers} layer inputs + 1 layer recomputed, {t} tokens")
    else:
        e.add("activations", sh.layers * layer, f"no checkpointing: {sh.layers} layers' saved tensors, {t} tokens")
    if s.loss == "fused":
        e.add("logits", t * sh.hidden * 4, "fused linear cross entropy (Liger): no full logits tensor")
    else:
        e.add("logits", t * sh.vocab * 12, f"{t} tokens x vocab {sh.vocab} x 12 bytes (fp32 log-softmax and grads)")
    zero = s.zero
    trained = sh.params() if s.train_type == "full" else sh.lora_params(s.lora_rank, s.lora_targets)
    buckets = 0.0
    if zero in ("zero0", "zero1", "zero2", "zero2_offload"):
        buckets = 2 * min(2e8, trained) * 2  # ms-swift's reduce and allgather buckets, 2e8 elements each, 16-bit
    elif zero in ("zero3", "zero3_offload"):
        buckets = 0.9 * sh.hidden ** 2 * 2 * 2  # stage3_prefetch_bucket_size "auto" = 0.9·hidden², 16-bit, x2
    e.add("framework", FRAMEWORK_BYTES + buckets,
          "CUDA context, workspaces, allocator slack" + (" + DeepSpeed buckets" if buckets else ""))
    e.assumptions = [
        f"{s.micro_batch} sample(s) x {s.seq_len} tokens per micro-batch (every sample at max_length: the worst case)",
        "sdpa/flash attention (no sequence² attention scores)",
        f"{'bf16/fp16' if s.dtype_bytes == 2 else 'fp32'} weights and activations",
        f"{s.world} process(es)" + (f", DeepSpeed {zero}" if zero else ", no DeepSpeed" if s.world == 1 else ", DDP"),
    ]
    return e


# ---- a recipe's setup, data and time --------------------------------------------------------------------------------

def setup_for(recipe: "Recipe", world: int, shape: ModelShape, *, liger: bool = False) -> Setup:
    """The estimate's view of a recipe on ``world`` processes. DeepSpeed only with 2+ processes (as the plan)."""
    lora = recipe.lora
    pairs = recipe.dpo is not None  # DPO: each sample is a chosen and a rejected sequence, one forward each
    # full DPO, and full GRPO with a KL term, load the starting weights a second time as the frozen reference; LoRA
    # takes the base with the adapter switched off
    kl = pairs or (recipe.grpo is not None and recipe.grpo.beta > 0)
    return Setup(
        shape=shape, train_type=recipe.run_train_type, seq_len=recipe.max_length,
        micro_batch=recipe.per_device_batch_size * (2 if pairs else 1), world=world,
        reference=kl and recipe.train_type == "full",
        zero=recipe.launch.deepspeed if world > 1 else None,
        gradient_checkpointing=recipe.gradient_checkpointing,
        dtype_bytes=4 if recipe.torch_dtype == "float32" else 2,
        lora_rank=lora.rank if lora else 8, lora_targets=tuple(lora.target_modules) if lora else (),
        lora_dropout=lora.dropout if lora else 0.0,
        optimizer="adamw_8bit" if str(recipe.extra_args.get("optim", "")).endswith("8bit") else "adamw",
        loss="fused" if liger or str(recipe.extra_args.get("use_liger_kernel", "")).lower() == "true" else "torch")


@dataclass(frozen=True)
class DataStats:
    records: int
    tokens_per_sample: float
    source: str


def _manifest_stats(path: Path) -> tuple[Optional[tuple[int, float]], str]:
    """(train records, median tokens) of a prep manifest; ``(None, why)`` when it has no token statistics."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        n, median = int(manifest["train"]), manifest["token_lengths"]["median"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, f"{path}: no manifest with token statistics (run `make prep`): time not estimated"
    if median is None:
        return None, f"{path}: no token statistics (prep counted no records): time not estimated"
    return (n, float(median)), ""


def data_stats(recipe: "Recipe") -> tuple[Optional[DataStats], str]:
    """Training records and tokens per sample (the manifest's median, capped at max_length) from the prepared data's
    manifest.json beside each train file, plus each data.mix file at its share (swiftkit.train.mixing);
    ``(None, why)`` when there is none."""
    from swiftkit.train.mixing import dataset_file, mix_counts

    records, weighted, seen = 0, 0.0, []
    for name in recipe.data.train:
        path = Path(dataset_file(name)).parent / "manifest.json"
        if path in seen:
            continue
        seen.append(path)
        found, why = _manifest_stats(path)
        if found is None:
            return None, why
        records += found[0]
        weighted += found[0] * min(found[1], recipe.max_length)
    if records and recipe.data.mix:
        for mix, n in zip(recipe.data.mix, mix_counts(records, [m.share for m in recipe.data.mix])):
            path = Path(mix.file).parent / "manifest.json"
            found, why = _manifest_stats(path)
            if found is None:
                return None, why
            seen.append(path)
            records += n
            weighted += n * min(found[1], recipe.max_length)
    if not records:
        return None, "no training records in the manifests: time not estimated"
    return DataStats(records, weighted / records, ", ".join(map(str, seen))), ""


def timing(recipe: "Recipe", shape: ModelShape, stats: DataStats, world: int, card: Gpu,
           mfu: float = DEFAULT_MFU) -> dict[str, Any]:
    """Steps and time per epoch (or for max_steps) at ``mfu`` of the card's dense bf16 peak, 6·N·tokens FLOPs."""
    steps_per_epoch = math.ceil(stats.records / recipe.global_batch_size)
    tokens_per_step = recipe.global_batch_size * stats.tokens_per_sample
    seconds_per_step = 6 * shape.params() * tokens_per_step / (world * card.bf16_tflops * 1e12 * mfu)
    steps = recipe.max_steps or math.ceil(steps_per_epoch * recipe.num_train_epochs)
    return {"records": stats.records, "tokens_per_sample": round(stats.tokens_per_sample, 1),
            "tokens_per_step": round(tokens_per_step), "steps_per_epoch": steps_per_epoch, "steps": steps,
            "seconds_per_epoch": round(seconds_per_step * steps_per_epoch, 1),
            "seconds_total": round(seconds_per_step * steps, 1), "mfu": mfu, "gpu": card.name}


# ---- verdict and fixes -------------------------------------------------------------------------------------------------

def recipe_estimate(recipe: "Recipe", setup: Setup, memory_bytes: Optional[int] = None) -> Estimate:
    """:func:`estimate` of the recipe's training step, and for GRPO with a colocated vLLM what the engine holds on
    each GPU (``memory_bytes``: the card's memory, which vLLM takes its share of; None: not known, said in the
    assumptions). The engine takes ``gpu_memory_utilization`` of the card while it generates; during the training
    step it keeps all of it (sleep_level 0) or releases it (1: its weights backed up in CPU memory, 2: dropped;
    vLLM's sleep mode frees the weights and the KV cache from the GPU at either level). While it generates, the
    trainer keeps its weights and optimizer states on the GPU unless offload_model / offload_optimizer move them to
    CPU memory (gradients are freed after each optimizer step)."""
    e = estimate(setup)
    ro = recipe.grpo.rollout if recipe.grpo is not None else None
    if ro is None or ro.backend != "vllm_colocate":
        if ro is not None:
            e.assumptions.append(f"GRPO rollouts by {ro.backend}: no engine on the training GPUs")
        return e
    if memory_bytes is None:
        e.assumptions.append("plus vLLM's share while it generates: gpu_memory_utilization "
                             f"{ro.gpu_memory_utilization:g} of the card (name one with --gpu-type)")
        return e
    share = ro.gpu_memory_utilization * memory_bytes
    asleep = share if ro.sleep_level == 0 else 0.0
    e.add("rollout", asleep, f"vLLM during the step, sleep_level {ro.sleep_level}: " +
          ("all of its share kept" if ro.sleep_level == 0 else "asleep, its weights and KV cache off the GPU"))
    kept = e.part("framework")
    if not ro.offload_model:
        kept += e.part("weights") + e.part("reference")
    if not ro.offload_optimizer:
        kept += e.part("optimizer")
    offloaded = [name for name, on in (("weights", ro.offload_model), ("optimizer", ro.offload_optimizer)) if on]
    # the engine's own bf16 weights (split over its tensor-parallel GPUs) and room for a KV cache must fit its share,
    # or vLLM refuses to start
    engine_floor = ENGINE_ROOM * setup.shape.params() * 2 / ro.tensor_parallel_size
    engine = max(share, engine_floor)
    least = math.ceil(engine_floor / memory_bytes * 20) / 20
    short = (f"; the share cannot hold the engine's weights and a KV cache (~{engine_floor / GIB:.1f} GiB, counted "
             f"instead): set grpo.rollout.gpu_memory_utilization to {least:g} or more" if engine_floor > share else "")
    trainer = "framework" if offloaded else "weights, optimizer and framework"
    e.rollout = (int(engine + kept), f"vLLM's share {ro.gpu_memory_utilization:g} x {memory_bytes / GIB:g} GiB = "
                 f"{share / GIB:.2f} GiB + the trainer's {trainer} kept {kept / GIB:.2f} GiB"
                 + (f" ({' and '.join(offloaded)} offloaded to CPU)" if offloaded else "") + short)
    return e


def verdict(total: int, memory_bytes: int) -> str:
    if total <= TIGHT * memory_bytes:
        return "fits"
    return "tight" if total <= memory_bytes else "does not fit"


def fixes(recipe: "Recipe", setup: Setup, memory_bytes: int) -> list[str]:
    """The nearest changes that make it fit, nearest first (each as the override to pass)."""
    out: list[tuple[str, Setup]] = []
    if not setup.gradient_checkpointing:
        out.append(("--set gradient_checkpointing=true", replace(setup, gradient_checkpointing=True)))
    if setup.world > 1 and setup.zero != "zero3":
        out.append(("--set launch.deepspeed=zero3", replace(setup, zero="zero3")))
    if setup.loss != "fused":
        out.append(("--set extra_args.use_liger_kernel=true (needs liger-kernel)", replace(setup, loss="fused")))
    length = setup.seq_len // 2
    while length >= 256:
        out.append((f"--set max_length={length}", replace(setup, seq_len=length)))
        length //= 2
    if setup.train_type == "full":
        out.append(("--set train_type=lora --set lora.rank=8", replace(setup, train_type="lora", lora_rank=8,
                                                                     lora_targets=("all-linear",), reference=False)))
    if setup.train_type != "qlora":
        out.append(("--set lora.qlora=true" if setup.train_type == "lora" else
                    "--set train_type=lora --set lora.qlora=true",
                    replace(setup, train_type="qlora", lora_targets=setup.lora_targets or ("all-linear",),
                            reference=False)))
    for gpus in (2, 4, 8, 16):
        if gpus > setup.world:
            out.append((f"--gpus {gpus} --set launch.deepspeed=zero3", replace(setup, world=gpus, zero="zero3")))
    engine: list[tuple[str, "Recipe", Setup]] = []  # the engine's own switches first: nothing else changes
    ro = recipe.grpo.rollout if recipe.grpo is not None else None
    if ro is not None and ro.backend == "vllm_colocate":
        switches = [("sleep_level", 1)] if ro.sleep_level == 0 else []
        switches += [(name, True) for name in ("offload_optimizer", "offload_model") if not getattr(ro, name)]
        for name, value in switches:
            changed = recipe.model_copy(update={"grpo": recipe.grpo.model_copy(update={
                "rollout": ro.model_copy(update={name: value})})})
            engine.append((f"--set grpo.rollout.{name}={str(value).lower()}", changed, setup))
    tried = engine + [(how, recipe, s) for how, s in out]
    peaks = [(how, recipe_estimate(r, s, memory_bytes).peak) for how, r, s in tried]
    return [f"{how} (~{peak / GIB:.1f} GiB)" for how, peak in peaks if peak <= TIGHT * memory_bytes][:3]


# ---- a recipe's report --------------------------------------------------------------------------------------------------

@dataclass
class Sizing:
    """What ``swiftkit plan`` prints and ``--json`` carries under ``"sizing"``."""

    recipe: str
    processes: int
    shape_source: str
    estimate: Optional[Estimate] = None
    setup: Optional[Setup] = None
    gpu: Optional[Gpu] = None
    verdict: Optional[str] = None
    fixes: list[str] = field(default_factory=list)
    time: Optional[dict[str, Any]] = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"recipe": self.recipe, "processes": self.processes, "shape_source": self.shape_source}
        if self.estimate is not None:
            out["per_gpu_gib"] = {n: round(b / GIB, 2) for n, b, _ in self.estimate.components}
            out["per_gpu_gib"]["total"] = round(self.estimate.total / GIB, 2)
            if self.estimate.rollout:
                out["per_gpu_gib"]["generation"] = round(self.estimate.rollout[0] / GIB, 2)
                out["per_gpu_gib"]["peak"] = round(self.estimate.peak / GIB, 2)
                out["generation"] = self.estimate.rollout[1]
            out["components"] = [{"name": n, "gib": round(b / GIB, 2), "how": how}
                                 for n, b, how in self.estimate.components]
            out["assumptions"] = list(self.estimate.assumptions)
            out["parameters"] = self.setup.shape.params() if self.setup else None
        if self.gpu is not None:
            out["gpu"] = asdict(self.gpu)
            out["verdict"] = self.verdict
            out["fixes"] = list(self.fixes)
        out["time"] = self.time
        out["notes"] = list(self.notes)
        return out

    def lines(self) -> list[str]:
        """The breakdown as ``#`` comment lines (they paste harmlessly above the shell line)."""
        if self.estimate is None:
            return [f"# memory: {n}" for n in [self.shape_source, *self.notes]]
        e = self.estimate
        out = [f"# memory per GPU ({self.processes} process(es); shape from {self.shape_source}):"]
        for name, nbytes, how in e.components:
            out.append(f"#   {name:<12}{nbytes / GIB:7.2f} GiB  {how}")
        out.append(f"#   {'total':<12}{e.total / GIB:7.2f} GiB" + (" (the training step)" if e.rollout else ""))
        if e.rollout:
            out.append(f"#   {'generation':<12}{e.rollout[0] / GIB:7.2f} GiB  {e.rollout[1]}")
            out.append(f"#   {'peak':<12}{e.peak / GIB:7.2f} GiB")
        out.append("#   assuming " + "; ".join(e.assumptions))
        if self.gpu is not None:
            line = f"# verdict on {self.gpu.name} ({self.gpu.memory_gib:g} GiB): {self.verdict}"
            if self.verdict != "fits" and self.fixes:
                line += "; nearest fix: " + "; or ".join(self.fixes)
            elif self.verdict == "does not fit":
                line += "; no single change here makes it fit"
            out.append(line)
        else:
            out.append("# verdict: name a card with --gpu-type (" + ", ".join(g.name for g in GPUS.values()) + ")")
        if self.time:
            t = self.time
            out.append(f"# time: {t['records']} records x ~{t['tokens_per_sample']:g} tokens, {t['tokens_per_step']} "
                       f"tokens/step, {t['steps_per_epoch']} steps/epoch, {t['steps']} steps: "
                       f"~{_duration(t['seconds_per_epoch'])}/epoch, ~{_duration(t['seconds_total'])} in all on "
                       f"{self.processes} x {t['gpu']} at {t['mfu']:.0%} MFU (6·N·tokens)")
        out += [f"# {n}" for n in self.notes]
        return out


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def size_recipe(recipe: "Recipe", processes: int, *, gpu_type: Optional[str] = None, mfu: float = DEFAULT_MFU,
                liger: bool = False) -> Sizing:
    """The estimate for ``recipe`` on ``processes`` processes, with a verdict and time when a card is named."""
    card = gpu(gpu_type) if gpu_type else None
    if recipe.launch.device == "cpu":
        return Sizing(recipe.name, processes, "cpu recipe: no GPU memory to estimate (training runs in CPU memory)")
    try:
        shape, source = find_shape(recipe.model, recipe.hub)
    except SwiftkitError as exc:  # a config.json that is there but does not describe a dense decoder
        return Sizing(recipe.name, processes, f"not estimated: {exc}")
    if shape is None:
        return Sizing(recipe.name, processes, source)
    setup = setup_for(recipe, processes, shape, liger=liger)
    memory = int(card.memory_gib * GIB) if card is not None else None
    sizing = Sizing(recipe.name, processes, source, recipe_estimate(recipe, setup, memory), setup)
    if shape.max_position and recipe.max_length > shape.max_position:
        sizing.notes.append(f"max_length {recipe.max_length} exceeds the model's context {shape.max_position}")
    if card is not None and memory is not None:
        sizing.gpu, sizing.verdict = card, verdict(sizing.estimate.peak, memory)
        if sizing.verdict != "fits":
            sizing.fixes = fixes(recipe, setup, memory)
        if recipe.grpo is not None:  # generation, not the 6·N·tokens of training, sets a GRPO step's time
            sizing.notes.append("time: not estimated for GRPO (sampling the completions dominates a step)")
            return sizing
        stats, why = data_stats(recipe)
        if stats is None:
            sizing.notes.append(why)
        else:
            sizing.time = timing(recipe, shape, stats, processes, card, mfu)
    return sizing
