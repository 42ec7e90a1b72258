"""The GPU fast path: which of ms-swift's speed and memory switches a plan turns on, and why.

- ``--use_liger_kernel true`` (liger-kernel): fused kernels, and a fused linear-cross-entropy that never holds the
  fp32 logits tensor, the largest transient for Qwen's 151,936-token vocabulary (tokens x vocab x 12 bytes:
  ~7 GiB at 4096 tokens). On when liger-kernel is installed and the model type is one liger patches.
- ``--attn_impl flash_attn`` (flash-attn): attention without the score matrix. On when flash-attn is installed.
- ``--padding_free true``: a micro-batch packed into one row without padding (needs flash_attn). On with flash_attn
  when a process sees more than one sample per micro-batch (at one there is no padding to remove).

Each switch follows the recipe's ``launch`` field when it says true or false, else ``auto`` decides here; each is
printed with the reason. Never on a CPU recipe (the kernels are CUDA kernels; recipe validation refuses true there).
Pure: the environment comes in as ``available`` (module name -> importable), which :func:`module_available` answers
without importing anything.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from swiftkit.train.recipes import Recipe

LIGER_MODEL_TYPES: frozenset[str] = frozenset({
    "qwen2", "qwen2_5", "qwen3", "qwen3_moe", "qwen2_moe", "llama", "llama2", "llama3", "llama3_1", "llama3_2",
    "mistral", "mixtral", "gemma", "gemma2", "gemma3", "phi3", "glm4"})
"""ms-swift model types of the families liger-kernel's ``apply_liger_kernel_to_*`` patches (liger-kernel 0.5/0.6)."""


@dataclass(frozen=True)
class Switch:
    name: str
    """The recipe field (``launch.<name>``) and the switch's name in plan output."""
    on: bool
    why: str
    flags: tuple[tuple[str, object], ...] = ()
    """The ms-swift flags when on."""

    def line(self) -> str:
        return f"{self.name} {'on' if self.on else 'off'}: {self.why}"


def module_available(name: str) -> bool:
    """Importable here, found without importing it (plan stays fast)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _decide(name: str, wanted: Optional[bool], auto: tuple[bool, str],
            flags: tuple[tuple[str, object], ...]) -> Switch:
    if wanted is not None:
        return Switch(name, wanted, f"launch.{name}: {str(wanted).lower()} in the recipe", flags if wanted else ())
    on, why = auto
    return Switch(name, on, f"auto: {why}", flags if on else ())


def fast_path(recipe: "Recipe", available: Callable[[str], bool] = module_available) -> list[Switch]:
    """The three switches for ``recipe`` on this machine."""
    launch = recipe.launch
    if launch.device == "cpu":
        why = "cpu recipe (CUDA kernels)"
        return [Switch(n, False, why) for n in ("liger_kernel", "flash_attn", "padding_free")]
    model_type = recipe.model_type
    if not available("liger_kernel"):
        liger_auto = (False, "liger-kernel is not installed here (pip install -e '.[gpu]')")
    elif model_type is None or model_type not in LIGER_MODEL_TYPES:
        liger_auto = (False, f"model_type {model_type or '(picked by ms-swift at launch)'} is not one liger patches")
    else:
        liger_auto = (True, "liger-kernel installed and patches this model type: no fp32 logits tensor")
    liger = _decide("liger_kernel", launch.liger_kernel, liger_auto, (("use_liger_kernel", True),))
    flash = _decide("flash_attn", launch.flash_attn,
                    (True, "flash-attn installed") if available("flash_attn") else
                    (False, "flash-attn is not installed here (pip install flash-attn)"),
                    (("attn_impl", "flash_attn"),))
    if not flash.on:
        padding_auto = (False, "needs flash_attn")
        if launch.padding_free:  # asked for, but it cannot run without flash_attn: say so, never plan a failing flag
            return [liger, flash, Switch("padding_free", False, "launch.padding_free: true, but flash_attn is off "
                                                                 f"({flash.why})")]
    elif recipe.per_device_batch_size < 2:
        padding_auto = (False, "one sample per micro-batch: no padding to remove")
    else:
        padding_auto = (True, f"{recipe.per_device_batch_size} samples per micro-batch packed without padding")
    padding = _decide("padding_free", launch.padding_free, padding_auto, (("padding_free", True),))
    return [liger, flash, padding]


def liger_on(switches: list[Switch]) -> bool:
    return any(s.name == "liger_kernel" and s.on for s in switches)
