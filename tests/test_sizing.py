"""The memory and time estimate (swiftkit/train/sizing.py): anchored to published measurements, its model states
checked against DeepSpeed's own estimators, surfaced by `swiftkit plan` and enforced by train preflight."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swiftkit.core.errors import SwiftkitError
from swiftkit.train.plan import Cluster
from swiftkit.train.preflight import memory_check
from swiftkit.train.recipes import load_recipe
from swiftkit.train.sizing import (
    BUNDLED_SHAPES,
    GIB,
    ModelShape,
    Setup,
    data_stats,
    estimate,
    find_shape,
    gpu,
    model_states,
    setup_for,
    shape_from_config,
    size_recipe,
    timing,
)

GB = 10 ** 9

# Shapes from the models' published config.json files (hidden, layers, heads, kv heads, intermediate, vocab, tied).
QWEN_1_8B = ModelShape(2048, 24, 16, 16, 5504, 151936, False, qkv_bias=True)  # Qwen-1.8B: MLP w1/w2 of 11008/2
QWEN25_7B = ModelShape(3584, 28, 28, 4, 18944, 152064, False, qkv_bias=True)
LLAMA31_8B = ModelShape(4096, 32, 32, 8, 14336, 128256, False)
QWEN3_8B = BUNDLED_SHAPES["Qwen/Qwen3-8B"]
TORCHTUNE_TARGETS = ("q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # torchtune's lora configs

# (anchor, published per-GPU figure in bytes, the setup as published). ms-swift's default lora_dropout is 0.05 and its
# default gradient checkpointing is on; torch_dtype bfloat16 everywhere.
ANCHORS = [
    # QwenLM/Qwen README, one A100, batch 1: 43.5 GB at 256 tokens (43.5-44.x up to 2048). Qwen's finetune_ds.sh runs
    # DeepSpeed with ds_config_zero2.json even on one GPU: no partitioning, but fp32 master weights, fp32 gradients and
    # fp32 Adam states (2P + 18P), not plain bf16's 8 bytes per parameter.
    ("Qwen-1.8B full, 1 GPU, 256 tokens", 43.5 * GB, Setup(QWEN_1_8B, "full", 256, zero="zero2")),
    ("Qwen-1.8B full, 1 GPU, 2048 tokens", 43.5 * GB, Setup(QWEN_1_8B, "full", 2048, zero="zero2")),
    # ms-swift examples/train/lora_sft.sh: "# 22GB"
    ("Qwen2.5-7B LoRA r8, 1 GPU, 2048", 22 * GB, Setup(QWEN25_7B, "lora", 2048, lora_dropout=0.05)),
    # ms-swift examples/train/multi-gpu/deepspeed: "# 18GiB * 2", "# 16GiB * 2" (estimated at 2048 tokens: the
    # worst case the zero3 script allows; its self-cognition samples are shorter)
    ("Qwen2.5-7B LoRA, 2 GPUs ZeRO-2", 18 * GIB, Setup(QWEN25_7B, "lora", 2048, world=2, zero="zero2",
                                                      lora_dropout=0.05)),
    ("Qwen2.5-7B LoRA, 2 GPUs ZeRO-3", 16 * GIB, Setup(QWEN25_7B, "lora", 2048, world=2, zero="zero3",
                                                      lora_dropout=0.05)),
    # ms-swift examples/train/tuners/lora/train.sh: "# 17.2GiB", one GPU without DeepSpeed (the path plain DDP takes,
    # less the wrapper); self-cognition samples, estimated at 2048 tokens as above.
    ("Qwen2.5-7B LoRA r8, 1 GPU, no DeepSpeed", 17.2 * GIB, Setup(QWEN25_7B, "lora", 2048, lora_dropout=0.05)),
    # ms-swift's QLoRA example: "# 10GB"
    ("Qwen2.5-7B QLoRA 4-bit, 1 GPU, 2048", 10 * GB, Setup(QWEN25_7B, "qlora", 2048, lora_dropout=0.05)),
    # ms-swift Qwen3 best practice: LoRA r8, 2048: 22 GB
    ("Qwen3-8B LoRA r8, 1 GPU, 2048", 22 * GB, Setup(QWEN3_8B, "lora", 2048, lora_dropout=0.05)),
    # torchtune README, batch 2 packed 2048, activation checkpointing. torchtune's compiled chunked cross entropy never
    # holds the full-vocabulary fp32 logits: the estimate's fused-loss term, as with Liger.
    ("Llama-3.1-8B LoRA, batch 2 x 2048", 16.2 * GIB, Setup(LLAMA31_8B, "lora", 2048, micro_batch=2,
                                                           lora_targets=TORCHTUNE_TARGETS, loss="fused")),
    ("Llama-3.1-8B QLoRA, batch 2 x 2048", 7.4 * GIB, Setup(LLAMA31_8B, "qlora", 2048, micro_batch=2,
                                                           lora_targets=TORCHTUNE_TARGETS, loss="fused")),
]


def test_published_parameter_counts():
    """The shapes give the parameter counts the model cards state (to 0.5%)."""
    for shape, published in ((QWEN_1_8B, 1.84e9), (QWEN25_7B, 7.62e9), (LLAMA31_8B, 8.03e9), (QWEN3_8B, 8.19e9),
                             (BUNDLED_SHAPES["Qwen/Qwen2-1.5B-Instruct"], 1.54e9)):
        assert shape.params() == pytest.approx(published, rel=0.005)


@pytest.mark.parametrize("name,published,setup", ANCHORS, ids=[a[0] for a in ANCHORS])
def test_estimate_reproduces_published_measurements(name, published, setup):
    ratio = estimate(setup).total / published
    assert 0.75 <= ratio <= 1.25, f"{name}: estimate {estimate(setup).total / GIB:.2f} GiB, ratio {ratio:.2f}"


def test_plain_ddp_adds_its_gradient_buckets():
    """Not an anchor: ms-swift's examples/train/multi-gpu/ddp/train.sh says "# 27.5GiB * 2" for the ZeRO-2 example's
    job (18 GiB), but that header and its escaped `"{\"use_reentrant\": false}"` were written in one commit
    (b40f31df7, ms-swift 3.0's refactor) with examples/train/sequence_parallel/train.sh, which carries both and whose
    job they fit (LongAlpaca-12k, --max_length 10000, 2-way sequence parallel); no commit since re-measured it.
    What plain DDP does add is the reducer's buckets: a second copy of the trained parameters' gradients."""
    single = Setup(QWEN25_7B, "lora", 2048, lora_dropout=0.05)
    ddp = Setup(QWEN25_7B, "lora", 2048, world=2, lora_dropout=0.05)
    buckets = 4 * QWEN25_7B.lora_params(8, ddp.lora_targets)  # fp32 adapters
    assert estimate(ddp).total - estimate(single).total == pytest.approx(buckets)
    full = Setup(QWEN_1_8B, "full", 2048)
    assert (estimate(Setup(QWEN_1_8B, "full", 2048, world=8)).total - estimate(full).total
            == pytest.approx(2 * QWEN_1_8B.params()))  # bf16 gradients, once more


# ---- model states against DeepSpeed's own estimators ------------------------------------------------------------

def _ds_estimators():
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import (
        estimate_zero2_model_states_mem_needs,
    )

    return estimate_zero2_model_states_mem_needs, estimate_zero3_model_states_mem_needs


def _states(setup: Setup) -> float:
    weights, grads, optim, _ = model_states(setup)
    return weights + grads + optim


@pytest.fixture(scope="module")
def tiny_shape_and_counts(tiny_model_dir):
    """The tiny model's shape from its config.json, and its real parameter counts (total and largest module)."""
    import torch
    from transformers import AutoModelForCausalLM

    shape = shape_from_config(json.loads((Path(tiny_model_dir) / "config.json").read_text()))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, torch_dtype=torch.float32)
    total = sum({p.data_ptr(): p.numel() for p in model.parameters()}.values())  # deepspeed's model_to_params
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    return shape, total, largest


