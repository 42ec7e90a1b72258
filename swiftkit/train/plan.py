"""Planning is pure: ``plan(recipe, cluster) -> Plan(env, argv)``. No I/O, no torch, no ms-swift import.

The plan is the ``swift sft`` command line a user could paste, plus the environment it needs:

- one process: ``CUDA_VISIBLE_DEVICES=0``;
- one node of N: ``NPROC_PER_NODE=N CUDA_VISIBLE_DEVICES=0,...,N-1`` (ms-swift then runs itself under torchrun);
- several nodes: also ``NNODES``, ``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``, the variables ms-swift's
  ``swift/cli/main.py`` turns into torchrun options;
- CPU recipes: ``CUDA_VISIBLE_DEVICES=`` (empty), ``--use_cpu true``, and ``--ddp_backend gloo`` for 2+ processes.

Gradient accumulation is derived from the recipe's global batch so that the optimization is the same on 1, 2 or 8
GPUs; a global batch that does not divide is refused. Secrets never enter a plan: the training process inherits
them from the caller's environment.
"""
from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from swiftkit.core.errors import SwiftkitError
from swiftkit.stack.dialect import SWIFT3, Dialect, pinned_flags
from swiftkit.train.fast_path import Switch
from swiftkit.train.grpo.rewards import OPTIONS_ENV, options_env_value
from swiftkit.train.methods import DEFAULT_METHOD, get_method
from swiftkit.train.mixing import SAMPLED, Mixture, dataset_file  # noqa: F401  (SAMPLED, dataset_file: re-exported)
from swiftkit.train.recipes import DpoSpec, GrpoSpec, Recipe
from swiftkit.train.trust import flag_value_problem

REWARD_PLUGIN = str(Path(__file__).resolve().parent / "grpo" / "swiftkit_plugin.py")
"""The file ms-swift imports in every rank (--external_plugins) to register swiftkit's rewards."""



@dataclass(frozen=True)
class Cluster:
    """The machines a plan is for. ``nproc_per_node`` is GPUs per node (CPU processes for cpu recipes)."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: Optional[str] = None
    master_port: Optional[int] = None

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    def problems(self) -> list[str]:
        """Every problem with these options (empty when they are usable)."""
        out = []
        if self.nproc_per_node < 1:
            out.append(f"--gpus {self.nproc_per_node}: need at least 1")
        if self.nnodes < 1:
            out.append(f"--nnodes {self.nnodes}: need at least 1")
        elif not 0 <= self.node_rank < self.nnodes:
            out.append(f"--node-rank {self.node_rank}: must be in 0..{self.nnodes - 1}")
        if self.nnodes > 1 and not self.master_addr:
            out.append(f"--nnodes {self.nnodes}: several nodes need --master-addr (rank 0's address)")
        if self.master_port is not None and not 0 < self.master_port < 65536:
            out.append(f"--master-port {self.master_port}: not a port number")
        return out

    def validate(self) -> None:
        """Raise one SwiftkitError naming every problem at once."""
        found = self.problems()
        if found:
            raise SwiftkitError("; ".join(found))


@dataclass(frozen=True)
class Plan:
    """The environment and argument list of one training launch."""

    env: dict[str, str]
    argv: list[str]
    global_batch_size: int
    per_device_batch_size: int
    gradient_accumulation_steps: int
    world_size: int
    output_dir: str
    method: str = DEFAULT_METHOD
    """The training method (swiftkit.train.methods): which ms-swift command and entry point run the argument list."""

    @property
    def command_words(self) -> int:
        """How many leading argv tokens are the command (``swift sft`` = 2)."""
        return 1 + len(get_method(self.method).command)

    @property
    def method_argv(self) -> list[str]:
        """The argument list the method's ms-swift entry point takes (argv without the command)."""
        return list(self.argv[self.command_words:])

    def to_json(self) -> dict[str, object]:
        return {"env": dict(self.env), "argv": list(self.argv)}

    def shell(self) -> str:
        """A shell line to paste: ``KEY=value ... swift sft --flag value \\`` one flag per line; every token is
        quoted, so no value (even one that starts with ``--``) can be read by the shell as code."""
        lines = [f"{k}={shlex.quote(v) if v else ''}" for k, v in self.env.items()]
        head = " ".join(lines + [shlex.join(self.argv[:self.command_words])])
        rest: list[str] = []
        for token in self.method_argv:
            if token.startswith("--") or not rest:
                rest.append(shlex.quote(token))
            else:
                rest[-1] += " " + shlex.quote(token)
        return " \\\n  ".join([head] + rest)


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def method_args(recipe: Recipe) -> list[tuple[str, object]]:
    """The flags that belong to the recipe's training method, first in the argument list (none for sft)."""
    if recipe.method == "sft":
        return []
    if recipe.method == "grpo" and recipe.grpo is not None:
        return grpo_args(recipe.grpo)
    if recipe.method == "dpo" and recipe.dpo is not None:
        return dpo_args(recipe.dpo)
    raise SwiftkitError(f"{recipe.name}: method {recipe.method!r} has no plan branch")


