"""Training methods: a recipe's ``method`` field picks one row of this table.

A row says which ms-swift command the plan becomes (``swift sft``; ``swift rlhf --rlhf_type grpo`` or ``dpo``) and which
ms-swift entry point each training process calls (``sft_main``; ``rlhf_main``), as ms-swift's own
``swift/cli/main.py`` route table does. Adding a method touches: this table, its recipe section and validation
(recipes.py), its flags (plan.py: ``method_args``), and its preflight checks (preflight.py); the launcher, worker,
run directory and CLI take it from here.
"""
from __future__ import annotations

from dataclasses import dataclass

from swiftkit.core.errors import SwiftkitError


@dataclass(frozen=True)
class Method:
    name: str
    command: tuple[str, ...]
    """The ms-swift CLI words after ``swift`` (``("sft",)``)."""
    entry: str
    """The function in ms-swift's main module that takes the argument list (``sft_main``)."""
    arguments: str
    """The ms-swift argument class that entry point parses (``TrainArguments``): every planned flag is one of its
    fields (checked by tests for the plans, and by preflight for a recipe's extra_args)."""
    summary: str


METHODS: dict[str, Method] = {
    "sft": Method("sft", ("sft",), "sft_main", "TrainArguments", "supervised fine-tuning on messages records"),
    "grpo": Method("grpo", ("rlhf",), "rlhf_main", "RLHFArguments",
                   "GRPO: sample num_generations completions per prompt, reward them (recipe `grpo.rewards`), "
                   "push toward the better ones; starts from an SFT run (`init_from`)"),
    "dpo": Method("dpo", ("rlhf",), "rlhf_main", "RLHFArguments",
                  "DPO: preference pairs (a chosen and a rejected answer to one prompt, `swiftkit prep-pairs`) push "
                  "the chosen answer's likelihood above the rejected one's, against a frozen reference; starts from "
                  "an SFT run (`init_from`)"),
}
DEFAULT_METHOD = "sft"


def get_method(name: str) -> Method:
    """The method called ``name``; one-line SwiftkitError naming the known ones otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise SwiftkitError(f"method {name!r}: choose one of {', '.join(METHODS)}") from None