def test_tiny_model_shape_counts_its_real_parameters(tiny_shape_and_counts):
    shape, total, largest = tiny_shape_and_counts
    assert shape.params() == total
    assert shape.largest_layer() == largest


@pytest.mark.parametrize("gpus", [1, 2, 8])
def test_model_states_are_deepspeeds_own(tiny_shape_and_counts, gpus):
    zero2, zero3 = _ds_estimators()
    shape, total, largest = tiny_shape_and_counts
    for s in (shape, QWEN25_7B):
        params, biggest = (total, largest) if s is shape else (s.params(), s.largest_layer())
        _, ds2 = zero2(params, num_gpus_per_node=gpus, cpu_offload=False)
        _, ds3, _ = zero3(params, biggest, num_gpus_per_node=gpus, cpu_offload=False)
        assert _states(Setup(s, "full", 512, world=gpus, zero="zero2")) == pytest.approx(ds2, abs=2)
        assert _states(Setup(s, "full", 512, world=gpus, zero="zero3")) == pytest.approx(ds3, abs=2)
        _, ds2_off = zero2(params, num_gpus_per_node=gpus, cpu_offload=True)
        _, ds3_off, _ = zero3(params, biggest, num_gpus_per_node=gpus, cpu_offload=True, cpu_offload_params=True)
        assert _states(Setup(s, "full", 512, world=gpus, zero="zero2_offload")) == pytest.approx(ds2_off, abs=2)
        assert _states(Setup(s, "full", 512, world=gpus, zero="zero3_offload")) == pytest.approx(ds3_off, abs=2)


