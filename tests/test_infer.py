"""swiftkit infer: argument lists checked against ms-swift's own dataclasses; real `swift infer` on a tiny run."""
from __future__ import annotations

import json

import pytest

from swiftkit.cli import main as cli_main
from swiftkit.core.secrets import quote
from swiftkit.deploy import infer_args as ia
from tests.helpers import PAIRS, SYSTEM


def ms_swift_parse(dataclass_type, argv):
    """Parse ``argv`` with ms-swift's own argument parser (HfArgumentParser over its dataclass), without running
    the dataclass's __post_init__ (which would load the model). Unknown flags come back in ``remaining``."""
    from transformers import HfArgumentParser

    namespace, remaining = HfArgumentParser(dataclass_type).parse_known_args(list(argv))
    return namespace, remaining


LORA = ia.ModelSpec(model="/m/base", adapters=("/r/checkpoint-10",), model_type="qwen2_5", template="qwen2_5",
                    system="你是一个名为沐雪的可爱AI女孩子")
FULL = ia.ModelSpec(model="/r/checkpoint-10", model_type="qwen2_5", template="qwen2_5")


def test_vllm_infer_args_match_ms_swift_infer_arguments():
    from swift.llm import InferArguments

    job = ia.InferJob(spec=LORA, backend="vllm",
                      vllm=ia.VllmOptions(gpu_memory_utilization=0.85, max_model_len=4096, tensor_parallel_size=2,
                                          max_lora_rank=64),
                      val_dataset="/d/val.jsonl", result_path="/r/infer/val.jsonl")
    argv = ia.infer_args(job)
    ns, remaining = ms_swift_parse(InferArguments, argv)
    assert remaining == []
    assert ns.infer_backend == "vllm"
    assert ns.vllm_gpu_memory_utilization == 0.85 and ns.vllm_max_model_len == 4096
    assert ns.vllm_tensor_parallel_size == 2 and ns.vllm_max_lora_rank == 64
    assert ns.adapters == ["/r/checkpoint-10"] and ns.model == "/m/base"
    assert ns.val_dataset == ["/d/val.jsonl"] and ns.result_path == "/r/infer/val.jsonl"
    assert ns.temperature == 0 and ns.stream is False
    assert ns.system == LORA.system


def test_pt_infer_args_and_merge_lora():
    from swift.llm import InferArguments

    argv = ia.infer_args(ia.InferJob(spec=LORA, backend="pt", merge_lora=True,
                                     generation=ia.GenerationOptions(max_new_tokens=32, max_batch_size=4)))
    ns, remaining = ms_swift_parse(InferArguments, argv)
    assert remaining == []
    assert ns.infer_backend == "pt" and ns.max_batch_size == 4 and ns.max_new_tokens == 32
    assert ns.merge_lora is True
    assert not any(a.startswith("--vllm_") for a in argv)
    # a merged adapter is no LoRA at inference time: no max_lora_rank
    vllm = ia.infer_args(ia.InferJob(spec=LORA, backend="vllm", merge_lora=True,
                                     vllm=ia.VllmOptions(max_lora_rank=8)))
    assert "--vllm_max_lora_rank" not in vllm


def test_deploy_and_export_args_match_ms_swift():
    from swift.llm import DeployArguments, ExportArguments

    argv = ia.deploy_args(FULL, port=8123, served_model_name="tiny")
    ns, remaining = ms_swift_parse(DeployArguments, argv)
    assert remaining == []
    assert (ns.host, ns.port, ns.api_key, ns.served_model_name) == ("127.0.0.1", 8123, None, "tiny")
    assert quote(["--api_key", "sk-secret"]) == "--api_key '***'"  # the redaction still covers a secret flag

    argv = ia.export_merge_args(LORA, "/r/merged")
    ns, remaining = ms_swift_parse(ExportArguments, argv)
    assert remaining == []
    assert ns.merge_lora is True and ns.adapters == ["/r/checkpoint-10"] and ns.output_dir == "/r/merged"
    with pytest.raises(ValueError):
        ia.export_merge_args(FULL, "/x")


