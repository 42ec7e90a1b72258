"""Recipes: what a fine-tuning run means, as a validated pydantic model, and the registry of ``recipes/*.yaml``.

A recipe states intent (model, data, global batch, learning rate, ...); :mod:`swiftkit.train.plan` turns it into the
exact ``swift sft`` argument list for the machine at hand. Every field below is typed and documented; an unknown
key is an error with a did-you-mean, and every problem in a file is reported at once, each as
``<file>:<line>: <field>: <problem>``.

Imports nothing heavy (pydantic and PyYAML only): ``swiftkit plan`` stays fast.
"""
from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from swiftkit.core.errors import ProblemsError, SwiftkitError
from swiftkit.train.methods import DEFAULT_METHOD, METHODS
from swiftkit.train.trust import flag_value_problem, refused_extra

RECIPES_ENV = "SWIFTKIT_RECIPES"
"""Environment variable naming a folder of recipes to use instead of the repository's ``recipes/``."""

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
"""Recipe names: a single path component, so runs/<name>/v<N> stays inside the runs root."""


class RecipeError(ProblemsError):
    """Every problem found in one recipe, one line each (``file:line: field: problem``)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraSpec(_Strict):
    """LoRA adapter settings (only with ``train_type: lora``)."""

    rank: int = Field(8, ge=1, description="LoRA rank r (ms-swift --lora_rank).")
    alpha: int = Field(32, ge=1, description="LoRA scaling alpha (--lora_alpha).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA path (--lora_dropout).")
    target_modules: list[str] = Field(
        default_factory=lambda: ["all-linear"],
        description="Modules that get adapters: names such as q_proj, or ms-swift's 'all-linear' (--target_modules).",
    )
    qlora: bool = Field(
        False,
        description="Load the base model 4-bit (bitsandbytes NF4, double quant) and train LoRA on top: QLoRA. "
        "Needs a CUDA GPU and bitsandbytes.",
    )


class MixSpec(_Strict):
    """A file mixed into the trained data at a share of the whole (swiftkit/train/mixing.py says how it is counted)."""

    file: str = Field(description="A JSONL file in the recipe's record shape (e.g. data/general/train.jsonl, which "
                      "`make prep` writes from the bundled general-chat sample), without ms-swift's #N: the plan "
                      "computes N.")
    share: float = Field(gt=0, lt=1, description="Its share of the rows trained per epoch: 0.3 = 30 %. The recipe's own "
                         "files give all their rows; this file gives round(share x base / (1 - sum of shares)) rows "
                         "(--dataset FILE#N: drawn without replacement, or whole copies plus a draw when N exceeds "
                         "the file). `swiftkit plan` prints the counts; the run records them.")


class DataSpec(_Strict):
    """The prep outputs a recipe trains on (``make prep`` writes ``data/<source>/{train,val}.jsonl``)."""

    source: str = Field(description="Prep source name (muice, fortune, medical_r1, actions); documents provenance.")
    train: list[str] = Field(min_length=1, description="Training JSONL files (ms-swift messages with the system inside).")
    val: list[str] = Field(default_factory=list, description="Validation JSONL files (prep's held-out split); "
                           "what they are used for is val_use.")
    val_use: Literal["auto", "holdout", "train"] = Field(
        "auto",
        description="What the val rows are for. holdout: never trained on; evaluated during training when eval_steps "
        "is set (--val_dataset), else not given to training at all and kept for `swiftkit eval` / `infer --val` "
        "(prompts the model has not seen). train: trained on with the train files (needs no eval_steps; the run then "
        "has no held-out rows and `swiftkit eval` needs --prompts). auto: holdout when eval_steps is set, else train, "
        "so no row prep held out is silently unused. Preflight says in rows what each costs.",
    )
    train_on: Literal["completion", "all"] = Field(
        "completion",
        description="Which tokens carry loss. completion: the assistant turns only, the prompt masked (ms-swift's "
        "default loss_scale); all: every token, prompt and system included (--loss_scale all), as a plain causal-LM "
        "trainer on whole texts does (seed 004's unsloth SFTTrainer on its `text` field).",
    )
    prompt_format: Literal["chat", "raw"] = Field(
        "chat",
        description="chat: messages records trained through the model's chat template (what infer, serve, eval and "
        "the exports ask through). raw: seed 004's plain text (`prep --prompt-format raw`: ### 指令 / ### 问题 / ### "
        "回答 with its <思考> markers, one assistant message per record) trained whole through ms-swift's generation "
        "template (--use_chat_template false: no markup, the end token appended); needs train_on: all.",
    )
    mix: list[MixSpec] = Field(default_factory=list, description="Other data mixed in at a ratio, e.g. general "
                               "chat against forgetting: [{file: data/general/train.jsonl, share: 0.3}].")
    system: Optional[str] = Field(
        None,
        description="The system prompt prep wrote into every record. Documentation and checks only: it is never "
        "passed as --system, because a system message in the data beats --system in ms-swift.",
    )


class LaunchSpec(_Strict):
    """Where and how the processes run; ``swiftkit plan/train --gpus/--nnodes`` override the defaults."""

    device: Literal["cuda", "cpu"] = Field("cuda", description="cuda: one process per GPU; cpu: CPU processes (gloo).")
    nproc_per_node: int = Field(1, ge=1, description="Processes per node by default (GPUs on cuda).")
    deepspeed: Optional[Literal["zero0", "zero1", "zero2", "zero3", "zero2_offload", "zero3_offload"]] = Field(
        None, description="ms-swift DeepSpeed preset (--deepspeed); used only when more than one process runs."
    )
    dataloader_num_workers: int = Field(4, ge=0, description="Data loader workers per process.")
    liger_kernel: Optional[bool] = Field(
        None, description="--use_liger_kernel: fused kernels and a loss without the fp32 logits tensor. None (auto): on "
        "with CUDA when liger-kernel is installed and patches the model type (swiftkit/train/fast_path.py).")
    flash_attn: Optional[bool] = Field(
        None, description="--attn_impl flash_attn. None (auto): on with CUDA when flash-attn is installed.")
    padding_free: Optional[bool] = Field(
        None, description="--padding_free: micro-batches packed without padding (needs flash_attn). None (auto): on "
        "with flash_attn when per_device_batch_size > 1.")
    memory_check: bool = Field(True, description="train preflight refuses a plan whose estimated memory per GPU "
                               "(swiftkit/train/sizing.py) exceeds the smallest visible GPU's; false: report it and "
                               "train anyway (--set launch.memory_check=false).")


class ReportSpec(_Strict):
    """Experiment tracking. Keys (SWANLAB_API_KEY) come from the environment only, never from the recipe."""

    report_to: list[Literal["none", "swanlab", "tensorboard", "wandb"]] = Field(
        default_factory=lambda: ["none"], description="Trackers (--report_to)."
    )
    swanlab_project: Optional[str] = Field(None, description="SwanLab project name (--swanlab_project).")
    swanlab_mode: Literal["cloud", "local"] = Field(
        "cloud", description="cloud: upload to SwanLab (needs SWANLAB_API_KEY or a saved `swanlab login`; preflight "
        "checks); local: log under ./swanlog only, no key (--swanlab_mode).")


class WatchSpec(_Strict):
    """Drift watched during training (swiftkit/train/watch.py): rank 0's current weights answer the identity
    questions (the plain ones and a few of the stress suite, under the run's system prompt and under none, through
    the persona template) and a few val prompts, greedy, into RUN/samples/step-N.jsonl; `swiftkit eval` charts them."""

    every: Optional[int] = Field(None, ge=1, description="Every N optimizer steps; None: at each checkpoint save.")
    stress_per_family: int = Field(1, ge=0, description="Stress-suite questions asked per family (its first ones).")
    val_prompts: int = Field(3, ge=0, description="The first N records of the val files, answered beside the "
                             "identity questions (general answers that may degrade).")
    max_new_tokens: int = Field(48, ge=1, description="Tokens per answer at most: keep it cheap.")


MS_SWIFT_REWARDS = ("accuracy", "format", "react_format", "cosine", "repetition", "soft_overlong", "toolbench", "math")
"""ms-swift 3.12's built-in reward names (``swift.plugin.orms``; tests check the list against the installed one).
They take no options here; swiftkit's own (``swiftkit_*``, swiftkit/train/grpo/rewards.py) fit this project's data."""


class RewardSpec(_Strict):
    """One reward function of a GRPO run and its weight in the summed reward."""

    name: str = Field(description="A swiftkit reward (swiftkit_think, swiftkit_action, swiftkit_reference, "
                      "swiftkit_repetition, swiftkit_persona) or an ms-swift built-in (format, cosine, ...).")
    weight: float = Field(1.0, description="Weight in the summed reward (--reward_weights).")
    options: dict[str, Any] = Field(default_factory=dict, description="The reward's options (swiftkit rewards only; "
                                    "see `Options` in swiftkit/train/grpo/rewards.py). Passed to every rank as JSON in the "
                                    "SWIFTKIT_REWARD_OPTIONS environment variable.")


class RolloutSpec(_Strict):
    """How completions are generated during GRPO."""

    backend: Literal["pt", "vllm_colocate", "vllm_server"] = Field(
        "pt", description="pt: transformers generate in the training processes (CPU, tiny models); vllm_colocate: a "
        "vLLM engine inside each training process, sharing its GPU (or its cores, with vLLM's CPU build); "
        "vllm_server: a separate `swift rollout` server (CUDA only).")
    gpu_memory_utilization: float = Field(0.5, gt=0, le=1, description="vllm_colocate: GPU memory share for vLLM "
                                          "(--vllm_gpu_memory_utilization); the rest is the trainer's.")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm_colocate: GPUs per vLLM engine "
                                      "(--vllm_tensor_parallel_size); must divide the GPUs per node.")
    sleep_level: Literal[0, 1, 2] = Field(0, description="vllm_colocate: put vLLM to sleep during the training "
                                          "step (--sleep_level): 0 never; 1 and 2 free its weights and KV cache "
                                          "from the GPU, 1 backing the weights up in CPU memory, 2 dropping them.")
    offload_model: bool = Field(False, description="vllm_colocate: move the training model to CPU while vLLM "
                                "generates (--offload_model).")
    offload_optimizer: bool = Field(False, description="vllm_colocate: same for the optimizer state "
                                    "(--offload_optimizer).")
    server_host: Optional[str] = Field(None, description="vllm_server: the rollout server's address "
                                       "(--vllm_server_host); required for that backend.")
    server_port: int = Field(8000, ge=1, le=65535, description="vllm_server: its port (--vllm_server_port).")
    cpu_kvcache_space_gb: int = Field(1, ge=1, description="vllm_colocate on a CPU recipe: vLLM's KV cache in GiB "
                                      "(VLLM_CPU_KVCACHE_SPACE; vLLM's own default, 4, is more than a tiny model needs).")
    cpu_threads_bind: Optional[str] = Field(None, min_length=1, description="vllm_colocate on a CPU recipe: vLLM's "
                                            "VLLM_CPU_OMP_THREADS_BIND, which also sets the process's thread count; "
                                            "default: vLLM's `auto` for one process, one core per process (`0|1|...`) "
                                            "for several: on a bigger machine give each its share (`0-7|8-15`).")


class GrpoSpec(_Strict):
    """GRPO settings (only with ``method: grpo``). ``global_batch_size`` then counts completions, not prompts:
    each step samples global_batch_size / num_generations prompts and num_generations completions of each."""

    num_generations: int = Field(8, ge=2, description="Completions sampled per prompt, the G of GRPO "
                                 "(--num_generations); the group whose rewards are compared.")
    max_completion_length: int = Field(512, ge=1, description="Tokens generated per completion at most "
                                       "(--max_completion_length).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (--temperature); GRPO needs varied "
                               "completions, so do not go near 0.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling (--top_p).")
    beta: float = Field(0.04, ge=0, description="KL penalty toward the starting model (--beta); 0 loads no "
                        "reference model.")
    rewards: list[RewardSpec] = Field(min_length=1, description="Reward functions, summed with their weights.")
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    log_completions: bool = Field(True, description="Write every sampled completion with its rewards and "
                                  "advantage to <run>/completions.jsonl (--log_completions).")


DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_pair", "discopop", "apo_zero", "apo_down")
"""The paired-preference losses of trl's DPOTrainer (``DPOConfig.loss_type``, the trl ms-swift 3.12.6 runs; tests
check them against the installed trl). trl's ``sft`` alone is no preference loss: use ``dpo.rpo_alpha`` to add it."""


