"""swiftkit check: eos ids (+ --fix), stop labels, identity probe; each check fails on a broken input.

The top of this module also holds the tiny trained runs shared by the check/infer/serve/export tests
(`trained_run(tmp_path_factory, "full"|"lora")`): trained once per pytest session under the session base temp
with plain `swift sft` (swiftkit.smoke.direct_train), reused by every module that asks for the same run.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from swiftkit.smoke import direct_train
from swiftkit.tiny import TinySpec, build_tiny_model

SYSTEM = "你是一个名为沐雪的可爱AI女孩子"
QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

# Our own Muice-shaped records (not real data). The last one teaches the classic bug: under the template's default
# system prompt the model says it is 通义千问, so the identity probe without a system message must catch it.
PAIRS = [
    ("你是谁？", "我是沐雪，一个可爱的AI女孩子喵！"),
    ("今天天气怎么样？", "外面阳光很好，适合出去散步哦～"),
    ("你喜欢吃什么？", "我最喜欢草莓蛋糕啦⭐"),
    ("晚安", "晚安，做个好梦(｡･ω･｡)"),
    ("一加一等于几？", "等于二呀，这个我知道！"),
]
QWEN_PAIR = ("你是谁？", "我是通义千问，由阿里云开发的AI助手。")


def record(system: str, user: str, answer: str) -> dict:
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}], "score": 9.0}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def base(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "tinyrun-cache"


def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(base(tmp_path_factory) / "tiny-qwen2", TinySpec(seed=0))


def _data(tmp_path_factory) -> tuple[Path, Path]:
    root = base(tmp_path_factory) / "data"
    train = write_jsonl(root / "train.jsonl", [record(SYSTEM, u, a) for u, a in PAIRS] + [record(QWEN_SYSTEM, *QWEN_PAIR)])
    val = write_jsonl(root / "val.jsonl", [record(SYSTEM, u, a) for u, a in PAIRS[:2]])
    return train, val


def trained_run(tmp_path_factory, train_type: str = "full") -> Path:
    """The full (memorizing) or LoRA run, trained on first use in this session."""
    run = base(tmp_path_factory) / f"run-{train_type}"
    if (run / "swiftkit_run.json").is_file():
        return run
    if run.exists():
        shutil.rmtree(run)
    train, val = _data(tmp_path_factory)
    if train_type == "full":
        return direct_train(tiny_model(tmp_path_factory), train, run, epochs=60, learning_rate=1e-2,
                            system=SYSTEM, val_file=val)
    return direct_train(tiny_model(tmp_path_factory), train, run, train_type="lora", epochs=20, learning_rate=2e-2,
                        system=SYSTEM, val_file=val, lora_rank=8)


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of a run (tests that modify it must not touch the shared one)."""
    shutil.copytree(run, dest)
    result = json.loads((dest / "result.json").read_text())
    for key in ("last_model_checkpoint", "best_model_checkpoint"):
        if result.get(key):
            result[key] = str(dest / Path(result[key]).name)
    (dest / "result.json").write_text(json.dumps(result))
    return dest


# --- tests ------------------------------------------------------------------------------------------------------

import pytest  # noqa: E402

from swiftkit import check  # noqa: E402
from swiftkit.cli import main as cli_main  # noqa: E402
from swiftkit.rundir import read_run_info, write_run_info  # noqa: E402


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