def grpo_args(g: GrpoSpec) -> list[tuple[str, object]]:
    """``--rlhf_type grpo``, the rewards (with swiftkit's plugin when one of its rewards is used), sampling and the
    rollout backend's flags."""
    names = [r.name for r in g.rewards]
    args: list[tuple[str, object]] = [
        ("rlhf_type", "grpo"),
        ("reward_funcs", names),
        ("reward_weights", [r.weight for r in g.rewards]),
    ]
    if any(n.startswith("swiftkit_") for n in names):
        args.append(("external_plugins", REWARD_PLUGIN))
    args += [
        ("num_generations", g.num_generations),
        ("max_completion_length", g.max_completion_length),
        ("temperature", g.temperature),
        ("top_p", g.top_p),
        ("beta", g.beta),
        ("log_completions", g.log_completions),
    ]
    ro = g.rollout
    if ro.backend == "pt":
        args.append(("use_vllm", False))
    elif ro.backend == "vllm_colocate":
        args += [
            ("use_vllm", True), ("vllm_mode", "colocate"),
            ("vllm_gpu_memory_utilization", ro.gpu_memory_utilization),
            ("vllm_tensor_parallel_size", ro.tensor_parallel_size),
            ("sleep_level", ro.sleep_level),
            ("offload_model", ro.offload_model),
            ("offload_optimizer", ro.offload_optimizer),
        ]
    else:
        args += [("use_vllm", True), ("vllm_mode", "server"), ("vllm_server_host", ro.server_host),
                 ("vllm_server_port", ro.server_port)]
    return args


def dpo_args(d: DpoSpec) -> list[tuple[str, object]]:
    """``--rlhf_type dpo`` and the preference loss. The reference model is not planned: for full training ms-swift
    takes ``--model`` (the ``init_from`` checkpoint) as the reference, for LoRA the plan adds ``--ref_adapters``."""
    args: list[tuple[str, object]] = [
        ("rlhf_type", "dpo"),
        ("beta", d.beta),
        ("loss_type", d.loss_type),
        ("label_smoothing", d.label_smoothing),
    ]
    if d.rpo_alpha is not None:
        args.append(("rpo_alpha", d.rpo_alpha))
    return args


ZERO3_CPU_CONFIG = str(Path(__file__).resolve().parent / "ds_config" / "zero3_cpu.json")
"""ms-swift's zero3.json without ``train_batch_size``. On CPU (``--use_cpu``) accelerate leaves DeepSpeed's own comm
layer uninitialised, so ``zero.Init`` reads its config while counting world size 1 and fails the batch check
(``8 != 2 * 2 * 1``); with the key absent DeepSpeed derives the batch itself and ZeRO-3 partitions over the processes."""


def deepspeed_config(recipe: Recipe) -> str:
    """The ``--deepspeed`` value: ms-swift's preset name, or swiftkit's CPU ZeRO-3 config for a CPU recipe."""
    if recipe.launch.device == "cpu" and recipe.launch.deepspeed == "zero3":
        return ZERO3_CPU_CONFIG
    return str(recipe.launch.deepspeed)


def vllm_cpu_env(recipe: Recipe, cluster: Cluster) -> dict[str, str]:
    """vLLM's CPU backend settings for a CPU recipe with colocated vLLM rollouts: its KV-cache size and the cores each
    training process's engine binds (one per process when there are several: vLLM 0.11's CPU worker would otherwise
    give every engine the same cores)."""
    if recipe.grpo is None or recipe.grpo.rollout.backend != "vllm_colocate" or recipe.launch.device != "cpu":
        return {}
    ro = recipe.grpo.rollout
    bind = ro.cpu_threads_bind or ("auto" if cluster.nproc_per_node == 1 else
                                   "|".join(str(i) for i in range(cluster.nproc_per_node)))
    return {"VLLM_CPU_KVCACHE_SPACE": str(ro.cpu_kvcache_space_gb), "VLLM_CPU_OMP_THREADS_BIND": bind}


def reward_options_env(recipe: Recipe) -> dict[str, str]:
    """The rewards' options as one JSON environment variable (every rank reads it; empty when none are set)."""
    if recipe.grpo is None:
        return {}
    options = {r.name: r.options for r in recipe.grpo.rewards if r.options}
    return {OPTIONS_ENV: options_env_value(options)} if options else {}