class DpoSpec(_Strict):
    """DPO settings (only with ``method: dpo``). The data are preference pairs (``swiftkit prep-pairs``): each record's
    ``messages`` end in the chosen answer and ``rejected_response`` holds the rejected one; ``global_batch_size``
    counts pairs. Full training takes the ``init_from`` checkpoint as its frozen reference (ms-swift loads it a second
    time); LoRA continues the adapter and takes it as the reference (--ref_adapters)."""

    beta: float = Field(0.1, gt=0, description="How far the model may move from the reference (--beta): the DPO "
                        "loss is -log sigmoid(beta x (chosen log-ratio - rejected log-ratio)). Larger keeps it closer; "
                        "0 would make the loss constant (no gradient), so it is refused.")
    loss_type: Literal[DPO_LOSS_TYPES] = Field(  # type: ignore[valid-type]
        "sigmoid", description="The preference loss (--loss_type): sigmoid (the DPO paper), ipo, hinge, robust, "
        "apo_zero, ... (trl's DPOTrainer names).")
    rpo_alpha: Optional[float] = Field(None, ge=0, description="Adds rpo_alpha x the chosen answers' NLL (SFT) loss "
                                       "(--rpo_alpha; the RPO paper): keeps the persona's own answers likely while "
                                       "the rejected ones are pushed down. None: preference loss only.")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="Assumed share of flipped preferences "
                                   "(--label_smoothing; conservative DPO, sigmoid and robust losses only).")


