"""Resolve ``--src``: a local path, or a dataset on a hub (``modelscope://owner/name``, ``hf://owner/name``).

Hub datasets are fetched as their raw files (a snapshot), so the same readers handle them as local copies
(the Muice folder layout included). Downloads go through modelscope / huggingface_hub and their caches;
with ``HF_HUB_OFFLINE=1`` or ``MODELSCOPE_OFFLINE=1`` (or ``offline=True``) only the local cache is used.
Where the hub cannot be reached the error is one line naming the id, never the exception text (it can
carry URLs with tokens).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from datasets_prep.errors import SwiftkitError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
"""What a model or dataset hub id looks like on ModelScope and Hugging Face: ``owner/name``, the owner starting with
a letter or digit, both parts letters, digits, ``_ . -``. Stated once, for prep (``modelscope://owner/name``
sources) and swiftkit's preflight (is a recipe's model a hub id or a local folder?)."""

SCHEMES = ("modelscope://", "hf://")


def is_hub_id(src: str) -> bool:
    return src.startswith(SCHEMES)


def parse_hub_id(src: str) -> tuple[str, str]:
    """``"hf://owner/name"`` -> ``("hf", "owner/name")``; a malformed id raises SwiftkitError."""
    scheme, _, repo_id = src.partition("://")
    if scheme not in ("modelscope", "hf") or not HUB_ID.match(repo_id):
        raise SwiftkitError(f"--src {src!r}: expected modelscope://owner/name or hf://owner/name")
    return scheme, repo_id


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def fetch(src: str, *, offline: Optional[bool] = None, cache_dir: Optional[str] = None) -> Path:
    """Download (or find in the cache) a hub dataset's files; returns the local snapshot folder."""
    scheme, repo_id = parse_hub_id(src)
    try:
        if scheme == "hf":
            from huggingface_hub import snapshot_download

            local_only = offline if offline is not None else _env_flag("HF_HUB_OFFLINE")
            path = snapshot_download(repo_id=repo_id, repo_type="dataset", cache_dir=cache_dir,
                                     local_files_only=local_only)
        else:
            from modelscope.hub.snapshot_download import (
                snapshot_download as ms_snapshot_download,
            )

            local_only = offline if offline is not None else _env_flag("MODELSCOPE_OFFLINE")
            path = ms_snapshot_download(repo_id, repo_type="dataset", cache_dir=cache_dir, local_files_only=local_only)
    except Exception as exc:  # each hub client raises its own family of network / cache errors
        where = "not in the local cache (offline mode)" if local_only else "the hub is unreachable or refused it"
        raise SwiftkitError(
            f"--src {src}: cannot download {repo_id}: {where} ({type(exc).__name__}); "
            "download the files yourself and pass --src PATH"
        ) from None
    return Path(path)


def resolve(src: str | os.PathLike[str]) -> Path:
    """A local path that exists, or a hub id fetched to a local folder."""
    text = os.fspath(src)
    if is_hub_id(text):
        return fetch(text)
    path = Path(text)
    if not path.exists():
        raise SwiftkitError(f"--src {text}: no such file or folder (use a path, modelscope://owner/name or hf://owner/name)")
    return path


def link_boundary(folder: Path) -> Path:
    """The folder that links under ``folder`` (a real path) may lead into: ``folder`` itself, or for a Hugging Face
    cache snapshot (``.../datasets--owner--name/snapshots/REV``, whose files are links to ``../../blobs/HASH``) the
    dataset's own cache folder."""
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("datasets--"):
        return folder.parent.parent
    return folder


def model_hub() -> str:
    """The hub ms-swift takes models from: Hugging Face when ``USE_HF`` is set, else ModelScope."""
    return "Hugging Face" if _env_flag("USE_HF") else "ModelScope"


def cached_model(model_id: str) -> Optional[Path]:
    """The local copy of hub model ``model_id`` (``owner/name``) in the cache of :func:`model_hub`; None when it is
    not there. Never downloads."""
    try:
        return snapshot_model(model_id, local_only=True)
    except Exception:  # each hub client raises its own "not in the cache" error
        return None


def snapshot_model(model_id: str, *, local_only: bool) -> Path:
    """Hub model ``model_id`` as a local folder, from the hub of :func:`model_hub` (the one ms-swift trains from):
    the cached copy, downloaded first unless ``local_only``. Raises the hub client's own error."""
    if model_hub() == "Hugging Face":
        from huggingface_hub import snapshot_download

        path = snapshot_download(repo_id=model_id, local_files_only=local_only)
    else:
        from modelscope.hub.snapshot_download import (
            snapshot_download as ms_snapshot_download,
        )

        path = ms_snapshot_download(model_id, local_files_only=local_only)
    if not path or not Path(path).is_dir():
        raise FileNotFoundError(model_id)
    return Path(path)