def eval_batch_size(recipe: Recipe, world: int) -> int:
    """Per-device eval batch. GRPO evaluates whole groups: per-device x processes must be a multiple of
    num_generations, so it is num_generations / gcd(num_generations, processes); otherwise the train micro-batch."""
    if recipe.grpo is None:
        return recipe.per_device_batch_size
    g = recipe.grpo.num_generations
    return g // math.gcd(g, world)


def nearest_batches(recipe: Recipe, denom: int) -> str:
    """The global batches nearest to the recipe's that ``denom`` processes x micro-batch divide (GRPO: that are also
    whole groups of generations), as the override to pass."""
    unit = denom if recipe.grpo is None else denom * recipe.grpo.num_generations // math.gcd(denom,
                                                                                          recipe.grpo.num_generations)
    below = recipe.global_batch_size // unit * unit
    options = [b for b in (below, below + unit) if b > 0]
    return "nearest that do: " + " or ".join(f"--set global_batch_size={b}" for b in options)


def plan(recipe: Recipe, cluster: Cluster, *, output_dir: str = "OUTPUT_DIR", resume_from: str | None = None,
         init_checkpoint: str | None = None, init_adapter: bool | None = None, dialect: Dialect = SWIFT3,
         fast: Sequence[Switch] = (), mixture: Optional[Mixture] = None) -> Plan:
    """Turn a validated recipe into the launch for ``cluster``. Raises SwiftkitError on a batch that does not divide.

    ``init_checkpoint`` is the resolved checkpoint of ``recipe.init_from`` and ``init_adapter`` whether it is a LoRA
    adapter (the launcher looks); without them the recipe's path is planned as written, as an adapter for LoRA
    recipes and as full weights otherwise. Full weights become ``--model`` (a LoRA recipe then trains a new adapter
    on them); an adapter is continued (``--adapters``). ``mixture`` is the recipe's ``data.mix`` counted
    (:func:`swiftkit.train.mixing.resolve_mixture`, which reads the files): required when the recipe mixes."""
    cluster.validate()
    world = cluster.world_size
    per_device = recipe.per_device_batch_size
    denom = world * per_device
    if recipe.global_batch_size % denom:
        raise SwiftkitError(
            f"{recipe.name}: global_batch_size {recipe.global_batch_size} does not divide into {cluster.nnodes} node(s) "
            f"x {cluster.nproc_per_node} process(es) x per_device_batch_size {per_device} = {denom}; "
            f"{nearest_batches(recipe, denom)}"
        )
    accum = recipe.global_batch_size // denom

    env: dict[str, str] = {}
    if recipe.hub == "hf":  # ms-swift (and swiftkit's hub lookups) then take the model from Hugging Face
        env["USE_HF"] = "1"
    if recipe.launch.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    else:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(cluster.nproc_per_node))
    if world > 1:
        env["NPROC_PER_NODE"] = str(cluster.nproc_per_node)
    if cluster.nnodes > 1:
        env["NNODES"] = str(cluster.nnodes)
        env["NODE_RANK"] = str(cluster.node_rank)
        env["MASTER_ADDR"] = str(cluster.master_addr)
    if cluster.master_port is not None:
        env["MASTER_PORT"] = str(cluster.master_port)
    env.update(reward_options_env(recipe))
    env.update(vllm_cpu_env(recipe, cluster))

    init = init_checkpoint or recipe.init_from
    init_is_adapter = (recipe.train_type == "lora") if init_adapter is None else init_adapter
    args: list[tuple[str, object]] = [("model", init if init and not init_is_adapter else recipe.model)]
    if recipe.model_type:
        args.append(("model_type", recipe.model_type))
    if recipe.template:
        args.append(("template", recipe.template))
        pinned = pinned_flags(recipe.template)
        args += [(pinned[i][2:], pinned[i + 1]) for i in range(0, len(pinned), 2)]
    # No --trust_remote_code flag: ms-swift 3.12.6 has no such argument (it would be rejected as unknown) and always
    # loads with trust_remote_code=True. The recipe's switch is enforced by preflight instead (remote_code check).
    args.append(("train_type", recipe.train_type))
    if recipe.lora is not None:
        args += [
            ("lora_rank", recipe.lora.rank),
            ("lora_alpha", recipe.lora.alpha),
            ("lora_dropout", recipe.lora.dropout),
            ("target_modules", recipe.lora.target_modules),
        ]
        if recipe.lora.qlora:
            args += [
                ("quant_method", "bnb"),
                ("quant_bits", 4),
                ("bnb_4bit_quant_type", "nf4"),
                ("bnb_4bit_use_double_quant", True),
                ("bnb_4bit_compute_dtype", recipe.torch_dtype),  # fp16-only cards (seed 004) compute in fp16
            ]
    if init and init_is_adapter:
        args.append(("adapters", init))
        if recipe.method in ("grpo", "dpo"):  # the reference is the SFT model, not the bare base (ms-swift's docs)
            args.append(("ref_adapters", init))
    # The val files go where the recipe uses them (Recipe.val_role): evaluated, trained on, or left out (held out
    # for `swiftkit eval`); never passed to a run that does not evaluate, where ms-swift would load them for nothing.
    if recipe.data.mix and mixture is None:
        raise SwiftkitError(f"{recipe.name}: data.mix is planned from the files' row counts: plan it with "
                            "swiftkit.train.launch.plan_run (`swiftkit plan`), which counts them")
    args += [("dataset", recipe.trained_files if mixture is None else mixture.datasets)]
    if recipe.val_role == "eval":
        args.append(("val_dataset", recipe.data.val))
    args += [
        ("split_dataset_ratio", 0),
        ("torch_dtype", recipe.torch_dtype),
        ("max_length", recipe.max_length),
    ]
    if recipe.data.train_on == "all":
        args.append(("loss_scale", "all"))
    if recipe.data.prompt_format == "raw":  # ms-swift's generation template: the text as is, plus the end token
        args.append(("use_chat_template", False))
    if recipe.max_steps is not None:
        args.append(("max_steps", recipe.max_steps))
    else:
        args.append(("num_train_epochs", recipe.num_train_epochs))
    args += [
        ("per_device_train_batch_size", per_device),
        ("per_device_eval_batch_size", eval_batch_size(recipe, world)),
        ("gradient_accumulation_steps", accum),
        ("learning_rate", recipe.learning_rate),
    ]
    if recipe.warmup_ratio is not None:
        args.append(("warmup_ratio", recipe.warmup_ratio))
    if recipe.warmup_steps is not None:
        args.append(("warmup_steps", recipe.warmup_steps))
    args += [
        ("weight_decay", recipe.weight_decay),
        ("lr_scheduler_type", recipe.lr_scheduler_type),
        ("seed", recipe.seed),
        ("gradient_checkpointing", recipe.gradient_checkpointing),
    ]
    if recipe.eval_steps is not None:
        args += [("eval_strategy", "steps"), ("eval_steps", recipe.eval_steps)]
    else:
        args.append(("eval_strategy", "no"))
    if recipe.save_steps is not None:
        args += [("save_strategy", "steps"), ("save_steps", recipe.save_steps)]
    else:
        args.append(("save_strategy", "epoch"))
    args += [
        ("save_total_limit", recipe.save_total_limit),
        ("save_only_model", recipe.save_only_model),
        ("logging_steps", recipe.logging_steps),
        ("dataloader_num_workers", recipe.launch.dataloader_num_workers),
    ]
    if recipe.launch.deepspeed and world > 1:
        args.append(("deepspeed", deepspeed_config(recipe)))
    if recipe.launch.device == "cpu":
        args.append(("use_cpu", True))
        if world > 1:  # one plain process has no process group: accelerate would wait for one that never forms
            args.append(("ddp_backend", "gloo"))
        if recipe.torch_dtype != "float16":
            args += [("fp16", False), ("bf16", False)]
    args.append(("report_to", recipe.report.report_to))
    if recipe.report.swanlab_project and "swanlab" in recipe.report.report_to:
        args.append(("swanlab_project", recipe.report.swanlab_project))
    if recipe.report.swanlab_mode == "local" and "swanlab" in recipe.report.report_to:
        args.append(("swanlab_mode", "local"))
    for switch in fast:  # the GPU fast path (swiftkit.train.fast_path), before extra_args
        args += list(switch.flags)
    for key, value in recipe.extra_args.items():
        args.append((key, value))
    if resume_from:
        args.append(("resume_from_checkpoint", resume_from))
    args += [("output_dir", output_dir), ("add_version", False)]

    method = get_method(recipe.method)
    flags: list[str] = []
    for key, value in method_args(recipe) + args:
        flags.append(f"--{key}")
        for token in [_fmt(v) for v in value] if isinstance(value, list) else [_fmt(value)]:
            problem = flag_value_problem(key, token)
            if problem:
                raise SwiftkitError(f"{recipe.name}: {problem}")
            flags.append(token)
    return Plan(
        env=env,
        argv=["swift", *method.command, *dialect.translate(flags)],
        method=method.name,
        global_batch_size=recipe.global_batch_size,
        per_device_batch_size=per_device,
        gradient_accumulation_steps=accum,
        world_size=world,
        output_dir=output_dir,
    )

