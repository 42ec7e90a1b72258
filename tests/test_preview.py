"""swiftkit preview: records encoded as `swift sft` will (the tiny model's Qwen tokenizer, the smoke_tiny recipe's
template), masked and trained tokens shown, and the truncation and end-of-turn warnings."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from swiftkit.cli import main as cli_main
from swiftkit.evaluate.preview import argv_flags, template_kwargs
from tests.helpers import PAIRS, SYSTEM, record, write_jsonl

LONG_ANSWER = "我是沐雪，" + "今天也要元气满满哦，" * 20 + "晚安！"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> Path:
    return tiny_model_dir


@pytest.fixture(scope="module")
def prompt_lengths(model) -> dict[str, int]:
    """Masked tokens of each record as the tokenizer's own chat template renders the prompt: an independent count."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    return {u: len(tok.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": u}],
                                           add_generation_prompt=True)) for u, _ in PAIRS}


def preview(capsys, model: Path, data: Path, *extra: str) -> tuple[int, str]:
    code = cli_main(["preview", "smoke_tiny", "--set", f"model={model}", "--set", f"data.train=[{data}]", *extra])
    return code, capsys.readouterr().out


def test_template_flags_from_the_plan():
    flags = argv_flags(["swift", "sft", "--model", "m", "--dataset", "a.jsonl", "b.jsonl", "--max_length", "256",
                        "--enable_thinking", "false"])
    assert flags == {"model": ["m"], "dataset": ["a.jsonl", "b.jsonl"], "max_length": ["256"],
                     "enable_thinking": ["false"]}
    kwargs = template_kwargs(flags)
    assert kwargs == {"default_system": None, "max_length": 256, "truncation_strategy": "raise",
                      "loss_scale": "default", "enable_thinking": False}
    assert template_kwargs({"truncation_strategy": ["right"]})["truncation_strategy"] == "right"


@pytest.mark.slow
def test_masked_and_trained_tokens(capsys, model, tmp_path, prompt_lengths):
    data = write_jsonl(tmp_path / "train.jsonl", [record(SYSTEM, u, a) for u, a in PAIRS])
    code, out = preview(capsys, model, data, "--n", "2")
    assert code == 0, out
    assert "template qwen2_5" in out and "max_length 256" in out and "truncation_strategy delete" in out
    for (user, answer), n in zip(PAIRS[:2], (1, 2)):
        masked = prompt_lengths[user]
        # the prompt (system, question, markup) is masked; the answer and its end-of-turn token are trained
        assert f"── record {n} · {data}:{n} · " in out
        assert f"[-100 × {masked}]{answer}<|im_end|>" in out, out
    assert PAIRS[2][1] not in out  # --n 2
    assert out.rstrip().endswith("0 warning(s)") and "\x1b[" not in out  # piped: no colour


@pytest.mark.slow
def test_colour_on_a_terminal(capsys, model, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", [record(SYSTEM, *PAIRS[0])])
    _, out = preview(capsys, model, data, "--color", "always", "--n", "1")
    assert f"\x1b[32m{PAIRS[0][1]}<|im_end|>" in out  # trained: green
    assert "\x1b[2m<|im_start|>system↵\n" + SYSTEM in out  # masked: dim, shown as text
    assert "[-100 ×" not in out
    assert "你是谁？" in ANSI.sub("", out)


@pytest.mark.slow
def test_too_long_record_dropped_by_default_and_truncated_with_right(capsys, model, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", [record(SYSTEM, *PAIRS[0]), record(SYSTEM, "说说你的一天", LONG_ANSWER)])
    code, out = preview(capsys, model, data, "--set", "max_length=64")
    assert code == 0
    length = int(re.search(r"record 2 · \S+ · (\d+) tokens", out).group(1))
    assert length > 64
    assert f"warning: record 2: {length} tokens > max_length 64: training drops it (truncation_strategy delete" in out
    assert "DROPPED by training" in out and "1 warning(s)" in out

    _, out = preview(capsys, model, data, "--set", "max_length=64", "--set", "extra_args.truncation_strategy=right")
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert warnings[0] == f"warning: record 2: truncated at max_length 64 ({length} tokens, truncation_strategy right)"
    assert warnings[1].startswith("warning: record 2: end-of-turn token <|im_end|> is not trained (")
    assert "max_length 64 cuts" in warnings[1] and len(warnings) == 2
    assert "晚安！<|im_end|>" not in out  # the end of the answer is cut


@pytest.mark.slow
def test_a_record_without_an_answer_trains_no_end_of_turn(capsys, model, tmp_path):
    question_only = {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "只有问题"}]}
    data = write_jsonl(tmp_path / "train.jsonl", [record(SYSTEM, *PAIRS[0]), question_only])
    _, out = preview(capsys, model, data)
    assert ("warning: record 2: end-of-turn token <|im_end|> is not trained (field messages: last turn is not an "
            "assistant answer)") in out
    assert out.rstrip().endswith("1 warning(s)")


def test_one_line_errors(capsys, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", [record(SYSTEM, *PAIRS[0])])
    assert cli_main(["preview", "smoke_tiny", "--set", "model=no-such-owner/no-such-model-xyz",
                     "--set", f"data.train=[{data}]"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not in the local ModelScope cache" in err and "--set model=" in err
    assert cli_main(["preview", "smoke_tiny", "--set", f"model={tmp_path / 'missing'}"]) == 1
    assert "no such folder" in capsys.readouterr().err
    assert cli_main(["preview", "actions_grpo"]) == 1
    assert "method grpo generates its answers" in capsys.readouterr().err