class Recipe(_Strict):
    """One way of fine-tuning, in the user's terms."""

    name: str = Field(description="Recipe name; equals the YAML file's stem. Letters, digits, _ . - only: it names "
                      "the run directory runs/<name>/v<N>, which must stay inside the runs root.")
    description: str = Field(description="One line shown by `swiftkit recipes`.")
    model: str = Field(description="Base model: a local folder (e.g. models/tiny-qwen2) or a hub id (Qwen/Qwen2-1.5B-Instruct).")
    hub: Literal["modelscope", "hf"] = Field(
        "modelscope", description="The hub a hub id in `model` is on: modelscope (ms-swift's default) or hf (Hugging "
        "Face: the plan sets USE_HF=1, and swiftkit's own lookups use it too).")
    model_type: Optional[str] = Field(None, description="ms-swift --model_type; needed for local folders.")
    template: Optional[str] = Field(None, description="ms-swift --template (chat format).")
    trust_remote_code: bool = Field(False, description="Run the model repository's own Python code. Off unless needed.")
    method: str = Field(DEFAULT_METHOD, description="Training method: sft (supervised, the default), grpo or dpo. Each "
                        "method is one row of swiftkit/train/methods.py: the ms-swift command it plans to and the entry "
                        "point it runs.")
    init_from: Optional[str] = Field(
        None, description="Start from an earlier run instead of the bare model: a run directory (runs/actions_lora/v2), "
        "a recipe's runs folder (runs/actions_lora: its newest version) or a checkpoint folder; its last checkpoint "
        "is used. Full training starts from the checkpoint's weights (--model); LoRA continues the checkpoint's "
        "adapter (--adapters), and GRPO and DPO also take it as the reference (--ref_adapters).")
    grpo: Optional[GrpoSpec] = Field(None, description="GRPO settings; required when method is grpo.")
    dpo: Optional[DpoSpec] = Field(None, description="DPO settings; required when method is dpo.")
    train_type: Literal["full", "lora"] = Field(description="full: all weights; lora: adapters (see `lora`).")
    lora: Optional[LoraSpec] = Field(None, description="LoRA settings; required when train_type is lora.")
    persona: bool = Field(False, description="The recipe trains a persona: `swiftkit check` runs the identity probe.")
    data: DataSpec
    max_length: int = Field(ge=16, description="Token budget per sample (--max_length); must fit the model's context.")
    torch_dtype: Literal["bfloat16", "float16", "float32"] = Field("bfloat16", description="Weights dtype (--torch_dtype).")
    global_batch_size: int = Field(
        ge=1,
        description="Samples per optimizer step over all processes. Gradient accumulation is derived as "
        "global / (nodes x processes per node x per_device_batch_size), so optimization does not change with the "
        "GPU count; a global batch that does not divide is refused.",
    )
    per_device_batch_size: int = Field(1, ge=1, description="Micro-batch per process (--per_device_train_batch_size).")
    learning_rate: float = Field(gt=0, description="Peak learning rate (--learning_rate).")
    num_train_epochs: float = Field(1.0, gt=0, description="Epochs (--num_train_epochs); ignored when max_steps is set.")
    max_steps: Optional[int] = Field(None, ge=1, description="Optimizer steps; overrides num_train_epochs.")
    warmup_ratio: Optional[float] = Field(None, ge=0, lt=1, description="Warmup as a fraction of all steps.")
    warmup_steps: Optional[int] = Field(None, ge=0, description="Warmup in steps (exclusive with warmup_ratio).")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay (--weight_decay).")
    lr_scheduler_type: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule (--lr_scheduler_type)."
    )
    seed: int = Field(42, description="Random seed (--seed).")
    gradient_checkpointing: bool = Field(True, description="Recompute activations to save memory.")
    eval_steps: Optional[int] = Field(None, ge=1, description="Evaluate every N steps (needs data.val); None: no eval.")
    save_steps: Optional[int] = Field(None, ge=1, description="Checkpoint every N steps; None: once per epoch.")
    logging_steps: int = Field(5, ge=1, description="Log every N steps.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept on disk.")
    save_only_model: bool = Field(False, description="Checkpoints hold weights only (no optimizer state).")
    launch: LaunchSpec = Field(default_factory=LaunchSpec)
    report: ReportSpec = Field(default_factory=ReportSpec)
    watch: Optional[WatchSpec] = Field(None, description="Answers by step during training (off when absent).")
    extra_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Further `swift sft` flags, name without dashes -> a bool, number or string; preflight checks "
        "every name and value against ms-swift's argument class. Arguments that run code, set the environment, "
        "load another model or send data away are refused here (swiftkit/train/trust.py says which and why).",
    )

    @field_validator("extra_args")
    @classmethod
    def _scalar_flags(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [f"{key}: {refused_extra(key) or 'a flag value is a bool, number or string, got ' + type(v).__name__}"
               for key, v in value.items() if refused_extra(key) or not isinstance(v, (bool, int, float, str))]
        if bad:
            raise ValueError("; ".join(bad))
        return value

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not SAFE_NAME.match(value):
            raise ValueError(f"{value!r}: letters, digits, _ . - only, starting with a letter or digit (it names the "
                             "run directory runs/<name>/v<N>)")
        return value

    @property
    def val_role(self) -> Literal["none", "eval", "holdout", "train"]:
        """What the val files do in this run: ``data.val_use`` with ``auto`` resolved (none: there are none)."""
        if not self.data.val:
            return "none"
        if self.data.val_use == "train" or (self.data.val_use == "auto" and self.eval_steps is None):
            return "train"
        return "eval" if self.eval_steps is not None else "holdout"

    @property
    def trained_files(self) -> list[str]:
        """The files training reads (--dataset): the train files, plus the val files when they are trained on."""
        return [*self.data.train, *(self.data.val if self.val_role == "train" else [])]

    @property
    def mix_files(self) -> list[str]:
        """The data.mix files (trained on at their shares, planned as ``FILE#N``)."""
        return [m.file for m in self.data.mix]

    @property
    def held_out_files(self) -> list[str]:
        """The val files no training step sees (evaluated during training, or kept for ``swiftkit eval``)."""
        return list(self.data.val) if self.val_role in ("eval", "holdout") else []

    @property
    def run_train_type(self) -> Literal["full", "lora", "qlora"]:
        """full / lora / qlora as recorded in the run directory."""
        if self.train_type == "lora" and self.lora is not None and self.lora.qlora:
            return "qlora"
        return self.train_type

    def to_yaml(self) -> str:
        """The resolved recipe as YAML (field order kept, defaults filled in)."""
        return yaml.safe_dump(self.model_dump(mode="json"), allow_unicode=True, sort_keys=False, width=100)


_RESERVED_EXTRA = {
    "model", "model_type", "template", "train_type", "dataset", "val_dataset", "output_dir", "add_version",
    "per_device_train_batch_size", "gradient_accumulation_steps", "deepspeed", "system", "swanlab_token",
    "hub_token", "resume_from_checkpoint", "adapters", "ref_adapters", "report_to", "save_only_model",
    "rlhf_type", "reward_funcs", "reward_weights", "num_generations", "max_completion_length", "use_vllm",
    "vllm_mode", "beta", "log_completions", "loss_scale", "use_chat_template", "loss_type", "rpo_alpha",
    "label_smoothing",
}


# ---------------------------------------------------------------------------------------------------------------
# Error formatting: pydantic errors -> "file:line: field: problem", with YAML line numbers and did-you-mean.


def _key_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Map every key path in a YAML mapping to its 1-based line (via yaml.compose, no second parser)."""
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                sub = path + (key_node.value,)
                lines[sub] = key_node.start_mark.line + 1
                walk(value_node, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[path + (i,)] = item.start_mark.line + 1
                walk(item, path + (i,))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def _model_for_path(path: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Recipe
    for part in path:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        model = next((a for a in _flatten(annotation) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return model


def _flatten(annotation: Any) -> list[Any]:
    args = getattr(annotation, "__args__", None)
    return [a for arg in args for a in _flatten(arg)] if args else [annotation]


def cross_field_problems(r: Recipe) -> list[tuple[tuple[Any, ...], str]]:
    """Rules between fields, every one that is broken (field path, message): reported together with line numbers."""
    out: list[tuple[tuple[Any, ...], str]] = []
    if r.method not in METHODS:
        out.append((("method",), f"method {r.method!r}: choose one of {', '.join(METHODS)}"))
    if r.method == "grpo" and r.grpo is None:
        out.append((("method",), "method grpo needs a `grpo:` section"))
    if r.grpo is not None and r.method != "grpo":
        out.append((("grpo",), f"`grpo:` given but method is {r.method}"))
    if r.grpo is not None:
        out += _grpo_problems(r, r.grpo)
    if r.method == "dpo" and r.dpo is None:
        out.append((("method",), "method dpo needs a `dpo:` section"))
    if r.dpo is not None and r.method != "dpo":
        out.append((("dpo",), f"`dpo:` given but method is {r.method}"))
    if r.dpo is not None and r.dpo.label_smoothing and r.dpo.loss_type not in ("sigmoid", "robust"):
        out.append((("dpo", "label_smoothing"), f"label_smoothing applies to the sigmoid and robust losses, not "
                                                f"{r.dpo.loss_type}: drop it or change dpo.loss_type"))
    if r.train_type == "lora" and r.lora is None:
        out.append((("train_type",), "train_type lora needs a `lora:` section"))
    if r.train_type == "full" and r.lora is not None:
        out.append((("lora",), "`lora:` given but train_type is full"))
    if r.launch.device == "cpu" and r.launch.deepspeed in ("zero3_offload", "zero2_offload"):
        out.append((("launch", "deepspeed"), f"{r.launch.deepspeed} on a CPU recipe: there is no device to offload "
                    f"from; use {r.launch.deepspeed.removesuffix('_offload')}"))
    for switch in ("liger_kernel", "flash_attn", "padding_free"):
        if r.launch.device == "cpu" and getattr(r.launch, switch):
            out.append((("launch", switch), f"{switch} on a CPU recipe: it is a CUDA kernel; drop it (auto is off on "
                                            "CPU)"))
    if r.launch.padding_free and r.launch.flash_attn is False:
        out.append((("launch", "padding_free"), "padding_free needs flash_attn: drop launch.flash_attn: false"))
    if r.warmup_ratio is not None and r.warmup_steps is not None:
        out.append((("warmup_steps",), "give warmup_ratio or warmup_steps, not both"))
    if r.eval_steps is not None and not r.data.val:
        out.append((("eval_steps",), "eval_steps needs data.val files"))
    if r.data.val_use == "train" and r.eval_steps is not None:
        out.append((("data", "val_use"), f"val_use train leaves nothing to evaluate on, but eval_steps is "
                                         f"{r.eval_steps}: use val_use holdout (or auto), or drop eval_steps"))
    out += _mix_problems(r)
    if r.data.prompt_format == "raw" and r.data.train_on != "all":
        out.append((("data", "prompt_format"), "raw trains the whole text (there is no prompt to mask): set "
                                               "data.train_on: all"))
    if r.data.prompt_format == "raw" and r.method != "sft":
        out.append((("data", "prompt_format"), f"raw is plain text for supervised training; method {r.method} "
                                               "needs chat records (prompts to answer)"))
    if r.global_batch_size % r.per_device_batch_size:
        out.append((("global_batch_size",), f"global_batch_size {r.global_batch_size} is not a multiple of "
                                            f"per_device_batch_size {r.per_device_batch_size}"))
    for key, value in r.extra_args.items():
        if key.startswith("-") or key in _RESERVED_EXTRA:
            out.append((("extra_args", key), "set it through the recipe field, not extra_args"))
        elif isinstance(value, str) and flag_value_problem(key, value):
            out.append((("extra_args", key), str(flag_value_problem(key, value))))
    return out


def _mix_problems(r: Recipe) -> list[tuple[tuple[Any, ...], str]]:
    """data.mix rules: shares leave room for the recipe's own data, each file once, no #N of its own."""
    out: list[tuple[tuple[Any, ...], str]] = []
    total = sum(m.share for m in r.data.mix)
    if r.data.mix and total >= 1:
        out.append((("data", "mix"), f"the shares add up to {total:g}: they must leave room for data.train "
                                     "(sum below 1)"))
    own = set(r.trained_files)
    seen: set[str] = set()
    for i, m in enumerate(r.data.mix):
        if re.search(r"#\d+$", m.file):
            out.append((("data", "mix", i, "file"), f"{m.file}: no #N here, the plan computes N from share"))
        elif m.file in seen or m.file in own:
            out.append((("data", "mix", i, "file"), f"{m.file}: already trained on (listed twice)"))
        seen.add(m.file)
    return out


def _grpo_problems(r: Recipe, g: GrpoSpec) -> list[tuple[tuple[Any, ...], str]]:
    """GRPO rules: the batch counts completions, every reward exists with valid options, the rollout fits."""
    from swiftkit.train.grpo.rewards import REWARDS, option_problems

    out: list[tuple[tuple[Any, ...], str]] = []
    if r.global_batch_size % g.num_generations:
        out.append((("global_batch_size",), f"global_batch_size {r.global_batch_size} counts completions: it must be "
                                            f"a multiple of grpo.num_generations {g.num_generations}"))
    seen: set[str] = set()
    for i, spec in enumerate(g.rewards):
        where = ("grpo", "rewards", i, "name")
        if spec.name in seen:
            out.append((where, f"{spec.name}: listed twice"))
        seen.add(spec.name)
        if spec.name in MS_SWIFT_REWARDS:
            if spec.options:
                out.append((("grpo", "rewards", i, "options"), f"{spec.name}: ms-swift's built-in rewards take no "
                                                              "options here"))
            continue
        if spec.name not in REWARDS:
            known = [*REWARDS, *MS_SWIFT_REWARDS]
            close = difflib.get_close_matches(spec.name, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            out.append((where, f"unknown reward '{spec.name}'{hint}; known: {', '.join(known)}"))
            continue
        for problem in option_problems(spec.name, spec.options):
            out.append((("grpo", "rewards", i, "options"), problem))
    if g.rollout.backend == "vllm_server" and not g.rollout.server_host:
        out.append((("grpo", "rollout", "server_host"), "rollout backend vllm_server needs server_host"))
    if g.rollout.backend == "vllm_server" and r.launch.device == "cpu":  # colocate: preflight asks vLLM's platform
        out.append((("grpo", "rollout", "backend"), "vllm_server cannot run on a CPU: the rollout server syncs weights "
                    "over NCCL (CUDA); use vllm_colocate (vLLM's CPU build) or pt on cpu"))
    return out


def _located(path: tuple[Any, ...], lines: dict[tuple[Any, ...], int], source: str,
             overridden: Optional[dict[tuple[str, ...], str]] = None) -> str:
    """Where a problem at ``path`` comes from: the ``--set`` that wrote it (or a section above it), else the
    recipe file's line."""
    text = tuple(str(p) for p in path)
    for n in range(len(text), 0, -1):
        if overridden and text[:n] in overridden:
            return f"--set {overridden[text[:n]]}"
    line = next((lines[path[:n]] for n in range(len(path), 0, -1) if path[:n] in lines), None)
    return f"{source}:{line}" if line else source


def _overridden(overrides: list[str] | tuple[str, ...]) -> dict[tuple[str, ...], str]:
    """Each ``--set`` key path -> the ``--set`` as given."""
    return {tuple(item.partition("=")[0].strip().split(".")): item for item in overrides}


def _format_errors(exc: ValidationError, source: str, text: str,
                   overridden: Optional[dict[tuple[str, ...], str]] = None) -> list[str]:
    lines = _key_lines(text)
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc) or "(recipe)"
        where = _located(loc, lines, source, overridden)
        if err["type"] == "extra_forbidden":
            parent = _model_for_path(loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), list(parent.model_fields) if parent else [], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"{where}: {field}: unknown key{hint}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {field}: {msg}")
    return problems


