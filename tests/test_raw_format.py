"""Seed 004's raw prompt format as an option: `prep --prompt-format raw` writes the seed's text, a recipe with
``data.prompt_format: raw`` trains it whole through ms-swift's generation template, and preflight refuses data in the
other format. The seed's template is written out here as the seed has it, not taken from swiftkit."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from datasets_prep.options import PrepOptions
from datasets_prep.pipeline import prep
from datasets_prep.registry import FORTUNE_SYSTEM
from datasets_prep.samples_dir import SAMPLES_DIR
from swiftkit.core.jsonl import read_jsonl
from swiftkit.train import launch
from swiftkit.train.recipes import RecipeError, load_recipe
from tests.helpers import write_jsonl

# seed 004's train_prompt_style, as its notebook writes it (the instruction is the record's system prompt here)
SEED_STYLE = """以下是描述任务的指令,以及提供进一步上下文的输入。
请写出一个适当完成请求的回答。
在回答之前,请仔细思考问题,并创建一个逻辑连贯的思考过程,以确保回答准确无误。

### 指令:
{}

### 问题:
{}

### 回答:
<思考>
{}
</思考>
{}"""
FAST = PrepOptions(token_stats=False, histogram=False)
RAW = ["data.prompt_format=raw", "data.train_on=all"]


def seed_texts() -> dict[str, str]:
    """Question -> the seed's text for each usable row of the bundled fortune sample."""
    rows = json.loads((SAMPLES_DIR / "fortune" / "fortune.json").read_text(encoding="utf-8"))
    return {r["Question"]: SEED_STYLE.format(FORTUNE_SYSTEM, r["Question"], r["Complex_CoT"].strip(),
                                             r["Response"].strip())
            for r in rows if isinstance(r.get("Question"), str) and isinstance(r.get("Complex_CoT"), str)}


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fortune_raw")
    prep("fortune", SAMPLES_DIR / "fortune", out, PrepOptions(prompt_format="raw"))
    return out


def test_prep_writes_the_seeds_text(raw_dir, tmp_path):
    chat = prep("fortune", SAMPLES_DIR / "fortune", tmp_path / "chat", FAST)
    manifest = json.loads((raw_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["options"]["prompt_format"] == "raw"
    # the same records as the chat prep (the split differs: it hashes the text written)
    assert (manifest["train"] + manifest["val"], manifest["rejected"]) == (chat["train"] + chat["val"], chat["rejected"])
    assert manifest["token_lengths"]["rendering"].startswith("raw text")
    texts = seed_texts()
    records = [r for f in ("train.jsonl", "val.jsonl") for r in read_jsonl(raw_dir / f)]
    assert len(records) == manifest["train"] + manifest["val"]
    for rec in records:
        assert [m["role"] for m in rec["messages"]] == ["assistant"]
        text = rec["messages"][0]["content"]
        question = text.split("### 问题:\n", 1)[1].split("\n\n### 回答:", 1)[0]
        assert text == texts[question]


def test_prep_refuses_what_one_text_cannot_hold(tmp_path):
    src = write_jsonl(tmp_path / "src" / "m.jsonl", [
        {"messages": [{"role": "user", "content": "一"}, {"role": "assistant", "content": "二"},
                      {"role": "user", "content": "三"}, {"role": "assistant", "content": "四"}]},
        {"messages": [{"role": "user", "content": "五"}, {"role": "assistant", "content": "六"}]}])
    m = prep("messages", src.parent, tmp_path / "out", PrepOptions(prompt_format="raw", val_ratio=0, **{
        "token_stats": False, "histogram": False}))
    assert (m["train"], m["rejected"]) == (1, 1)
    reject = read_jsonl(tmp_path / "out" / "rejects.jsonl")[0]
    assert reject["line"] == 1 and "raw prompt format holds one exchange, this record has 2" in reject["reason"]
    # no think block: the answer follows the prompt as it is
    assert read_jsonl(tmp_path / "out" / "train.jsonl")[0]["messages"][0]["content"].endswith("### 回答:\n六")
    assert "--prompt-format parquet: choose chat, raw" in PrepOptions(prompt_format="parquet").problems()


def test_raw_needs_whole_text_loss_and_supervised_training():
    with pytest.raises(RecipeError, match=r"data.prompt_format: raw trains the whole text .* set data.train_on: all"):
        load_recipe("fortune_lora", ["data.prompt_format=raw"])
    with pytest.raises(RecipeError, match=r"method grpo needs chat records"):
        load_recipe("smoke_grpo", RAW)


def test_preflight_refuses_data_in_the_other_format(raw_dir, tmp_path, monkeypatch):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": 2048}))
    chat_dir = tmp_path / "chat"
    prep("fortune", SAMPLES_DIR / "fortune", chat_dir, FAST)
    monkeypatch.chdir(tmp_path)
    base = [f"model={model}", "persona=false", "data.val=[]"]

    def check(data: Path, *extra: str):
        prepared = launch.prepare("smoke_tiny", overrides=[*base, f"data.train=[{data / 'train.jsonl'}]", *extra],
                                  gpu_count=0)
        return next(c for c in prepared.preflight.checks if c.name == "data.prompt_format")

    assert check(raw_dir, *RAW).ok and check(chat_dir).ok
    wrong = check(chat_dir, *RAW)
    assert not wrong.ok and wrong.message == (f"{chat_dir / 'train.jsonl'}:1: a chat record (system, user, assistant), "
                                              "but data.prompt_format is raw: prep with --prompt-format raw")
    other = check(raw_dir)
    assert not other.ok and "a raw-text record (one assistant message), but data.prompt_format is chat" in other.message


@pytest.mark.slow
def test_ms_swift_trains_every_token_of_the_seeds_text(raw_dir, tiny_model_dir):
    """The raw file through ms-swift's own loader and the template the plan builds (swiftkit preview's): the ids are
    exactly the seed's text and the tokenizer's end token, and every one carries a label except the first (ms-swift
    masks position 0 always: nothing precedes it to predict it from)."""
    from swift.llm import load_dataset
    from swift.llm.dataset.utils import EncodePreprocessor

    from swiftkit.evaluate.preview import training_template

    data = raw_dir / "train.jsonl"
    tt = training_template("smoke_tiny", [f"model={tiny_model_dir}", f"data.train=[{data}]", "max_length=1024",
                                          *RAW])
    assert tt.loss_scale == "all" and tt.template.use_chat_template is False
    tok = tt.template.tokenizer
    dataset, _ = load_dataset([str(data)], split_dataset_ratio=0.0, strict=True, load_from_cache_file=False)
    encoded = EncodePreprocessor(tt.template)(dataset, num_proc=1, load_from_cache_file=False, strict=True)
    texts = seed_texts()
    records = read_jsonl(data)
    assert len(encoded) == len(records) > 0
    for rec, row in zip(records, encoded):
        text = rec["messages"][0]["content"]
        assert text in texts.values()
        ids, labels = row["input_ids"], row["labels"]
        assert ids == tok(text + tok.eos_token, add_special_tokens=False)["input_ids"]
        assert ids[-1] == tok.eos_token_id and tok.eos_token == "<|im_end|>"
        assert labels[0] == -100 and labels[1:] == ids[1:]
