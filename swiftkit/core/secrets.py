"""Credentials: which environment variables and flags hold them, and how a command line is printed without them.

Secrets come only from the environment; they are passed through to child processes, never printed, logged or
recorded in a run directory (:func:`swiftkit.core.proc.mask_secrets` masks them in child output).
"""
from __future__ import annotations

import shlex
from typing import Sequence

SECRET_ENV = (
    "SWANLAB_API_KEY", "SWANLAB_TOKEN", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "MODELSCOPE_API_TOKEN",
    "MODELSCOPE_TOKEN", "WANDB_API_KEY", "DASHSCOPE_API_KEY", "OPENAI_API_KEY",
)
"""Environment variables that hold credentials: passed through to training, never printed or recorded."""

SECRET_FLAGS = ("--api_key", "--hub_token")
"""ms-swift flags whose value is a credential: shown as ``***`` wherever swiftkit prints an argument list."""


def redact(argv: Sequence[str]) -> list[str]:
    """A copy of ``argv`` with the value after each secret flag replaced by ``***`` (for printing and logs)."""
    out = list(argv)
    for i, token in enumerate(out[:-1]):
        if token in SECRET_FLAGS:
            out[i + 1] = "***"
    return out


def quote(argv: Sequence[str]) -> str:
    """``argv`` as one shell line a user can paste, secrets redacted."""
    return " ".join(shlex.quote(a) for a in redact(argv))
