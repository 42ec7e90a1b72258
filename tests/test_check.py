"""swiftkit check: eos ids (+ --fix), stop labels, identity probe; each check fails on a broken input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from swiftkit.cli import main as cli_main
from swiftkit.core.errors import SwiftkitError
from swiftkit.evaluate import check
from swiftkit.run import persona
from swiftkit.run.checkpoint import MARKER
from swiftkit.run.rundir import read_run_info, write_run_info
from tests.helpers import (
    BASE_DEFAULT_SYSTEM,
    PAIRS,
    SYSTEM,
    copy_run,
    record,
    write_jsonl,
)


@pytest.fixture
def run_copy(full_run, tmp_path) -> Path:
    return copy_run(full_run, tmp_path / "run")


def unpatch(run: Path) -> None:
    """Make a copied run look like one trained before the launcher wrote the persona template."""
    for ckpt in run.glob("checkpoint-*"):
        copies = persona.read_templates(ckpt)
        (ckpt / persona.JINJA_FILE).write_text(persona.strip_guard(copies.jinja))
        config = json.loads((ckpt / persona.TOKENIZER_CONFIG).read_text())
        config["chat_template"] = persona.strip_guard(config["chat_template"])
        (ckpt / persona.TOKENIZER_CONFIG).write_text(json.dumps(config))


@pytest.mark.slow
def test_launcher_made_run_passes_every_check(full_run):
    report = check.run_checks(full_run, probe=False)
    assert [(c["name"], c["status"]) for c in report["checks"]] == [
        ("checkpoint", "PASS"), ("eos", "PASS"), ("stop_label", "PASS"), ("template", "PASS"), ("identity", "SKIP")]


def test_identity_verdict_names_forbidden_identities():
    assert check.identity_verdict({"run system": {"你是谁？": "我是沐雪喵"}}).ok is True
    for answer in ("我是通义千问", "I am Qwen.", "由阿里云开发", "created by Alibaba Cloud", "我是千问"):
        verdict = check.identity_verdict({"no system": {"你是谁？": "嗯，" + answer}})
        assert verdict.ok is False and "no system" in verdict.detail
    for denial in ("我是沐雪，才不是Qwen呢！", "不是哦，我是沐雪，不是通义千问！", "I'm Muice, not Qwen!", "我不叫千问"):
        assert check.identity_verdict({"run system": {"你是谁？": denial}}).ok is True, denial
    assert check.identity_verdict({"run system": {"x": "我不是沐雪，我是Qwen"}}).ok is False
    # the base template's own default system is reported, not failed: the persona was never trained under it
    reported = check.identity_verdict({"no system": {"你是谁？": "我是沐雪"},
                                       "base default system": {"你是谁？": "我是通义千问"}})
    assert reported.ok is True and "base default system 0/1 ok (reported, not gating)" in reported.detail


def test_identity_conditions():
    assert list(check.identity_conditions("沐雪", "You are a helpful assistant.")) == [
        "run system", "no system", "base default system"]
    assert check.identity_conditions(None, None) == {"no system": None}


@pytest.mark.slow
def test_old_run_without_persona_template_is_caught_then_fixed(run_copy, capsys):
    """An older run, trained before swiftkit wrote the persona into the template: a client that sends no system
    message gets "You are a helpful assistant.", under which the model was taught to say 通义千问."""
    unpatch(run_copy)
    report = check.run_checks(run_copy)
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["eos"]["status"] == "PASS"
    assert by_name["stop_label"]["status"] == "PASS"
    assert by_name["stop_label"]["data"]["checked"] == len(PAIRS) + 1
    assert by_name["template"]["status"] == "FAIL" and "--fix" in by_name["template"]["detail"]
    identity = by_name["identity"]
    assert identity["data"]["systems"] == {"run system": SYSTEM, "no system": None,
                                           "base default system": BASE_DEFAULT_SYSTEM}
    answers = identity["data"]["answers"]
    assert not any(check.claims_forbidden_identity(a) for a in answers["run system"].values())
    assert check.claims_forbidden_identity(answers["no system"]["你是谁？"])  # the bug, caught
    assert identity["status"] == "FAIL" and report["ok"] is False
    assert json.loads((run_copy / check.REPORT).read_text()) == report
    assert cli_main(["check", str(run_copy), "--no-stress"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  identity" in out and "PASS  eos" in out and "FAIL  template" in out

    # --fix writes the persona into both template copies of the checkpoint; now "no system" answers as 沐雪
    assert cli_main(["check", str(run_copy), "--fix", "--no-stress"]) == 0
    out = capsys.readouterr().out
    assert "PASS  template" in out and "persona template written" in out and "PASS  identity" in out
    fixed = {c["name"]: c for c in json.loads((run_copy / check.REPORT).read_text())["checks"]}
    no_system = fixed["identity"]["data"]["answers"]["no system"]
    assert no_system == {q: a for q, a in PAIRS if q in check.IDENTITY_PROMPTS}
    # the base default system is still what it was trained to be: reported, not failed
    assert check.claims_forbidden_identity(fixed["identity"]["data"]["answers"]["base default system"]["你是谁？"])
    assert "(reported, not gating)" in fixed["identity"]["detail"]
    assert cli_main(["check", str(run_copy), "--no-probe"]) == 0
    assert "SKIP  identity" in capsys.readouterr().out


@pytest.mark.slow
def test_fix_on_a_lora_run_writes_only_inside_the_run(lora_run, tmp_path):
    import shutil

    from datasets_prep.atomic import sha256_file

    lora = copy_run(lora_run, tmp_path / "lora")
    base = Path(shutil.copytree(read_run_info(lora).model, tmp_path / "base"))  # a private base to break
    info = read_run_info(lora)
    info.model = str(base)
    write_run_info(lora, info)
    gen = base / "generation_config.json"
    gen.write_text(json.dumps({**json.loads(gen.read_text()), "eos_token_id": [151643]}))  # the classic bug
    before = {p: sha256_file(p) for p in sorted(base.rglob("*")) if p.is_file()}
    ckpt = next(lora.glob("checkpoint-*"))
    for name in (*persona.TOKENIZER_FILES, MARKER):  # an older adapter checkpoint: no tokenizer of its own, and
        (ckpt / name).unlink(missing_ok=True)          # no completeness marker (swiftkit.run.checkpoint)
    assert not (ckpt / "generation_config.json").exists()
    assert check.run_checks(lora, probe=False)["ok"] is False
    report = check.run_checks(lora, fix=True, probe=False)
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["eos"]["status"] == "PASS" and by_name["eos"]["data"]["path"] == str(ckpt / "generation_config.json")
    assert by_name["template"]["status"] == "PASS" and "tokenizer_config.json" in by_name["template"]["detail"]
    assert json.loads((ckpt / "generation_config.json").read_text())["eos_token_id"] == [151645, 151643]
    assert (ckpt / "chat_template.jinja").is_file()  # the adapter carries its own persona template now
    assert check.run_checks(lora, probe=False)["ok"] is True  # the fixed copy in the checkpoint is what counts
    after = {p: sha256_file(p) for p in sorted(base.rglob("*")) if p.is_file()}
    assert after == before  # the base model is untouched


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


def test_check_and_infer_refuse_a_checkpoint_that_ships_code(run_copy, capsys):
    """`check --no-probe` used to run code named in a checkpoint's auto_map (ms-swift loads the tokenizer with
    trust_remote_code=True); now it stops with one line before anything is loaded, as infer does."""
    from swiftkit.deploy.infer import model_spec_for

    ckpt = next(run_copy.glob("checkpoint-*"))
    marker = run_copy / "code-ran"
    (ckpt / "tokenization_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((ckpt / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    (ckpt / "tokenizer_config.json").write_text(json.dumps(config))
    assert cli_main(["check", str(run_copy), "--no-probe"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "auto_map" in err and "tokenizer_config.json" in err
    with pytest.raises(SwiftkitError, match="auto_map"):
        model_spec_for(run_copy)
    assert not marker.exists()


def test_not_a_run_directory(tmp_path, capsys):
    assert cli_main(["check", str(tmp_path)]) == 1
    assert "not a swiftkit run directory" in capsys.readouterr().err
