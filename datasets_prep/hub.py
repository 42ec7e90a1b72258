"""Resolve ``--src``: a local path, or a dataset on a hub (``modelscope://owner/name``, ``hf://owner/name``).

Hub datasets are fetched as their raw files (a snapshot), so the same readers handle them as local copies
(the Muice folder layout included). Downloads go through modelscope / huggingface_hub and their caches;
with ``HF_HUB_OFFLINE=1`` or ``MODELSCOPE_OFFLINE=1`` (or ``offline=True``) only the local cache is used.
Where the hub cannot be reached the error is one line naming the id, never the exception text (it can
carry URLs with tokens).

Offline is a mode, per hub (:func:`hub_offline`): Hugging Face when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``,
which huggingface_hub also reads) is set, ModelScope when ``MODELSCOPE_OFFLINE`` is (swiftkit's variable: the
modelscope client has none of its own); the ``--offline`` option sets both (:func:`go_offline`). Offline, every
lookup here reads the local cache only and fails at once, with one line, when the cache does not have it.
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


HUB_NAMES = {"hf": "Hugging Face", "modelscope": "ModelScope"}
"""Hub keys (a recipe's ``hub``, ``--hub``) -> the hub's name in messages."""
OFFLINE_ENV = {"hf": ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"), "modelscope": ("MODELSCOPE_OFFLINE",)}
"""The variables that make a hub's lookups cache-only (the first of each is what ``--offline`` sets)."""


def hub_offline(hub: str) -> bool:
    """Hub ``hub`` ("hf" / "modelscope") is offline: lookups read the local cache only."""
    return any(_env_flag(name) for name in OFFLINE_ENV[hub])


def go_offline() -> dict[str, Optional[str]]:
    """``--offline``: every hub offline, in this process and the processes it starts (huggingface_hub, transformers
    and datasets read HF_HUB_OFFLINE themselves; swiftkit's lookups read both). Returns the variables' previous
    values (None: unset), for a caller that restores them."""
    previous = {names[0]: os.environ.get(names[0]) for names in OFFLINE_ENV.values()}
    for name in previous:
        os.environ[name] = "1"
    return previous


def offline_hint(hub: str) -> str:
    """How a message names the offline mode of ``hub`` (the variable a user would unset)."""
    return f"offline: {OFFLINE_ENV[hub][0]}=1 or --offline"


def fetch(src: str, *, offline: Optional[bool] = None, cache_dir: Optional[str] = None) -> Path:
    """Download (or find in the cache) a hub dataset's files; returns the local snapshot folder."""
    scheme, repo_id = parse_hub_id(src)
    hub = "hf" if scheme == "hf" else "modelscope"
    if (offline if offline is not None else hub_offline(hub)) and cache_dir is None \
            and cached_repo_dir(repo_id, hub, "dataset") is None:  # at once: a hub client takes seconds to import
        raise SwiftkitError(f"--src {src}: cannot download {repo_id}: not in the local cache ({HUB_NAMES[hub]}, "
                            f"{offline_hint(hub)}); download the files yourself and pass --src PATH")
    try:
        if scheme == "hf":
            from huggingface_hub import snapshot_download

            local_only = offline if offline is not None else hub_offline("hf")
            path = snapshot_download(repo_id=repo_id, repo_type="dataset", cache_dir=cache_dir,
                                     local_files_only=local_only)
        else:
            from modelscope.hub.snapshot_download import (
                snapshot_download as ms_snapshot_download,
            )

            local_only = offline if offline is not None else hub_offline("modelscope")
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


def model_hub_key(hub: Optional[str] = None) -> str:
    """``hub`` when given, else the hub ms-swift takes models from: "hf" when ``USE_HF`` is set, else "modelscope"."""
    return hub or ("hf" if _env_flag("USE_HF") else "modelscope")


def model_hub(hub: Optional[str] = None) -> str:
    """The name of :func:`model_hub_key`'s hub (Hugging Face, ModelScope)."""
    return HUB_NAMES[model_hub_key(hub)]


def cached_model(model_id: str, hub: Optional[str] = None) -> Optional[Path]:
    """The local copy of hub model ``model_id`` (``owner/name``) in the cache of :func:`model_hub`; None when it is
    not there. Never downloads."""
    try:
        return snapshot_model(model_id, local_only=True, hub=hub)
    except Exception:  # each hub client raises its own "not in the cache" error
        return None


def snapshot_model(model_id: str, *, local_only: bool, hub: Optional[str] = None) -> Path:
    """Hub model ``model_id`` as a local folder, from ``hub`` (default: the one ms-swift trains from,
    :func:`model_hub_key`): the cached copy, downloaded first unless ``local_only`` or the hub is offline. Raises the
    hub client's own error."""
    key = model_hub_key(hub)
    if hub_offline(key):  # the cache's layout, read directly: importing a hub client alone takes seconds
        folder = cached_model_dir(model_id, key)
        if folder is None:
            raise FileNotFoundError(f"{model_id}: not in the local {HUB_NAMES[key]} cache")
        return folder
    if key == "hf":
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


def cached_model_dir(model: str, hub: Optional[str] = None) -> Optional[Path]:
    """The folder of hub model ``model`` in the local cache of :func:`model_hub_key`'s hub that has its config.json
    (:func:`cached_repo_dir`); None when absent."""
    return cached_repo_dir(model, model_hub_key(hub), "model")


def cached_repo_dir(repo_id: str, hub: str, kind: str) -> Optional[Path]:
    """A model's (with config.json) or a dataset's (not empty) folder in the local cache of ``hub``, found by the
    caches' on-disk layout without importing a hub client (they import torch: ``swiftkit plan`` must stay fast, and
    an offline lookup must fail at once); None when absent. ``kind``: "model" or "dataset".
    Hugging Face: ``$HF_HUB_CACHE`` (or ``$HF_HOME/hub``, ``~/.cache/huggingface/hub``) ``/{kind}s--owner--name/
    snapshots/<refs/main>/``. ModelScope (``$MODELSCOPE_CACHE``, else ``~/.cache/modelscope``): ``{kind}s/owner--name/
    snapshots/<revision>/`` since modelscope-hub, before that ``[hub/]{kind}s/owner/name`` with '.' stored as '___'."""
    if not HUB_ID.match(repo_id):
        return None
    owner, name = repo_id.split("/")
    if hub == "hf":
        home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
        repo = Path(os.environ.get("HF_HUB_CACHE") or Path(home) / "hub").expanduser() / f"{kind}s--{owner}--{name}"
        try:
            ref = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
        except OSError:
            ref = ""
        candidates = [repo / "snapshots" / ref] if ref else sorted((repo / "snapshots").glob("*"))
    else:
        base = Path(os.environ.get("MODELSCOPE_CACHE") or Path.home() / ".cache" / "modelscope").expanduser()
        snapshots = base / f"{kind}s" / f"{owner}--{name}" / "snapshots"
        candidates = [snapshots / "master", *sorted(snapshots.glob("*"))]
        for root in (base, base / "hub"):
            candidates += [root / f"{kind}s" / owner / name.replace(".", "___"), root / f"{kind}s" / owner / name,
                           root / owner / name.replace(".", "___")]

    def complete(folder: Path) -> bool:
        if kind == "model":
            return (folder / "config.json").is_file()
        return folder.is_dir() and any(folder.iterdir())

    return next((c for c in candidates if complete(c)), None)
