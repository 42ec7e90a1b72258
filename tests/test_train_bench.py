"""`make bench`'s train section reads the trainer's own log: the steady-state rate from ms-swift's logging.jsonl
rows (nothing is timed here)."""
from __future__ import annotations

import json

import pytest

from benchmarks.train_bench import steady_rate


def _log(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_the_steady_rate_comes_from_the_logged_elapsed_time_after_warm_up(tmp_path):
    # ms-swift logs train_speed(s/it) = seconds since training began / step. Here steps 1-9 take 3 s each (warm-up)
    # and later ones 2 s: the steady rate from step 10 is 0.5 steps/s (from step 1 it would read 0.41).
    def elapsed(s: int) -> float:
        return 3.0 * s if s <= 9 else 27.0 + 2.0 * (s - 9)

    rows = [{"loss": 1.0, "global_step/max_steps": f"{s}/20", "train_speed(s/it)": round(elapsed(s) / s, 6)}
            for s in range(1, 21)]
    rows.append({"train_runtime": 45.0, "global_step/max_steps": "20/20", "train_speed(s/it)": 2.25})  # no loss
    rate, last = steady_rate(_log(tmp_path / "logging.jsonl", rows))
    assert last == 20
    assert rate == pytest.approx(0.5, rel=1e-4)


def test_a_log_without_enough_steps_is_one_clear_error(tmp_path):
    rows = [{"loss": 1.0, "global_step/max_steps": "1/2", "train_speed(s/it)": 1.0}]
    with pytest.raises(ValueError, match="fewer than 2 logged steps from step 10"):
        steady_rate(_log(tmp_path / "logging.jsonl", rows))
