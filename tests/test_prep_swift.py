"""ms-swift 3.12.6 reads the prepared data without dropping a row: its own dataset loader, then the qwen2_5
template's encode with the offline Qwen tokenizer (no model weights: a config.json beside the tokenizer is
enough for ``get_model_tokenizer(load_model=False)``). Loaded the GRPO way (extra columns kept), the ``score``
and ``solution`` columns come through as written."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from datasets_prep.pipeline import prep
from datasets_prep.token_counter import render_chatml as render

SAMPLES = Path(__file__).resolve().parents[1] / "datasets_prep" / "samples"


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    from transformers import Qwen2Config

    from datasets_prep.qwen_tokenizer import cached_tokenizer_dir

    model_dir = tmp_path_factory.mktemp("tok") / "qwen"
    shutil.copytree(cached_tokenizer_dir(), model_dir)
    Qwen2Config(vocab_size=151646, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, tie_word_embeddings=True, max_position_embeddings=2048).save_pretrained(model_dir)
    from swift.llm import get_model_tokenizer, get_template

    _, processor = get_model_tokenizer(str(model_dir), load_model=False, model_type="qwen2_5")
    tpl = get_template("qwen2_5", processor, max_length=4096)
    tpl.set_mode("train")
    return tpl


@pytest.mark.slow
@pytest.mark.parametrize("source", ["muice", "fortune", "medical_r1", "actions", "general"])
def test_ms_swift_loads_and_encodes_every_row(tmp_path, template, source):
    from swift.llm import load_dataset
    from swift.llm.dataset.utils import EncodePreprocessor

    out = tmp_path / source
    manifest = prep(source, SAMPLES / source, out)
    for split in ("train", "val"):
        path = out / f"{split}.jsonl"
        records = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
        assert len(records) == manifest[split] > 0
        dataset, _ = load_dataset([str(path)], split_dataset_ratio=0.0, strict=False, load_from_cache_file=False)
        assert len(dataset) == len(records)  # ms-swift dropped nothing
        encoded = EncodePreprocessor(template)(dataset, num_proc=1, load_from_cache_file=False, strict=True)
        assert len(encoded) == len(records)
        tok = template.tokenizer
        for rec, row in zip(records, encoded):
            ids, labels = row["input_ids"], row["labels"]
            # our system prompt is the one encoded, not the template's "You are Qwen" default
            assert rec["messages"][0]["content"] in tok.decode(ids) and "You are Qwen" not in tok.decode(ids)
            # every assistant message is trained on: its tokens appear in the labels, the prompt is masked
            trained = tok.decode([t for t in labels if t != -100])
            for msg in rec["messages"]:
                if msg["role"] == "assistant":
                    assert msg["content"] in trained
            assert rec["messages"][1]["content"] not in trained or rec["messages"][1]["content"] in rec["messages"][2]["content"]
            # the manifest's token counts are the template's own lengths
            assert len(ids) == len(tok(render(rec["messages"]), add_special_tokens=False)["input_ids"])
        # GRPO loads with remove_unused_columns=False: score and solution reach the reward functions as columns,
        # and rows carrying them still encode (SFT above drops them at load time)
        grpo, _ = load_dataset([str(path)], split_dataset_ratio=0.0, strict=False, load_from_cache_file=False,
                               remove_unused_columns=False)
        assert set(grpo.column_names) >= {"messages", "score", "solution"}
        assert grpo["solution"] == [r["messages"][-1]["content"] for r in records]
        assert grpo["score"] == [r["score"] for r in records]
        assert len(EncodePreprocessor(template)(grpo, num_proc=1, load_from_cache_file=False, strict=True)) == len(records)
    stats = manifest["token_lengths"]
    assert stats["max"] == max(len(tok(render(r["messages"]))["input_ids"]) for s in ("train", "val")
                               for r in map(json.loads, (out / f"{s}.jsonl").read_text(encoding="utf-8").splitlines()))