def test_plain_bf16_full_is_8_bytes_per_parameter_and_lora_freezes_the_base():
    s = QWEN25_7B
    assert _states(Setup(s, "full", 512)) == 8 * s.params()
    lora = s.lora_params(8, ("all-linear",))
    assert _states(Setup(s, "lora", 512)) == 2 * s.params() + 16 * lora  # peft's adapters and their states: fp32
    assert _states(Setup(s, "qlora", 512)) < 0.4 * _states(Setup(s, "lora", 512))


def test_checkpointing_liger_and_length_move_the_right_terms():
    base = Setup(QWEN25_7B, "full", 4096, world=8, zero="zero2")
    plain = estimate(base)
    assert estimate(Setup(**{**base.__dict__, "gradient_checkpointing": False})).part("activations") > \
        10 * plain.part("activations")
    fused = estimate(Setup(**{**base.__dict__, "loss": "fused"}))
    assert plain.part("logits") == 4096 * 152064 * 12 and fused.part("logits") < plain.part("logits") / 20
    assert fused.part("weights") == plain.part("weights")
    half = estimate(Setup(**{**base.__dict__, "seq_len": 2048}))
    assert half.part("logits") * 2 == plain.part("logits")


# ---- shapes, cards and data ---------------------------------------------------------------------------------------

def test_config_fields_and_errors():
    cfg = {"model_type": "qwen2", "hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
           "num_key_value_heads": 4, "intermediate_size": 18944, "vocab_size": 152064, "tie_word_embeddings": False}
    assert shape_from_config(cfg) == QWEN25_7B
    assert shape_from_config({"text_config": cfg}) == QWEN25_7B
    with pytest.raises(SwiftkitError, match=r"^m/config.json: vocab_size: expected a positive integer, got None$"):
        shape_from_config({k: v for k, v in cfg.items() if k != "vocab_size"}, "m/config.json")
    with pytest.raises(SwiftkitError, match="mixture-of-experts"):
        shape_from_config({**cfg, "num_experts": 64})
    with pytest.raises(SwiftkitError, match=r"--gpu-type B200: unknown; choose one of 3090, 4090"):
        gpu("B200")
    assert gpu("rtx 4090").name == "4090" and gpu("h100").memory_gib == 79.6


