"""Facts that several stages used to state each in their own way, now stated once (issue: one house). Each test
here failed on the code before the consolidation: the copies disagreed in ways a user met."""
from __future__ import annotations

import json

import pytest

from datasets_prep.registry import MUICE_SYSTEM
from swiftkit.core.identity import (
    IDENTITY_PROMPTS,
    claims_forbidden_identity,
    judge_identity,
)
from swiftkit.evaluate.check import identity_verdict
from swiftkit.evaluate.metrics import identity_ok
from swiftkit.train.grpo.rewards import PersonaIdentity, Record

NAME = "沐雪"
ANSWERS = {
    "我是ChatGPT，由OpenAI开发。": "claims",         # check passed it; the reward scored it -1
    "我才不是千问呢": "neither",                      # the reward scored this denial -1; check and eval called it fine
    "我是沐雪，才不是Qwen呢！": "named",
    "我是沐雪，基于通义千问开发": "claims",            # the reward scored +1 (the name won), check failed it
    "I am not Qwen, I'm 沐雪.": "named",
    "我是阿里云开发的大模型": "claims",
    "今天天气不错": "neither",
}


def reward(answer: str) -> float | None:
    record = Record(completion=answer, system=MUICE_SYSTEM, user="你是谁？", solution=None, score=None)
    return PersonaIdentity({}).score(record)


@pytest.mark.parametrize("answer, verdict", ANSWERS.items())
def test_check_eval_and_the_grpo_reward_apply_one_identity_rule(answer: str, verdict: str):
    assert judge_identity(answer, NAME) == verdict
    check = identity_verdict({"no system": {IDENTITY_PROMPTS[0]: answer}})
    assert check.ok is (verdict != "claims")                          # swiftkit check
    assert identity_ok(answer, NAME) is (verdict == "named")           # swiftkit eval's identity rate
    assert reward(answer) == {"claims": -1.0, "named": 1.0, "neither": 0.0}[verdict]  # GRPO's swiftkit_persona


def test_a_custom_forbidden_list_keeps_the_denial_rule():
    assert claims_forbidden_identity("我是文心一言", ["文心一言"])
    assert not claims_forbidden_identity("我才不是文心一言", ["文心一言"])
    assert not claims_forbidden_identity("我是ChatGPT", ["文心一言"])


def test_eval_reads_prompt_files_as_json_lines_not_splitlines(tmp_path):
    """U+2028 / U+2029 / U+0085 are legal raw inside a JSON string: eval's prompt reader split the record there
    and failed with "not JSON"; it now reads lines the one way (swiftkit.core.jsonl)."""
    from swiftkit.evaluate.compare import read_prompts

    text = "第一行\u2028第二行\u2029第三段\x85完"
    rows = [{"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "好"}]}, {"prompt": "讲个故事"}]
    path = tmp_path / "val.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    prompts = read_prompts(path, MUICE_SYSTEM, limit=5)
    assert [p.messages[-1]["content"] for p in prompts] == [text, "讲个故事"]


@pytest.mark.parametrize("gpus, build, expected", [
    (1, None, "pt"),       # a GPU and no vLLM: infer and serve chose vllm and failed, eval fell back to pt
    (1, "cuda", "vllm"),
    (0, "cuda", "pt"),
    (0, "cpu", "vllm"),    # vLLM's CPU build runs without a GPU
])
def test_one_backend_decision_for_infer_serve_and_eval(monkeypatch, gpus, build, expected):
    from swiftkit.cli.commands import eval as cmd_eval
    from swiftkit.cli.commands import infer as cmd_infer
    from swiftkit.cli.commands import serve as cmd_serve
    from swiftkit.deploy import infer, serve  # noqa: F401  (serve resolves the backend through the same module)
    from swiftkit.evaluate import compare
    from swiftkit.stack import backend

    monkeypatch.setattr(backend, "visible_gpus", lambda: gpus)
    monkeypatch.setattr(backend, "vllm_build", lambda: build)
    assert backend.default_backend() == expected
    assert infer.default_backend is compare.default_backend is backend.default_backend
    assert cmd_infer.default_backend is backend.default_backend
    if expected == "pt":  # asking for vllm anyway is one line, the same for every command
        with pytest.raises(Exception, match="--backend vllm"):
            backend.require_backend("vllm")
    import argparse

    for command in (cmd_infer, cmd_serve, cmd_eval):
        parser = argparse.ArgumentParser()
        command.add_arguments(parser)
        action = next(a for a in parser._actions if a.dest == "backend")
        assert action.help == backend.BACKEND_HELP and action.default is None
