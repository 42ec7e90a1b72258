"""Shared fixtures: the tiny model and the tiny trained runs, built once per pytest session by the real code paths
(tests/helpers.py says how), and a workspace with the repository's recipes."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests import helpers


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny random Qwen2 (seed 0), built once per session."""
    return helpers.tiny_model(tmp_path_factory)


@pytest.fixture(scope="session")
def full_run(tmp_path_factory) -> Path:
    """The full-weight persona run that memorizes :data:`tests.helpers.PAIRS` (1 CPU process). Shared: copy it
    (:func:`tests.helpers.copy_run`) before changing it."""
    return helpers.trained_run(tmp_path_factory, "full")


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory) -> Path:
    """The LoRA persona run on the same data. Shared: copy it before changing it."""
    return helpers.trained_run(tmp_path_factory, "lora")


@pytest.fixture(scope="session")
def smoke_result(tmp_path_factory) -> dict:
    """`swiftkit smoke` run once per session: exit code, printed summary and its paths."""
    return helpers.smoke_run(tmp_path_factory)
