"""`make gpu-bench`'s script on the CPU: a tiny shape trained 2 steps writes every field the GPU run will write
(figures are not judged: nothing here is timed against anything)."""
from __future__ import annotations

import json

import pytest

from benchmarks import gpu_bench


def test_the_cpu_run_writes_the_figures_beside_the_estimate(tmp_path):
    out = tmp_path / "gpu-cpu.json"
    assert gpu_bench.main(["--device", "cpu", "--shape", "tiny", "--steps", "2", "--warmup", "1", "--seq-len", "32",
                           "--out", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert (result["card"], result["device"], result["steps"], result["seq_len"]) == ("cpu", "cpu", 2, 32)
    assert result["shape"]["params"] > 0 and result["shape"]["source"] == "benchmarks.gpu_bench.TINY_SHAPE"
    assert result["versions"]["torch"] and result["versions"]["transformers"]
    assert result["skipped"] == ["liger, liger_flash: CUDA kernels (device cpu)"]
    [base] = result["variants"]
    assert (base["name"], base["attn_implementation"], base["liger"]) == ("baseline", "sdpa", False)
    assert len(base["losses"]) == 3 and all(loss > 0 for loss in base["losses"])  # warm-up + 2 timed steps
    assert base["tokens_per_s"] > 0 and base["seconds_per_step"] > 0
    assert base["peak_memory_bytes"] is None and base["mfu"] is None  # no CUDA allocator, no bf16 peak on a CPU
    est = base["estimate"]
    assert set(est["components"]) == {"weights", "gradients", "optimizer", "activations", "logits", "framework"}
    assert est["total_bytes"] == sum(est["components"].values())
    assert est["total_without_framework_bytes"] == est["total_bytes"] - est["components"]["framework"]
    assert "fp32 weights and activations" in est["assumptions"]


@pytest.mark.parametrize("name, card", [
    ("NVIDIA H100 80GB HBM3", ("h100", 989.0)), ("NVIDIA H200", ("h200", 989.0)),
    ("NVIDIA A100-SXM4-80GB", ("a100-80g", 312.0)), ("NVIDIA A100-PCIE-40GB", ("a100-40g", 312.0)),
    ("NVIDIA A10", ("a10", 125.0)), ("NVIDIA L4", ("l4", 121.0)), ("NVIDIA GeForce RTX 4090", ("4090", 165.2)),
    ("NVIDIA B200", ("nvidia-b200", None)), ("NVIDIA A100 SXM4", ("nvidia-a100-sxm4", None)),  # not an A10
])
def test_a_cuda_device_name_finds_its_card(name, card):
    assert gpu_bench.card_from_name(name) == card


def test_the_fast_path_variants_follow_what_imports(monkeypatch):
    monkeypatch.setattr(gpu_bench, "_importable", lambda name: name == "liger_kernel")
    assert gpu_bench.variants_for("cuda", "auto") == (["baseline", "liger"], ["liger_flash: flash_attn does not import"])
    monkeypatch.setattr(gpu_bench, "_importable", lambda name: False)
    run, skipped = gpu_bench.variants_for("cuda", "auto")
    assert run == ["baseline"] and "liger_kernel does not import" in skipped[0]