def test_unknown_flag_is_caught_by_the_same_check():
    from swift.llm import InferArguments

    _, remaining = ms_swift_parse(InferArguments, ["--model", "m", "--gpu_memory_utilisation", "0.9"])
    assert remaining  # so the assertions above can fail


@pytest.mark.slow
def test_infer_prompt_and_val_on_trained_run(full_run, capsys):
    run = full_run
    prompt, answer = PAIRS[2]
    assert cli_main(["infer", str(run), "--prompt", prompt, "--max-new-tokens", "48", "--backend", "pt"]) == 0
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in (run / "infer" / "prompt.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["response"] == answer
    first = rows[0]["messages"][0]
    assert (first["role"], first["content"]) == ("system", SYSTEM)
    assert answer in out

    assert cli_main(["infer", str(run), "--val", "--max-new-tokens", "48", "--backend", "pt"]) == 0
    val = run / "infer" / "val.jsonl"
    first = val.read_bytes()
    rows = [json.loads(line) for line in first.decode().splitlines()]
    assert [r["labels"] for r in rows] == [a for _, a in PAIRS[:2]]
    assert "2 answers" in capsys.readouterr().out
    assert (run / "infer" / "val.log").is_file()


@pytest.mark.skipif(__import__("swiftkit.stack.backend").stack.backend.vllm_platform() is not None,
                    reason="checks the refusal where vLLM cannot run")
def test_infer_vllm_where_it_cannot_run_fails_clearly(capsys, tmp_path):
    from swiftkit.run.checkpoint import mark_complete
    from swiftkit.run.rundir import RunInfo, write_run_info

    (tmp_path / "checkpoint-1").mkdir()
    mark_complete(tmp_path / "checkpoint-1")  # a finished save, as the worker marks it
    write_run_info(tmp_path, RunInfo(recipe="r", model="m", model_type="qwen2_5", template="qwen2_5",
                                     train_type="full", max_length=64, train_files=[]))
    assert cli_main(["infer", str(tmp_path), "--prompt", "hi", "--backend", "vllm"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("swiftkit infer: error: --backend vllm")
    assert "make install-vllm" in err or "CUDA build and no GPU is visible" in err
    assert cli_main(["infer", str(tmp_path), "--val", "--backend", "pt"]) == 1
    assert "no val files" in capsys.readouterr().err


def test_jsonl_records_may_hold_line_separators(tmp_path):
    """U+2028 / U+2029 / U+0085 are legal raw inside JSON strings (ensure_ascii=False writes them); str.splitlines()
    cut such a record in two and `infer --val` crashed."""
    from swiftkit.core.errors import SwiftkitError
    from swiftkit.core.jsonl import read_jsonl

    rows = [{"messages": [{"role": "user", "content": "第一行\u2028第二行\u2029第三段\x85"}]}, {"n": 2}]
    path = tmp_path / "val.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8")
    assert read_jsonl(path) == rows
    path.write_text('{"n": 1}\n{"n": \n', encoding="utf-8")
    with pytest.raises(SwiftkitError, match=r"val.jsonl:2: not valid JSON"):
        read_jsonl(path)


def test_interactive_infer_without_a_terminal_is_one_line(tmp_path_factory, capsys, monkeypatch):
    import io

    from swiftkit.run.rundir import RunInfo, write_run_info

    run = tmp_path_factory.mktemp("notty")
    write_run_info(run, RunInfo(recipe="r", model="m", model_type=None, template=None, train_type="full",
                                max_length=64, train_files=[]))
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert cli_main(["infer", str(run)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["swiftkit infer: error: interactive infer reads a terminal and stdin is not one: pass --prompt TEXT "
                   "(repeatable) or --val"]
