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


# --- --ids: token by token, the view seed 002 built by hand ------------------------------------------------------

ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(-100|\d+)  (.*)$")
ARITHMETIC = ("2+2等于几？", "2+2等于5。")  # a deliberately wrong answer, so the trained tokens are plainly the answer's


def id_rows(out: str) -> list[tuple[int, int, int, str]]:
    rows = [ROW.match(line) for line in out.splitlines()]
    return [(int(m[1]), int(m[2]), int(m[3]), m[4]) for m in rows if m]


@pytest.mark.slow
def test_ids_view_pins_the_masking(capsys, model, tmp_path):
    """System and user tokens (and the template's markup) carry -100; every assistant token, its end-of-turn included,
    carries its own id. Ids and the masked count come from the tokenizer's own chat template, independently."""
    from transformers import AutoTokenizer

    data = write_jsonl(tmp_path / "train.jsonl", [record(SYSTEM, *ARITHMETIC)])
    code, out = preview(capsys, model, data, "--ids", "--n", "1")
    assert code == 0, out
    tok = AutoTokenizer.from_pretrained(model)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ARITHMETIC[0]}]
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True)
    full = tok.apply_chat_template([*messages, {"role": "assistant", "content": ARITHMETIC[1]}])
    rows = id_rows(out)
    assert [r[0] for r in rows] == list(range(len(rows)))
    assert [r[1] for r in rows][:len(full)] == full  # the ids training sees (ms-swift may train one more "\n")
    labels = [r[2] for r in rows]
    assert labels[:len(prompt)] == [-100] * len(prompt)
    assert labels[len(prompt):] == [r[1] for r in rows][len(prompt):]  # trained: label = the token's own id
    trained_text = "".join(r[3] for r in rows[len(prompt):])
    assert trained_text.startswith(ARITHMETIC[1] + "<|im_end|>"), trained_text
    assert ("".join(r[3] for r in rows).replace("␣", " ").replace("↵", "\n")
            == tok.decode([r[1] for r in rows], skip_special_tokens=False))
    assert f"· {len(rows)} tokens, {len(rows) - len(prompt)} trained" in out
    assert "label -100: the loss ignores it" in out and "\x1b[" not in out
    again = preview(capsys, model, data, "--ids", "--n", "1")[1]
    assert again == out  # deterministic


def test_a_token_holding_part_of_a_character_shows_its_bytes(model):
    from transformers import AutoTokenizer

    from swiftkit.evaluate.preview import token_rows, visible

    tok = AutoTokenizer.from_pretrained(model)
    text = "龘𠀀 等于\n"  # rare characters span tokens in Qwen's vocabulary
    ids = tok.encode(text)
    rows = token_rows(tok, ids, ids)
    texts = [t for _, _, t in rows]
    assert not any("\ufffd" in t for t in texts)
    split = [t for t in texts if re.fullmatch(r"(<0x[0-9A-F]{2}>)+", t)]
    assert len(split) >= 3  # 龘 and 𠀀 each span two or more tokens
    # each token is either its bytes or its text: together they are the text's UTF-8, byte for byte
    assert b"".join(bytes.fromhex("".join(re.findall(r"<0x([0-9A-F]{2})>", t))) if t in split else t.encode()
                    for t in texts) == text.encode()
    assert visible(" 等于\n\t\x07") == "␣等于↵⇥\\x07"
