"""swiftkit tiny-model: shape, ms-swift acceptance, byte-identical rebuilds."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from swiftkit.cli import main as cli_main
from swiftkit.dev import tiny


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("tiny")
    a = tiny.build_tiny_model(root / "a", tiny.TinySpec(seed=0))
    b = tiny.build_tiny_model(root / "b", tiny.TinySpec(seed=0))
    c = tiny.build_tiny_model(root / "c", tiny.TinySpec(seed=1))
    return a, b, c


def test_same_seed_is_byte_identical(built):
    a, b, _ = built
    hashes_a = tiny.file_hashes(a)
    assert "model.safetensors" in hashes_a and "tokenizer.json" in hashes_a
    assert hashes_a == tiny.file_hashes(b)
    assert (a / tiny.MARKER).read_bytes() == (b / tiny.MARKER).read_bytes()


def test_other_seed_changes_only_the_weights(built):
    a, _, c = built
    ha, hc = tiny.file_hashes(a), tiny.file_hashes(c)
    assert ha["model.safetensors"] != hc["model.safetensors"]
    assert {k: v for k, v in ha.items() if k != "model.safetensors"} == \
           {k: v for k, v in hc.items() if k != "model.safetensors"}


def test_config_and_generation_config(built):
    a, _, _ = built
    config = json.loads((a / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"]
    assert (config["hidden_size"], config["num_hidden_layers"]) == (64, 2)
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (4, 2)
    assert config["tie_word_embeddings"] is True
    assert config["vocab_size"] == 151646
    assert config["max_position_embeddings"] == 2048
    assert config.get("torch_dtype", config.get("dtype")) == "float32"
    gen = json.loads((a / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [151645, 151643]


def test_weights_load_and_parameter_count(built):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    a, _, _ = built
    model = AutoModelForCausalLM.from_pretrained(str(a))
    params = sum(p.numel() for p in model.parameters())
    assert 9.5e6 < params < 10.1e6
    tok = AutoTokenizer.from_pretrained(str(a))
    assert tok.encode("你好，我是沐雪") == [108386, 3837, 104198, 103303, 100167]
    assert tok.convert_tokens_to_ids("<|im_end|>") == 151645


def test_ms_swift_accepts_it_as_qwen2_5(built):
    from swift.llm import get_model_tokenizer, get_template

    a, _, _ = built
    _, tokenizer = get_model_tokenizer(str(a), load_model=False, model_type="qwen2_5")
    template = get_template("qwen2_5", tokenizer)
    template.set_mode("train")
    enc = template.encode({"messages": [{"role": "user", "content": "你是谁？"}, {"role": "assistant", "content": "沐雪"}]})
    assert 151645 in enc["input_ids"]


def test_existing_identical_model_is_kept_and_tampering_rebuilds(built, tmp_path):
    out = tiny.build_tiny_model(tmp_path / "m", tiny.TinySpec(seed=0))
    spec = tiny.TinySpec(seed=0)
    assert tiny.is_built(out, spec)
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    tiny.build_tiny_model(out, spec)
    assert (out / "model.safetensors").stat().st_mtime_ns == mtime  # kept
    (out / "generation_config.json").write_text("{}")
    assert not tiny.is_built(out, spec)
    tiny.build_tiny_model(out, spec)
    assert tiny.file_hashes(out) == tiny.file_hashes(built[0])


def test_cli_bad_eos_and_bad_seed(tmp_path, capsys):
    assert cli_main(["tiny-model", str(tmp_path / "bad"), "--bad-eos"]) == 0
    gen = json.loads((tmp_path / "bad" / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [151643]
    assert "built" in capsys.readouterr().out
    assert cli_main(["tiny-model", str(tmp_path / "x"), "--seed", "-1"]) == 1
    assert "--seed -1" in capsys.readouterr().err
