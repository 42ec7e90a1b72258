"""The GRPO smoke (`make smoke-grpo`) end to end, and that its verdict fails on runs that did not really do GRPO."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from swiftkit.dev import smoke, smoke_grpo
from tests.helpers import run_smoke_command


def _log(run: Path, steps: list[dict]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"global_step/max_steps": f"{i + 1}/{len(steps)}", **s}) for i, s in enumerate(steps)]
    (run / "logging.jsonl").write_text("\n".join(lines + [json.dumps({"train_loss": 0.1})]) + "\n")


def _completions(run: Path, rewards: list[float], *, prompt: str = "p") -> None:
    table = {"step": ["1"] * len(rewards), "prompt": [prompt] * len(rewards), "completion": ["c"] * len(rewards),
             "ActionMatch": rewards, "ThinkFormat": [math.nan] * len(rewards), "advantages": [0.0] * len(rewards)}
    (run / "completions.jsonl").write_text(json.dumps(table) + "\n")


GOOD_STEP = {"loss": 1e-5, "reward": 0.2, "reward_std": 0.1, "rewards/ActionMatch/mean": 0.2,
             "rewards/ThinkFormat/mean": math.nan}


def test_verdict_passes_a_run_with_rewards_spread_and_finite_loss(tmp_path):
    _log(tmp_path, [GOOD_STEP, GOOD_STEP])
    _completions(tmp_path, [1.0, 0.0, 0.1, 1.0])
    v = smoke_grpo.grpo_verdict(tmp_path)
    assert v.ok, v.problems
    assert (v.groups, v.varied_groups, len(v.steps)) == (1, 1, 2)
    assert v.steps[0]["ActionMatch"] == 0.2 and math.isnan(v.steps[0]["ThinkFormat"])


def test_verdict_fails_without_spread_rewards_or_finite_loss(tmp_path):
    _log(tmp_path, [GOOD_STEP, {**GOOD_STEP, "loss": math.nan},
                    {"loss": 0.0, "reward": 0.0, "rewards/ActionMatch/mean": math.nan}])
    _completions(tmp_path, [0.5, 0.5, 0.5, 0.5])  # a group whose completions all score alike: no gradient
    problems = smoke_grpo.grpo_verdict(tmp_path).problems
    assert problems == [
        "step 2: loss nan is not finite",
        "step 3: no reward was computed ({'ActionMatch': nan})",
        "none of 1 groups of completions had a reward spread: no GRPO gradient",
    ]
    (tmp_path / "completions.jsonl").unlink()
    assert any("completions.jsonl: missing" in p for p in smoke_grpo.grpo_verdict(tmp_path).problems)
    assert smoke_grpo.grpo_verdict(tmp_path / "nothing").problems[0] == "no logged GRPO step in logging.jsonl"


@pytest.mark.slow
def test_smoke_grpo_end_to_end(tmp_path):
    """Prep, tiny model, SFT warm-up (1 process), GRPO on 2 CPU processes through the launcher and worker."""
    code, text = run_smoke_command("smoke-grpo", tmp_path / "data", tmp_path / "models" / "tiny-qwen2",
                                   tmp_path / "runs")
    print(text)
    assert code == 0, text
    rows = smoke.parse_summary(text)
    assert rows["smoke-grpo"] == "PASS"
    run = Path(rows["grpo run"])
    assert run.parent.name == "smoke_grpo" and (run / "completions.jsonl").is_file()
    info = json.loads((run / "swiftkit_run.json").read_text())
    assert info["method"] == "grpo" and info["argv"][:4] == ["swift", "rlhf", "--rlhf_type", "grpo"]
    assert info["argv"][info["argv"].index("--model") + 1].startswith(rows["sft run"])  # init_from the warm-up
    assert sorted(p.name for p in (run / "swiftkit_shims").iterdir()) == ["rank0.json", "rank1.json"]
    verdict = smoke_grpo.grpo_verdict(run)
    assert len(verdict.steps) == 12 and verdict.varied_groups >= 1
    names = {"ActionMatch", "ThinkFormat", "ReferenceSimilarity", "CharRepetition"}
    assert names <= set(verdict.steps[0]), verdict.steps[0]
    # every reward was computed on some step (each applies to part of the mixed data)
    for name in names:
        assert any(math.isfinite(s[name]) for s in verdict.steps), name
