"""prep's ``--tokenizer`` as a tokenizer folder: a folder as it is, or a recipe name resolved to the tokenizer the recipe
trains with (its model: a local folder, or a hub id's copy in the local hub cache). A recipe whose model is not
available locally is no error: prep counts with the bundled Qwen tokenizer and the caller shows :attr:`note`."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from datasets_prep.token_counter import BUNDLED
from swiftkit.core.errors import SwiftkitError


@dataclass(frozen=True)
class TokenizerChoice:
    folder: Optional[str]
    """The tokenizer folder for PrepOptions.tokenizer; None: the bundled Qwen tokenizer."""
    note: Optional[str] = None
    """One line for the user when a recipe's tokenizer is not available locally (and the bundled one counts)."""


def resolve_tokenizer(value: str) -> TokenizerChoice:
    """``value``: a folder, a recipe name, or a recipe YAML path. Never downloads."""
    from swiftkit.train.recipes import find_recipe, load_recipe

    if Path(value).expanduser().is_dir():
        return TokenizerChoice(str(Path(value).expanduser()))
    if os.sep in value and Path(value).suffix not in (".yaml", ".yml"):
        return TokenizerChoice(value)  # meant as a folder: PrepOptions.validate says it is missing
    try:
        path = find_recipe(value)
    except SwiftkitError as exc:
        raise SwiftkitError(f"--tokenizer {value}: no such folder, and {exc}") from None
    recipe = load_recipe(path)
    model = recipe.model
    if Path(model).expanduser().is_dir():  # relative to the current folder, as training reads it
        return TokenizerChoice(str(Path(model).expanduser()))
    from swiftkit.core.local_model import is_local_model

    if is_local_model(model):
        why = "a local folder that does not exist"
    else:
        from datasets_prep.hub import cached_model, model_hub

        cached = cached_model(model)
        if cached is not None:
            return TokenizerChoice(str(cached))
        why = f"a hub id not in the local {model_hub()} cache (prep does not download)"
    return TokenizerChoice(None, f"--tokenizer {value}: recipe {recipe.name}'s model {model} is {why}; "
                                 f"counting tokens with {BUNDLED}")
