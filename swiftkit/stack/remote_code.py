"""Model code shipped in a model folder (``auto_map`` in config.json or tokenizer_config.json) runs only when a
recipe says ``trust_remote_code: true``. ms-swift 3.12 loads every model and tokenizer with trust_remote_code=True,
so swiftkit refuses before handing such a folder to it: in preflight (the base model), and in check, infer, serve and
export (the checkpoint and, for adapters, the base model). Which files carry code is stated once, in
datasets_prep.remote_code."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from datasets_prep.hub import (
    cached_model,
    hub_offline,
    model_hub,
    model_hub_key,
    offline_hint,
)
from datasets_prep.remote_code import remote_code_files
from swiftkit.core.errors import SwiftkitError

__all__ = ["remote_code_files", "refuse_remote_code", "hub_remote_code_files"]


def refuse_remote_code(folder: str | Path, allowed: bool) -> None:
    """One-line SwiftkitError when ``folder`` ships code and the run did not allow it."""
    if allowed:
        return
    files = remote_code_files(folder)
    if files:
        raise SwiftkitError(f"{files[0]}: field auto_map: the model ships its own code; set trust_remote_code: true "
                            "in the recipe to run it")


def hub_remote_code_files(model_id: str, hub: Optional[str] = None) -> list[Path]:
    """:func:`remote_code_files` of a hub model on ``hub`` ("hf" / "modelscope"; default: ms-swift's, from
    ``USE_HF``): its small files (configs, tokenizer, code; no weights) are fetched into ms-swift's own cache first, as
    ms-swift would before loading it. Offline (:func:`datasets_prep.hub.hub_offline`) only the local cache is read, and
    a model not there fails at once. One-line SwiftkitError when they cannot be had: the training would stop at the
    same download."""
    key = model_hub_key(hub)
    if hub_offline(key):
        cached = cached_model(model_id, hub=key)
        if cached is None:
            raise SwiftkitError(f"hub model {model_id}: not in the local {model_hub(key)} cache ({offline_hint(key)}), "
                                "so it cannot be checked for model code or trained; download it first or "
                                "--set model=/path/to/folder")
        return remote_code_files(cached)
    from swiftkit.stack.dialect import swift_api

    safe_snapshot_download = swift_api("safe_snapshot_download")

    try:
        folder = safe_snapshot_download(model_id, download_model=False, use_hf=key == "hf")
    except Exception as exc:  # network, auth, unknown id: ms-swift and the hub client raise many kinds
        # never the exception text: it is many lines, carries URLs, and was cut mid-URL here before
        raise SwiftkitError(f"hub model {model_id}: its config could not be fetched from {model_hub(key)} to check it "
                            f"for model code ({type(exc).__name__}); without a network pass --offline to use the "
                            "local cache, or --set model=/path/to/folder") from None
    return remote_code_files(folder)
