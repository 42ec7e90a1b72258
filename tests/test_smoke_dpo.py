"""The DPO smoke (`make smoke-dpo`) end to end, once: warm-up, pairs from the warmed model, DPO on 2 CPU processes
through the launcher and worker. Its verdict's rules are tested without training in tests/test_dpo.py."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from swiftkit.dev import smoke
from swiftkit.evaluate.drift import drift_summary
from swiftkit.run.rundir import read_samples
from tests.helpers import run_smoke_command

GAP_LINE = re.compile(r"^\s+(?P<before>[+-]\d+\.\d+) ->\s+(?P<after>[+-]\d+\.\d+)\s+\((?P<source>\w+)\)")


@pytest.mark.slow
def test_smoke_dpo_end_to_end(tmp_path, tiny_model_dir):
    """The session's tiny model (the same bytes the smoke builds) is reused, not rebuilt."""
    code, text = run_smoke_command("smoke-dpo", tmp_path / "data", tiny_model_dir, tmp_path / "runs")
    print(text)
    assert code == 0, text
    rows = smoke.parse_summary(text)
    assert rows["smoke-dpo"] == "PASS"
    run = Path(rows["dpo run"])
    info = json.loads((run / "swiftkit_run.json").read_text())
    assert info["method"] == "dpo" and info["argv"][:4] == ["swift", "rlhf", "--rlhf_type", "dpo"]
    assert info["argv"][info["argv"].index("--model") + 1].startswith(rows["sft run"])  # init_from the warm-up
    assert sorted(p.name for p in (run / "swiftkit_shims").iterdir()) == ["rank0.json", "rank1.json"]
    manifest = json.loads((Path(rows["pairs"]) / "manifest.json").read_text())
    assert manifest["rejected_from"]["model"] >= 1 and manifest["rejected_model"].startswith("run ")
    # The story the verdict checks: the warmed model preferred its own (rejected) answers, DPO turned every pair.
    gaps = [m.groupdict() for m in map(GAP_LINE.match, text.splitlines()) if m]
    assert len(gaps) == 8
    model = [g for g in gaps if g["source"] == "model"]
    assert model and all(float(g["before"]) < 0 for g in model), gaps
    assert all(float(g["after"]) > 0 for g in gaps), gaps
    # Drift watched during DPO (the recipe's watch, every 8 steps): at step 0 the warm-up's weights claim to be Qwen
    # on every identity question; by the last step DPO has taken the claim away from some of them at least.
    drift = drift_summary(read_samples(run), "沐雪")["steps"]
    assert [s["step"] for s in drift] == [0, 8, 16, 24]
    assert drift[0]["claims"][0] == drift[0]["claims"][1] > 0, drift[0]
    assert drift[-1]["claims"][0] < drift[0]["claims"][0], drift