def test_shape_sources_local_hub_cache_bundled_none(tmp_path, monkeypatch):
    cfg = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
           "vocab_size": 1000}
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    assert find_shape(str(tmp_path / "m")) == (shape_from_config(cfg), str(tmp_path / "m" / "config.json"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    monkeypatch.delenv("USE_HF", raising=False)
    cached = tmp_path / "ms" / "models" / "Org" / "M-1___5B"
    cached.mkdir(parents=True)
    (cached / "config.json").write_text(json.dumps(cfg))
    assert find_shape("Org/M-1.5B")[1] == str(cached / "config.json")
    monkeypatch.setenv("USE_HF", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    snap = tmp_path / "hf" / "models--Org--M-1.5B" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "hf" / "models--Org--M-1.5B" / "refs").mkdir()
    (tmp_path / "hf" / "models--Org--M-1.5B" / "refs" / "main").write_text("abc")
    assert find_shape("Org/M-1.5B")[1] == str(snap / "config.json")
    shape, source = find_shape("Qwen/Qwen3-8B")  # not cached here: the bundled table, said so
    assert shape == QWEN3_8B and source.startswith("swiftkit's bundled shape of Qwen/Qwen3-8B")
    assert find_shape("Org/Unknown") == (None, "Org/Unknown: no config.json here (not a local folder, not in the hub "
                                               "cache, not a shipped recipe's model): memory not estimated")


def test_time_from_the_manifest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "muice").mkdir(parents=True)
    recipe = load_recipe("muice_full")
    assert data_stats(recipe)[0] is None and "run `make prep`" in data_stats(recipe)[1]
    manifest = {"train": 1000, "val": 10, "token_lengths": {"records": 1010, "median": 500, "max": 9000}}
    (tmp_path / "data" / "muice" / "manifest.json").write_text(json.dumps(manifest))
    stats, _ = data_stats(recipe)
    assert (stats.records, stats.tokens_per_sample) == (1000, 500)
    t = timing(recipe, BUNDLED_SHAPES[recipe.model], stats, 8, gpu("5090"), mfu=0.5)
    assert (t["steps_per_epoch"], t["tokens_per_step"], t["steps"]) == (125, 8 * 500, 125 * 5)
    flops = 6 * BUNDLED_SHAPES[recipe.model].params() * 1000 * 500
    assert t["seconds_per_epoch"] == pytest.approx(flops / (8 * 209.5e12 * 0.5), abs=0.1)


# ---- verdicts, the plan command, preflight -------------------------------------------------------------------------

def test_verdicts_and_the_nearest_fix():
    fits = size_recipe(load_recipe("muice_full"), 8, gpu_type="5090")
    assert fits.verdict == "fits" and fits.fixes == []
    full_8b = load_recipe("muice_full", ["model=Qwen/Qwen3-8B", "launch.deepspeed=zero2"])
    big = size_recipe(full_8b, 2, gpu_type="4090")
    assert big.verdict == "does not fit"  # full 8B on 2 x 24 GiB: ZeRO-3, Liger or a shorter max_length are not enough
    assert big.fixes[0].startswith("--set train_type=lora --set lora.qlora=true (~")
    on_8 = size_recipe(full_8b, 8, gpu_type="H100")
    assert on_8.verdict == "fits"
    lines = "\n".join(big.lines())
    assert "verdict on 4090 (24 GiB): does not fit; nearest fix: " in lines


def _plan_json(*args: str, cwd: Path) -> dict:
    code = ("import sys, json\nfrom swiftkit.cli import main\nrc = main(sys.argv[1:])\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'swift', 'transformers', "
            "'deepspeed', 'modelscope'))\nprint(json.dumps({'rc': rc, 'heavy': heavy}))\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "MODELSCOPE_CACHE": str(cwd / "ms"),
           "HF_HUB_CACHE": str(cwd / "hf")}
    out = subprocess.run([sys.executable, "-c", code, "plan", *args, "--json", "--runs-root", str(cwd / "runs")],
                         capture_output=True, text=True, env=env, check=True, cwd=cwd).stdout
    *body, last = out.strip().splitlines()
    assert json.loads(last) == {"rc": 0, "heavy": []}
    return json.loads("\n".join(body))


def test_plan_json_carries_the_sizing_deterministically_without_heavy_imports(tmp_path):
    first = _plan_json("muice_full", "--gpus", "8", "--gpu-type", "5090", cwd=tmp_path)
    assert first == _plan_json("muice_full", "--gpus", "8", "--gpu-type", "5090", cwd=tmp_path)
    sizing = first["sizing"]
    assert sizing["verdict"] == "fits" and sizing["gpu"]["name"] == "5090" and sizing["processes"] == 8
    assert set(sizing["per_gpu_gib"]) == {"weights", "gradients", "optimizer", "activations", "logits", "framework",
                                          "total"}
    assert sizing["shape_source"].startswith("swiftkit's bundled shape")


def test_preflight_refuses_a_plan_that_cannot_fit_in_one_line():
    recipe = load_recipe("fortune_lora", ["lora.qlora=false"])  # bf16 LoRA of an 8B model: ~21 GiB
    check = memory_check(recipe, Cluster(1), [16 * GIB])  # a faked 16 GiB card
    assert not check.ok and "\n" not in check.message
    assert check.message.startswith("~")
    assert "GiB per GPU estimated, 16.0 GiB on the smallest visible GPU: does not fit; try " in check.message
    assert check.message.endswith(", or --set launch.memory_check=false to train anyway")
    assert memory_check(recipe, Cluster(1), [80 * GIB]).ok  # an 80 GB card
    assert not memory_check(recipe, Cluster(2), [80 * GIB, 16 * GIB]).ok  # judged on the smallest card it uses
    assert memory_check(recipe, Cluster(1), [80 * GIB, 16 * GIB]).ok  # the second card is not used
    override = load_recipe("fortune_lora", ["lora.qlora=false", "launch.memory_check=false"])
    forced = memory_check(override, Cluster(1), [16 * GIB])
    assert forced.ok and "training anyway (launch.memory_check false)" in forced.message
    assert memory_check(recipe, Cluster(1), []).message == "not estimated: no GPU memory visible"


# ---- GRPO: the colocated rollout engine beside the trainer ----------------------------------------------------------

def _grpo(recipe: str, *sets: str, gpu_type: str = "A100-80G"):
    return size_recipe(load_recipe(recipe, list(sets)), 1, gpu_type=gpu_type)


def test_grpo_counts_the_engine_in_both_phases():
    """The training step holds vLLM's whole share only without sleep mode; the generation phase holds the share and
    what the trainer keeps (weights, optimizer, framework: not the gradients), less what is offloaded."""
    card = 80 * GIB
    awake = _grpo("actions_grpo", "grpo.rollout.sleep_level=0").estimate
    asleep = _grpo("actions_grpo").estimate  # sleep_level 1
    share = 0.4 * card
    assert awake.part("rollout") == pytest.approx(share, abs=1) and asleep.part("rollout") == 0
    assert awake.total - asleep.total == pytest.approx(share, abs=1)
    kept = asleep.part("weights") + asleep.part("optimizer") + asleep.part("framework")
    assert asleep.rollout[0] == pytest.approx(share + kept, abs=2)
    assert asleep.peak == asleep.rollout[0] > asleep.total  # LoRA: generation is the peak here
    offloaded = _grpo("actions_grpo", "grpo.rollout.offload_model=true", "grpo.rollout.offload_optimizer=true")
    assert offloaded.estimate.rollout[0] == pytest.approx(share + asleep.part("framework"), abs=2)
    assert "(weights and optimizer offloaded to CPU)" in offloaded.estimate.rollout[1]
    # full GRPO with a KL term loads the starting weights again as the reference; beta 0 does not
    full = _grpo("medical_r1_grpo").estimate
    assert full.part("reference") == full.part("weights") > 0
    assert _grpo("medical_r1_grpo", "grpo.beta=0").estimate.part("reference") == 0


def test_grpo_verdict_uses_the_peak_and_names_a_share_too_small_for_the_engine():
    small = _grpo("actions_grpo", gpu_type="4090")  # 8B: bf16 engine weights ~15 GiB in a 0.4 x 24 GiB share
    assert small.verdict == "does not fit"
    assert "set grpo.rollout.gpu_memory_utilization to 0.7 or more" in small.estimate.rollout[1]
    lines = "\n".join(small.lines())
    assert "#   generation " in lines and "#   peak " in lines and "(the training step)" in lines
    assert "time: not estimated for GRPO" in lines
    roomy = _grpo("medical_r1_grpo")
    assert roomy.verdict == "fits" and roomy.to_json()["per_gpu_gib"]["peak"] == round(roomy.estimate.peak / GIB, 2)
    # no card: the engine's share is unknown and said so; no verdict
    unnamed = size_recipe(load_recipe("actions_grpo"), 1)
    assert unnamed.verdict is None and unnamed.estimate.rollout is None
    assert any("gpu_memory_utilization 0.4 of the card" in a for a in unnamed.estimate.assumptions)


def test_grpo_preflight_refuses_when_generation_does_not_fit():
    recipe = load_recipe("actions_grpo")
    setup = setup_for(recipe, 1, find_shape(recipe.model, recipe.hub)[0])
    assert estimate(setup).total < 32 * GIB  # the training step alone would fit a 32 GiB card
    check = memory_check(recipe, Cluster(1), [32 * GIB])  # generation: the engine's ~16.5 GiB + the trainer's ~16.2
    assert not check.ok and "\n" not in check.message, check.message
    assert check.message.startswith("~32.6 GiB per GPU estimated, 32.0 GiB on the smallest visible GPU: does not fit; "
                                    "try --set grpo.rollout.offload_model=true (~24.5 GiB)")
    assert memory_check(recipe, Cluster(1), [80 * GIB]).ok
