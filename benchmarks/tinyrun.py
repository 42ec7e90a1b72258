"""The tiny trained run the train and serve benchmarks measure: the bundled Muice samples prepped, the tiny random
Qwen2 built, smoke_tiny trained through the real launcher under ``root``."""
from __future__ import annotations

from pathlib import Path


def tiny_inputs(root: Path) -> list[str]:
    """Prep the bundled Muice samples and build the tiny Qwen2 under ``root``; the ``--set`` values that point
    smoke_tiny at them."""
    from datasets_prep.options import PrepOptions
    from datasets_prep.pipeline import prep
    from datasets_prep.samples_dir import SAMPLES_DIR
    from swiftkit.dev.tiny import build_tiny_model

    data = root / "data" / "muice"
    prep("muice", SAMPLES_DIR / "muice", data, PrepOptions(token_stats=False, histogram=False))
    model = build_tiny_model(root / "tiny-qwen2")
    return [f"model={model}", f"data.train=[{data / 'train.jsonl'}]", f"data.val=[{data / 'val.jsonl'}]"]


def tiny_run(root: Path, *overrides: str) -> Path:
    """Prep, build and train under ``root``; ``overrides`` are extra ``--set`` values (epochs, learning rate, ...)."""
    from swiftkit.train import launch

    return launch.train("smoke_tiny", runs_root=root / "runs", overrides=[*tiny_inputs(root), *overrides])
