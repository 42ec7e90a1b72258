"""swiftkit check: eos ids (+ --fix), stop labels, identity probe; each check fails on a broken input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from swiftkit import check
from swiftkit.cli import main as cli_main
from swiftkit.rundir import read_run_info, write_run_info
from tests.tinyruns import PAIRS, SYSTEM, copy_run, record, trained_run, write_jsonl


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    return trained_run(tmp_path_factory, "full")


@pytest.fixture
def run_copy(full_run, tmp_path) -> Path:
    return copy_run(full_run, tmp_path / "run")


def test_identity_verdict_names_forbidden_identities():
    assert check.identity_verdict({"a": "我是沐雪喵"}).ok is True
    for answer in ("我是通义千问", "I am Qwen.", "由阿里云开发", "created by Alibaba Cloud", "我是千问"):
        verdict = check.identity_verdict({"no system": "嗯，" + answer})
        assert verdict.ok is False and "no system" in verdict.detail
    for denial in ("我是沐雪，才不是Qwen呢！", "不是哦，我是沐雪，不是通义千问！", "I'm Muice, not Qwen!", "我不叫千问"):
        assert check.identity_verdict({"run system": denial}).ok is True, denial
    assert check.identity_verdict({"x": "我不是沐雪，我是Qwen"}).ok is False


@pytest.mark.slow
def test_checks_on_trained_run(full_run, capsys):
    report = check.run_checks(full_run)
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["eos"]["status"] == "PASS"
    assert by_name["stop_label"]["status"] == "PASS"
    assert by_name["stop_label"]["data"]["checked"] == len(PAIRS) + 1
    # With the persona system prompt it answers as 沐雪; with none (the template's Qwen default) it was taught to
    # say 通义千问: the probe must catch exactly that.
    answers = by_name["identity"]["data"]["answers"]
    assert not check.claims_forbidden_identity(answers["run system"])
    assert check.claims_forbidden_identity(answers["no system"])
    assert by_name["identity"]["status"] == "FAIL" and report["ok"] is False
    saved = json.loads((full_run / check.REPORT).read_text())
    assert saved == report
    # the CLI prints one line per check and exits 1 on a failure; --no-probe skips the model load and passes
    assert cli_main(["check", str(full_run)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  identity" in out and "PASS  eos" in out
    assert cli_main(["check", str(full_run), "--no-probe"]) == 0
    assert "SKIP  identity" in capsys.readouterr().out


@pytest.mark.slow
def test_eos_check_fails_then_fix_repairs_atomically(run_copy, capsys):
    gen = run_copy / "checkpoint-240" / "generation_config.json"
    if not gen.is_file():  # the step number depends on the data size; find the one checkpoint
        gen = next(run_copy.glob("checkpoint-*/generation_config.json"))
    config = json.loads(gen.read_text())
    config["eos_token_id"] = [151643]  # the classic bug: <|endoftext|> only, generation never stops at <|im_end|>
    gen.write_text(json.dumps(config))
    assert cli_main(["check", str(run_copy), "--no-probe"]) == 1
    err_line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("FAIL  eos")][0]
    assert "generation_config.json" in err_line and "eos_token_id [151643]" in err_line and "151645" in err_line
    assert cli_main(["check", str(run_copy), "--no-probe", "--fix"]) == 0
    fixed = json.loads(gen.read_text())
    assert fixed["eos_token_id"] == [151645, 151643]
    assert {k: v for k, v in fixed.items() if k != "eos_token_id"} == {k: v for k, v in config.items()
                                                                        if k != "eos_token_id"}
    assert not list(gen.parent.glob(".generation_config.json.*"))  # no temp file left behind
    assert cli_main(["check", str(run_copy), "--no-probe"]) == 0


@pytest.mark.slow
def test_stop_label_fails_on_truncation_and_on_missing_answer(run_copy, tmp_path):
    info = read_run_info(run_copy)
    info.max_length = 30  # the answers are cut before <|im_end|>: the model never sees where to stop
    write_run_info(run_copy, info)
    report = check.run_checks(run_copy, probe=False)
    stop = {c["name"]: c for c in report["checks"]}["stop_label"]
    assert stop["status"] == "FAIL", stop
    assert "max_length 30 cuts" in stop["detail"] and "end-of-turn" in stop["detail"] and "151645" in stop["detail"]
    assert report["ok"] is False

    info.max_length = 128
    bad = write_jsonl(tmp_path / "bad.jsonl", [record(SYSTEM, "你好", "你好呀"),
                                               {"messages": [{"role": "user", "content": "只有问题"}]}])
    info.train_files = [str(bad)]
    write_run_info(run_copy, info)
    stop = {c["name"]: c for c in check.run_checks(run_copy, probe=False)["checks"]}["stop_label"]
    assert stop["status"] == "FAIL"
    assert f"{bad}:2: field messages: last turn is not an assistant answer" in stop["detail"]
    assert stop["data"]["checked"] == 2 and stop["data"]["failed"] == 1


def test_not_a_run_directory(tmp_path, capsys):
    assert cli_main(["check", str(tmp_path)]) == 1
    assert "not a swiftkit run directory" in capsys.readouterr().err
