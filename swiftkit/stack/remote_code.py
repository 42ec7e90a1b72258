"""Model code shipped in a model folder (``auto_map`` in config.json or tokenizer_config.json) runs only when a
recipe says ``trust_remote_code: true``. ms-swift 3.12 loads every model and tokenizer with trust_remote_code=True,
so swiftkit refuses before handing such a folder to it: in preflight (the base model), and in check, infer, serve and
export (the checkpoint and, for adapters, the base model). Which files carry code is stated once, in
datasets_prep.remote_code."""
from __future__ import annotations

from pathlib import Path

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


def hub_remote_code_files(model_id: str) -> list[Path]:
    """:func:`remote_code_files` of a hub model: its small files (configs, tokenizer, code; no weights) are fetched
    into ms-swift's own cache first, as ms-swift would before loading it. One-line SwiftkitError when they cannot be
    fetched (offline, unknown id): the training would stop at the same download."""
    from swiftkit.stack.dialect import swift_api

    safe_snapshot_download = swift_api("safe_snapshot_download")

    try:
        folder = safe_snapshot_download(model_id, download_model=False)
    except Exception as exc:  # network, auth, unknown id: ms-swift and the hub client raise many kinds
        raise SwiftkitError(f"hub model {model_id}: its config could not be fetched to check it for model code "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})") from exc
    return remote_code_files(folder)
