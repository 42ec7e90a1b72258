"""ms-swift's answers kept per install (swiftkit.stack.answers): asked once per question, install and swiftkit code,
and a launch that has them imports neither ms-swift nor torch before training starts."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from swiftkit.stack import answers
from tests.test_launch import _write_data, _write_model_config


def test_an_answer_is_asked_once_per_question_install_and_code(tmp_path, monkeypatch):
    monkeypatch.setenv("SWIFTKIT_CACHE", str(tmp_path / "cache"))
    code = tmp_path / "code" / "answer_code_probe.py"
    code.parent.mkdir()
    code.write_text("RULE = 1\n")
    monkeypatch.syspath_prepend(str(code.parent))
    asked: list[object] = []

    def ask(value: object):
        def compute() -> dict:
            asked.append(value)
            return {"value": value}
        return compute

    probe = ("answer_code_probe",)
    assert answers.remembered("k", [1], ask(1), code=probe) == {"value": 1}
    assert answers.remembered("k", [1], ask("again"), code=probe) == {"value": 1}  # kept: not asked again
    assert answers.remembered("k", [2], ask(2), code=probe) == {"value": 2}  # another question
    assert asked == [1, 2]
    code.write_text("RULE = 2\n")  # swiftkit's code that decides the answer changed
    assert answers.remembered("k", [1], ask(3), code=probe) == {"value": 3}
    real = answers._distribution_id
    monkeypatch.setattr(answers, "_distribution_id", lambda name: [*real(name), "reinstalled"])
    assert answers.remembered("k", [1], ask(4), code=probe) == {"value": 4}  # another install
    assert asked == [1, 2, 3, 4]

    def fails() -> dict:
        raise RuntimeError("ms-swift not importable")

    with pytest.raises(RuntimeError):
        answers.remembered("k", [5], fails, code=probe)
    assert answers.remembered("k", [5], ask(5), code=probe) == {"value": 5}  # an error is never kept


_PREPARE = """
import json, sys
from swiftkit.train.launch import prepare
report = prepare("smoke_tiny", overrides=sys.argv[1:]).preflight
print(json.dumps({"lines": report.lines(), "imported": sorted(m for m in ("swift", "torch") if m in sys.modules)}))
"""


def test_a_launch_with_kept_answers_imports_neither_ms_swift_nor_torch(tmp_path, monkeypatch):
    """The first preflight asks ms-swift (here, in this process); a second launch (a fresh process) gives the same
    verdicts, a failing one included, without importing ms-swift or torch."""
    from swiftkit.train.launch import prepare

    _write_data(tmp_path)
    _write_model_config(tmp_path / "models" / "tiny-qwen2")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SWIFTKIT_CACHE", str(tmp_path / "cache"))
    overrides = ["extra_args.pakcing=true"]
    first = prepare("smoke_tiny", overrides=overrides).preflight
    assert any("'pakcing' is not a `swift sft` argument" in c.message for c in first.failures)
    assert [c.name for c in first.checks if c.name in ("template", "extra_args")] == ["template", "extra_args"]
    out = subprocess.run([sys.executable, "-c", _PREPARE, *overrides], capture_output=True, text=True, timeout=120,
                         check=True)
    second = json.loads(out.stdout.strip().splitlines()[-1])
    assert second["lines"] == first.lines()
    assert second["imported"] == []
    assert sorted(p.name.split("-")[0] for p in (Path(tmp_path) / "cache" / answers.FOLDER).iterdir()) == [
        "extra_args", "template"]