# ---------------------------------------------------------------------------------------------------------------
# Overrides (--set key=value) and loading.


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of ``data`` with ``key.sub=value`` overrides applied (a number picks a list item:
    ``grpo.rewards.0.weight=2``); values are parsed as YAML."""
    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SwiftkitError(f"--set {item!r}: expected key=value (e.g. --set learning_rate=2e-5)")
        no_aliases(raw, f"--set {key}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise SwiftkitError(f"--set {key}: unreadable value {raw!r} ({exc.problem})") from exc
        node: Any = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = _child(node, part, key)
        last = parts[-1]
        if isinstance(node, list):
            node[_index(node, last, key)] = value
        else:
            node[last] = value
    return out


def follow_model_change(before: dict[str, Any], after: dict[str, Any],
                        overridden: dict[tuple[str, ...], str]) -> dict[str, Any]:
    """A ``--set model=<hub id>`` that changes the model also drops the recipe's model_type and template (those were
    for the old model) unless ``--set`` names them too: ms-swift then picks the new model's by its id, and preflight
    says which. A local folder keeps them (the smoke's tiny model, an offline copy of the same model); preflight
    checks them against the folder's config.json."""
    from swiftkit.core.local_model import is_local_model

    new = after.get("model")
    if ("model",) not in overridden or new == before.get("model") or not isinstance(new, str) or is_local_model(new):
        return after
    return {k: v for k, v in after.items() if k not in ("model_type", "template") or (k,) in overridden}


def _index(node: list[Any], part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise SwiftkitError(f"--set {key}: '{part}' is not an index of a list of {len(node)}")
    return int(part)


def _child(node: Any, part: str, key: str) -> Any:
    """The section (or list item: ``grpo.rewards.0.weight``) ``part`` of ``node``; a missing section is created."""
    if isinstance(node, list):
        child = node[_index(node, part, key)]
    else:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
    if not isinstance(child, (dict, list)):
        raise SwiftkitError(f"--set {key}: '{part}' is not a section")
    return child


def recipe_dirs() -> list[Path]:
    """Folders searched for ``<name>.yaml``: $SWIFTKIT_RECIPES if set, else the repository's ``recipes/``."""
    env = os.environ.get(RECIPES_ENV)
    if env:
        return [Path(env)]
    return [Path(__file__).resolve().parents[2] / "recipes"]


def list_recipes() -> list[Path]:
    """Every recipe file, sorted by name."""
    found: dict[str, Path] = {}
    for folder in recipe_dirs():
        for path in sorted(folder.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return [found[k] for k in sorted(found)]


def find_recipe(name_or_path: str | os.PathLike[str]) -> Path:
    """A recipe name (``muice_full``) or a path to a YAML file."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or os.sep in text:
        if not path.is_file():
            raise SwiftkitError(f"{text}: no such recipe file")
        return path
    for folder in recipe_dirs():
        candidate = folder / f"{text}.yaml"
        if candidate.is_file():
            return candidate
    names = [p.stem for p in list_recipes()]
    close = difflib.get_close_matches(text, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise SwiftkitError(f"unknown recipe '{text}'{hint}; known: {', '.join(names) or 'none'}")


def no_aliases(text: str, source: str) -> None:
    """Refuse YAML anchors/aliases: a recipe has no use for them, and nested aliases (a "billion laughs" document)
    expand exponentially when loaded. Checked on the event stream, which never expands anything."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                line = event.start_mark.line + 1
                raise RecipeError([f"{source}:{line}: YAML anchors and aliases (&name, *name) are not allowed in "
                                   "recipes; write the values out"])
    except yaml.YAMLError:
        return  # the loader reports it with its line


def duplicate_keys(text: str, source: str) -> None:
    """Refuse a key written twice in one mapping: YAML loaders keep the last one silently, so the value a reader
    sees first is not the one that trains. Every duplicate is reported at once."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return  # the loader reports it with its line
    problems: list[str] = []

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                key, line = str(key_node.value), key_node.start_mark.line + 1
                if key in first:
                    problems.append(f"{source}:{line}: {'.'.join(path + (key,))}: written twice (first at line "
                                    f"{first[key]}); YAML would keep this one silently: keep one")
                first.setdefault(key, line)
                walk(value_node, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (str(i),))

    if root is not None:
        walk(root, ())
    if problems:
        raise RecipeError(problems)


def parse_recipe(text: str, *, source: str, name: str, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Validate YAML text into a Recipe; raises RecipeError listing every problem."""
    no_aliases(text, source)
    duplicate_keys(text, source)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise RecipeError([f"{source}{line}: not valid YAML ({getattr(exc, 'problem', exc)})"]) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError([f"{source}:1: a recipe is a mapping of fields, got {type(data).__name__}"])
    data.setdefault("name", name)
    if data["name"] != name:
        raise RecipeError([f"{source}: name: '{data['name']}' differs from the file name '{name}'"])
    overridden = _overridden(overrides)
    data = follow_model_change(data, apply_overrides(data, overrides), overridden)
    lines = _key_lines(text)

    def located(broken: list[tuple[tuple[Any, ...], str]]) -> list[str]:
        return [f"{_located(path, lines, source, overridden)}: {'.'.join(map(str, path))}: {msg}"
                for path, msg in broken]

    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        problems = _format_errors(exc, source, text, overridden)
        salvaged = _salvage(data, exc)
        if salvaged is not None:  # the rules between the fields that did validate, reported in the same breath
            recipe_part, removed = salvaged
            problems += located([(path, msg) for path, msg in cross_field_problems(recipe_part)
                                 if not any(path[:len(r)] == r for r in removed)])
        raise RecipeError(problems) from exc
    broken = cross_field_problems(recipe)
    if broken:
        raise RecipeError(located(broken))
    return recipe


def _salvage(data: dict[str, Any], exc: ValidationError) -> Optional[tuple[Recipe, list[tuple[Any, ...]]]]:
    """The recipe without the keys that failed validation (their defaults instead), to check the rules between the
    other fields; None when a failed field has no default."""
    trimmed = copy.deepcopy(data)
    removed: list[tuple[Any, ...]] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        node: Any = trimmed
        for part in loc[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or loc[-1] not in node:
            return None
        del node[loc[-1]]
        removed.append(loc)
    try:
        return Recipe.model_validate(trimmed), removed
    except ValidationError:
        return None


def load_recipe(name_or_path: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Load, apply ``--set`` overrides, validate. Raises RecipeError (all problems) or SwiftkitError."""
    if isinstance(name_or_path, Recipe):
        return name_or_path if not overrides else parse_recipe(
            name_or_path.to_yaml(), source=f"<{name_or_path.name}>", name=name_or_path.name, overrides=overrides
        )
    path = find_recipe(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SwiftkitError(f"{path}: unreadable ({exc})") from exc
    return parse_recipe(text, source=str(path), name=path.stem, overrides=overrides)
