"""DeepSpeed ZeRO-3 on 2 CPU processes through the launcher, and resuming a ZeRO checkpoint at another process count
(refused in one line before anything loads)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from swiftkit.run.rundir import saved_world_size
from swiftkit.train import launch
from swiftkit.train.checks import PreflightError
from tests.helpers import PAIRS, SYSTEM, record, write_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def zero3_run(tmp_path_factory, tiny_model_dir) -> Path:
    root = tmp_path_factory.mktemp("zero3")
    write_jsonl(root / "data" / "muice" / "train.jsonl", [record(SYSTEM, u, a) for u, a in PAIRS] * 2)
    write_jsonl(root / "data" / "muice" / "val.jsonl", [])
    (root / "models").mkdir()
    (root / "models" / "tiny-qwen2").symlink_to(tiny_model_dir)
    import os

    here = os.getcwd()
    os.chdir(root)
    try:
        return launch.train("smoke_tiny", overrides=["launch.deepspeed=zero3", "max_steps=4", "save_only_model=false",
                                                     "global_batch_size=4", "per_device_batch_size=2",
                                                     "learning_rate=1e-3", "persona=false"])
    finally:
        os.chdir(here)


def test_zero3_partitions_over_two_cpu_processes(zero3_run):
    info = json.loads((zero3_run / "swiftkit_run.json").read_text())
    config = info["argv"][info["argv"].index("--deepspeed") + 1]
    assert config.endswith("zero3_cpu.json") and "train_batch_size" not in json.loads(Path(config).read_text())
    result = json.loads((zero3_run / "result.json").read_text())
    ckpt = zero3_run / result["last_model_checkpoint"]
    assert saved_world_size(ckpt) == 2  # the optimizer state is split over both processes
    tag = (ckpt / "latest").read_text().strip()
    assert sorted(p.name for p in (ckpt / tag).glob("zero_pp_rank_*_model_states.pt")) == [
        "zero_pp_rank_0_mp_rank_00_model_states.pt", "zero_pp_rank_1_mp_rank_00_model_states.pt"]  # ZeRO-3: weights too
    losses = [h["loss"] for h in result["log_history"] if "loss" in h and "train_loss" not in h]
    assert len(losses) == 4 and losses[-1] < losses[0]


def test_resume_at_another_process_count_is_refused_before_loading(zero3_run, monkeypatch):
    monkeypatch.chdir(zero3_run.parents[2])
    with pytest.raises(PreflightError) as refused:
        launch.train("smoke_tiny", gpus=1, resume=str(zero3_run), dry_run=True,
                     overrides=["launch.deepspeed=zero3", "save_only_model=false", "global_batch_size=4",
                                "per_device_batch_size=2", "persona=false"])
    lines = [p for p in refused.value.problems if p.startswith("resume:")]
    assert len(lines) == 1 and "saved by 2 DeepSpeed process(es) and this plan runs 1" in lines[0]
    # the same process count passes that check
    prepared = launch.prepare("smoke_tiny", gpus=2, resume=str(zero3_run),
                              overrides=["launch.deepspeed=zero3", "save_only_model=false", "global_batch_size=4",
                                         "per_device_batch_size=2", "persona=false"])
    assert [c.ok for c in prepared.preflight.checks if c.name == "resume"] == [True]


def test_saved_world_size_reads_file_names_only(tmp_path):
    ckpt = tmp_path / "checkpoint-4"
    (ckpt / "global_step4").mkdir(parents=True)
    (ckpt / "latest").write_text("global_step4")
    assert saved_world_size(ckpt) is None
    for rank in range(3):
        (ckpt / "global_step4" / f"bf16_zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").write_bytes(b"")
    assert saved_world_size(ckpt) == 3
    assert saved_world_size(tmp_path / "nothing") is None
