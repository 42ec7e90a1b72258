"""What a recipe may make ms-swift do: a recipe is data, not code.

People share recipes the way they share notebooks, so a recipe runs no code unless it says so in a field made for
that: ``trust_remote_code: true`` (the model's own Python, checked by preflight for every model the plan loads) and
the GRPO rewards swiftkit ships (``grpo.rewards``, imported through swiftkit's own plugin). Three rules hold that line:

1. **Values are values.** No recipe value can become a flag: a value token that starts with ``-`` and is not a
   number is refused (:func:`flag_value_problem`), wherever in the recipe it comes from.
2. **Arguments that run code, set the environment, load another model or send data away are not extra_args.**
   :data:`REFUSED_EXTRA` lists each such ms-swift argument with why; a recipe names them only through a typed field
   that preflight checks, or not at all. tests/test_trust.py audits ms-swift's argument classes so that a new
   argument with such a name fails until it is listed here or in :data:`REVIEWED_EXTRA`.
3. **Every model a plan loads is checked for model code** (:func:`models_loaded`, read from the planned flags).

Run directories are data too: :mod:`swiftkit.stack.guards` keeps ms-swift from importing plugins a checkpoint's
args.json names.
"""
from __future__ import annotations

import re
from typing import Sequence

_CODE = "imports Python files in every process"
_ENV = "sets environment variables in every process (LD_PRELOAD, PYTHONPATH ... would load code)"
_MODEL = "loads another model, whose own code ms-swift would run unchecked"
_ARGS = "makes ms-swift read another run's args.json, which can name plugins to import"
_AWAY = "sends the model or your logs off this machine"

REFUSED_EXTRA: dict[str, str] = {
    "external_plugins": _CODE + "; GRPO rewards are named in grpo.rewards",
    "custom_register_path": _CODE,
    "local_repo_path": _CODE + " (the folder goes on sys.path)",
    "model_kwargs": _ENV,
    "vllm_engine_kwargs": "passes keyword arguments to vLLM, which can name worker classes to import",
    "vllm_speculative_config": _MODEL + " (a draft model)",
    "ref_model": _MODEL, "ref_model_type": _MODEL, "ref_model_revision": _MODEL,
    "reward_model": _MODEL, "reward_model_type": _MODEL, "reward_model_revision": _MODEL,
    "reward_adapters": _MODEL, "reward_model_plugin": _MODEL,
    "teacher_model": _MODEL, "teacher_model_type": _MODEL, "teacher_model_revision": _MODEL,
    "teacher_adapters": _MODEL, "teacher_deepspeed": _MODEL,
    "load_args": _ARGS, "load_data_args": _ARGS, "ckpt_dir": _ARGS,
    "push_to_hub": _AWAY, "hub_model_id": _AWAY, "hub_strategy": _AWAY, "hub_private_repo": _AWAY,
    "hub_always_push": _AWAY, "hub_revision": _AWAY, "push_to_hub_model_id": _AWAY,
    "push_to_hub_organization": _AWAY, "push_to_hub_token": _AWAY,
    "swanlab_webhook_url": _AWAY, "swanlab_smtp_server": _AWAY, "swanlab_smtp_port": _AWAY,
    "vllm_server_base_url": _AWAY + " (GRPO rollouts: set grpo.rollout)",
    "vllm_server_host": _AWAY + " (GRPO rollouts: set grpo.rollout)",
    "vllm_server_port": _AWAY + " (GRPO rollouts: set grpo.rollout)",
    "vllm_server_group_port": _AWAY + " (GRPO rollouts: set grpo.rollout)",
}
"""ms-swift arguments a recipe's extra_args may not set, with why (shown in the error)."""

REVIEWED_EXTRA: frozenset[str] = frozenset({
    # Names that look risky (see tests/test_trust.py's pattern) but take plain values: numbers, switches, names
    # looked up in ms-swift's own registries, dicts of settings, JSON config files that hold no code.
    "accelerator_config", "average_tokens_across_devices", "check_model", "deepspeed_autotp_size",
    "eval_generation_config", "fsdp", "fsdp_config", "fsdp_min_num_params", "fsdp_transformer_layer_cls_to_wrap",
    "generation_config", "gradient_checkpointing_kwargs", "importance_sampling_level",
    "include_num_input_tokens_seen", "include_tokens_per_second", "lazy_tokenize", "liger_kernel_config",
    "load_best_model_at_end", "load_from_cache_file", "logging_dir", "lr_scheduler_kwargs", "max_new_tokens",
    "metric_for_best_model", "model_revision", "new_special_tokens", "offload_model", "offload_optimizer",
    "offload_teacher_model", "optim", "optimizer", "overwrite_output_dir", "parallelism_config",
    "restore_callback_states_from_checkpoint", "resume_only_model", "rollout_importance_sampling_mode",
    "rollout_importance_sampling_threshold", "sync_ref_model", "use_flash_ckpt",
})
"""ms-swift arguments with a risky-looking name that were read and take no code (the audit's allow list)."""

MODEL_FLAGS: tuple[str, ...] = ("model", "adapters", "ref_adapters", "ref_model", "reward_model", "reward_adapters",
                                "teacher_model", "teacher_adapters")
"""Planned flags whose values are models or adapters ms-swift loads (and whose auto_map code it would run)."""

_NUMBER = re.compile(r"^-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")


def flag_value_problem(flag: str, value: str) -> str | None:
    """Why ``value`` cannot follow ``--flag`` on a command line: it would read as a flag of its own."""
    if value.startswith("-") and not _NUMBER.match(value):
        return (f"value {value[:60]!r} of --{flag} starts with '-' and would read as a flag of its own; a recipe "
                "value is a value")
    return None


def refused_extra(name: str) -> str | None:
    """Why extra_args may not set ms-swift argument ``name`` (None when it may)."""
    reason = REFUSED_EXTRA.get(name)
    return f"refused in extra_args: it {reason}" if reason else None


def models_loaded(argv: Sequence[str]) -> list[str]:
    """Every model or adapter a planned ``swift`` command line loads (the values of :data:`MODEL_FLAGS`), in order."""
    found: list[str] = []
    current: str | None = None
    for token in argv:
        if token.startswith("--"):
            current = token[2:] if token[2:] in MODEL_FLAGS else None
        elif current is not None and token not in found:
            found.append(token)
    return found
