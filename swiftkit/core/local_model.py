"""A model named by a recipe or a run: a local folder or a hub id, and the one way to get a local folder for it.

Every command that needs a model's files on disk (preflight, the probe, eval, preview, prep's --tokenizer) asks here:
the folder itself, else the copy in the local cache of the hub ms-swift trains from (ModelScope, or Hugging Face
with ``USE_HF=1``), else, where the caller allows it, a download from that same hub.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from datasets_prep.hub import (
    HUB_ID,
    cached_model_dir,
    hub_offline,
    model_hub,
    model_hub_key,
    offline_hint,
    snapshot_model,
)
from swiftkit.core.errors import SwiftkitError

LOCAL_ROOTS = ("models", "runs", "output", "outputs", "checkpoints")
"""First path components that mean a local folder even when the name looks like ``owner/name``."""


def is_local_model(model: str) -> bool:
    """A local folder (existing, path-like, or under a conventional local root) rather than a hub id."""
    path = Path(model).expanduser()
    if path.exists() or model.startswith(("/", "./", "../", "~")):
        return True
    first = Path(model).parts[0] if Path(model).parts else ""
    return not HUB_ID.match(model) or first in LOCAL_ROOTS or Path(first).is_dir()


def local_model_dir(model: str, *, download: bool, why: str = "model", hub: Optional[str] = None) -> str:
    """A local folder for ``model``: itself, or the hub copy in the local cache; downloaded when ``download``
    (the probe of a trained run needs its base model) unless the hub is offline. One-line SwiftkitError otherwise."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path) if model.startswith("~") else model
    if is_local_model(model):
        raise SwiftkitError(f"{why} {model}: no such folder (--set model=/path/to/folder)")
    key = model_hub_key(hub)
    offline = hub_offline(key)
    try:
        return str(snapshot_model(model, local_only=not download or offline, hub=key))
    except Exception as exc:  # network, auth, missing id, not cached: one line, never the exception text (URLs)
        if offline:
            raise SwiftkitError(f"{why} {model}: not in the local {model_hub(key)} cache ({offline_hint(key)}); "
                                "download it first or --set model=/path/to/folder") from None
        if download:
            raise SwiftkitError(f"{why} {model}: not local and not downloadable from {model_hub(key)} "
                                f"({type(exc).__name__})") from None
        raise SwiftkitError(f"{why} {model}: not in the local {model_hub(key)} cache and this command does not "
                            f"download ({type(exc).__name__}); download it first or --set model=/path/to/folder") from None


def cached_config_file(model: str, hub: Optional[str] = None) -> Optional[Path]:
    """config.json of hub model ``model`` in the local cache of :func:`model_hub`, found by the caches' on-disk
    layout without importing a hub client (:func:`datasets_prep.hub.cached_model_dir`); None when absent."""
    folder = cached_model_dir(model, hub)
    return folder / "config.json" if folder else None
