"""The ms-swift 4.x lane (`make test-swift4`, in .venv-swift4): swiftkit's own paths run on ms-swift 4.x, through the
one seam (swiftkit.stack.dialect). Skipped where the installed ms-swift is 3.x (the main .venv)."""
from __future__ import annotations

import json

import pytest

from swiftkit.cli import main as cli_main
from swiftkit.stack.dialect import SWIFT4, installed_dialect
from tests.helpers import PAIRS


def _on_4x() -> bool:
    try:
        return installed_dialect() is SWIFT4
    except Exception:  # noqa: BLE001 - no ms-swift at all: not this lane
        return False


pytestmark = [pytest.mark.slow, pytest.mark.skipif(not _on_4x(), reason="ms-swift 4.x is not installed here; "
                                                   "`make test-swift4` runs this lane in .venv-swift4")]


def test_doctor_names_the_4x_dialect(capsys):
    cli_main(["doctor"])
    assert "(4.x dialect)" in capsys.readouterr().out


def test_a_trained_run_answers_through_4x(full_run, capsys):
    """Training (the launcher, the worker, 4.x's sft_main with --tuner_type) memorized the pairs; 4.x's infer
    (--infer_backend transformers) gives them back greedily."""
    rows = [json.loads(line) for line in (full_run / "logging.jsonl").read_text(encoding="utf-8").splitlines()
            if '"loss"' in line]
    losses = [r["loss"] for r in rows if "loss" in r]
    print(f"\n4.x full run: loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} logs")
    assert losses[-1] < losses[0] / 10
    prompt, answer = PAIRS[0]
    assert cli_main(["infer", str(full_run), "--prompt", prompt, "--max-new-tokens", "48", "--backend", "pt"]) == 0
    out = capsys.readouterr().out
    assert answer in out
