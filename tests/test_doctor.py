"""doctor and versions: the stack against the supported ranges, and which shims apply."""
from __future__ import annotations

import subprocess
import sys

from swiftkit.stack import doctor, versions


def test_in_range_and_checks(monkeypatch):
    assert versions.in_range("3.12.6", ">=3.12,<3.13")
    assert not versions.in_range("4.6.0", ">=3.12,<3.13")
    assert not versions.in_range("garbage", ">=1")
    fake = {"ms-swift": "4.6.0", "transformers": "4.56.2", "torch": "2.13.0", "trl": "0.24.0", "peft": "0.18.1",
            "deepspeed": None, "datasets": "3.6.0", "vllm": None}
    monkeypatch.setattr(versions, "installed", lambda name: fake.get(name))
    checks = {c.name: c for c in doctor.check_versions()}
    # ms-swift: doctor says what preflight does (swiftkit.stack.dialect): 4.x is accepted with its own stack (datasets
    # 4.x), 3.11 and 5.x are not
    assert checks["ms-swift"].ok and checks["ms-swift"].supported == ">=4.0,<5 (4.x dialect)"
    assert not checks["datasets"].ok and checks["datasets"].supported == ">=4.0,<4.8.5"
    fake["datasets"] = "4.4.1"
    assert {c.name: c for c in doctor.check_versions()}["datasets"].ok
    assert checks["vllm"].ok and checks["vllm"].verdict == "absent (optional)"
    assert checks["transformers"].ok
    fake["ms-swift"], fake["trl"], fake["datasets"] = "3.12.6", "0.24.0", "3.6.0"
    checks = {c.name: c for c in doctor.check_versions()}
    assert checks["ms-swift"].supported == ">=3.12,<3.13 (3.x dialect)" and checks["datasets"].ok
    fake["ms-swift"] = "5.0.1"
    assert {c.name: c for c in doctor.check_versions()}["ms-swift"].verdict == "OUTSIDE SUPPORTED RANGE"
    fake["ms-swift"], fake["trl"] = "3.11.2", "0.19.1"
    checks = {c.name: c for c in doctor.check_versions()}
    assert checks["ms-swift"].verdict == "OUTSIDE SUPPORTED RANGE"
    assert checks["trl"].verdict == "OUTSIDE SUPPORTED RANGE"  # GRPO needs trl >= 0.20


def test_stack_versions_reads_metadata():
    stack = versions.stack_versions()
    assert stack["ms-swift"] == "3.12.6" and stack["transformers"] == "4.56.2"
    assert stack["python"].startswith("3.")


def test_collect_reports_stack_and_shims():
    report = doctor.collect()
    names = {p["name"]: p for p in report["packages"]}
    assert set(names) >= {"ms-swift", "transformers", "trl", "peft", "deepspeed", "vllm", "torch"}
    assert names["ms-swift"]["installed"] == "3.12.6" and names["ms-swift"]["ok"]
    assert report["dialect"] == "3.x"
    assert [s["name"] for s in report["shims"]] == ["gelu_tanh_alias", "drop_empty_param_groups", "vllm_cpu_worker_rank",
                                                  "cpu_indexed_map_location"]
    assert isinstance(report["gpu_count"], int)


def test_doctor_cli_prints_everything():
    out = subprocess.run([sys.executable, "-m", "swiftkit.cli", "doctor"], capture_output=True, text=True, check=True)
    for word in ("python", "torch", "ms-swift", "transformers", "trl", "peft", "deepspeed", "vllm", "GPU(s)",
                 "gelu_tanh_alias"):
        assert word in out.stdout, word
