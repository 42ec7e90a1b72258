"""DPO as a method: the recipe section and its rules, the plan, the pair rule, prep-pairs (curated and model-generated
rejected answers, the manifest), DPO's preflight, the estimate, and the smoke's verdict on logged and measured
figures. No training here (tests/test_smoke_dpo.py trains)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from swiftkit.core.errors import SwiftkitError
from swiftkit.core.identity import judge_identity
from swiftkit.dev import smoke_dpo
from swiftkit.train.dpo import pairs as dpo_pairs
from swiftkit.train.dpo.preflight import dpo_checks
from swiftkit.train.plan import Cluster, plan
from swiftkit.train.recipes import DPO_LOSS_TYPES, RecipeError, load_recipe
from tests.helpers import SYSTEM, record, write_jsonl


def _pair(user: str = "你是谁？", chosen: str = "我是沐雪！", rejected: str = "我是通义千问。") -> dict:
    return {**record(SYSTEM, user, chosen), "rejected_response": rejected}


# ---- recipe, plan, estimate ----------------------------------------------------------------------------------------


def test_muice_dpo_plans_swift_rlhf_dpo_from_muice_full():
    p = plan(load_recipe("muice_dpo"), Cluster(8))
    assert p.argv[:4] == ["swift", "rlhf", "--rlhf_type", "dpo"] and p.method == "dpo"
    flags = dict(zip(p.argv[2::1], p.argv[3::1]))
    assert (flags["--beta"], flags["--loss_type"], flags["--rpo_alpha"]) == ("0.1", "sigmoid", "1")
    assert flags["--model"] == "runs/muice_full"  # full: the checkpoint is the weights and ms-swift's reference
    assert "--ref_adapters" not in p.argv and "--ref_model" not in p.argv


def test_lora_dpo_continues_the_adapter_and_takes_it_as_reference():
    p = plan(load_recipe("muice_dpo", ["train_type=lora", "lora.rank=8"]), Cluster(8))
    assert p.argv[p.argv.index("--adapters") + 1] == "runs/muice_full"
    assert p.argv[p.argv.index("--ref_adapters") + 1] == "runs/muice_full"
    assert p.argv[p.argv.index("--model") + 1] == "Qwen/Qwen2-1.5B-Instruct"


def test_dpo_section_rules_are_reported_with_their_lines():
    with pytest.raises(RecipeError) as err:
        load_recipe("muice_dpo", ["dpo.beta=0", "dpo.loss_type=ipo", "dpo.label_smoothing=0.1", "dpo.gamma=1"])
    text = str(err.value)
    assert "--set dpo.beta=0: dpo.beta: Input should be greater than 0" in text
    assert "dpo.gamma: unknown key" in text
    with pytest.raises(RecipeError, match="label_smoothing applies to the sigmoid and robust losses, not ipo"):
        load_recipe("muice_dpo", ["dpo.loss_type=ipo", "dpo.label_smoothing=0.1"])
    with pytest.raises(RecipeError, match=r"muice_dpo.yaml:\d+: method: method dpo needs a `dpo:` section"):
        load_recipe("muice_dpo", ["dpo=null"])
    with pytest.raises(RecipeError, match="`dpo:` given but method is sft"):
        load_recipe("muice_dpo", ["method=sft"])
    with pytest.raises(RecipeError, match="set it through the recipe field"):
        load_recipe("muice_dpo", ["extra_args.rpo_alpha=2"])


def test_dpo_loss_types_are_trls():
    """Every loss the recipe offers is one trl's DPOTrainer (the version ms-swift runs) documents."""
    import dataclasses

    from trl import DPOConfig

    help_text = next(f for f in dataclasses.fields(DPOConfig) if f.name == "loss_type").metadata["help"]
    assert all(f"'{name}'" in help_text for name in DPO_LOSS_TYPES), help_text


def test_dpo_estimate_counts_the_reference_and_both_sequences():
    from swiftkit.train.sizing import size_recipe

    dpo = size_recipe(load_recipe("muice_dpo"), 8)
    sft = size_recipe(load_recipe("muice_dpo", ["method=sft", "dpo=null"]), 8)
    assert dpo.estimate.part("reference") == dpo.estimate.part("weights") > 0
    assert sft.estimate.part("reference") == 0
    assert dpo.setup.tokens == 2 * sft.setup.tokens


# ---- the pair rule and preflight -----------------------------------------------------------------------------------


def test_pair_rule():
    assert dpo_pairs.pair_problems(_pair()) == []
    assert dpo_pairs.pair_problems(record(SYSTEM, "你是谁？", "我是沐雪！")) == [
        ("rejected_response", "missing (the rejected answer; `swiftkit prep-pairs` writes it)")]
    assert dpo_pairs.pair_problems(_pair(rejected=" 我是沐雪！")) == [
        ("rejected_response", "the same as the chosen answer (messages[-1]): nothing to prefer")]
    assert dpo_pairs.pair_problems(_pair(rejected="")) == [
        ("rejected_response", "empty or not text (the rejected answer)")]
    other = record(SYSTEM, "你叫什么？", "我是通义千问。")["messages"]
    good = {**record(SYSTEM, "你是谁？", "我是沐雪！"), "rejected_messages": record(SYSTEM, "你是谁？", "我是Qwen")["messages"]}
    assert dpo_pairs.pair_problems(good) == []
    assert dpo_pairs.pair_problems({**good, "rejected_messages": other}) == [
        ("rejected_messages", "its prompt differs from messages' (a pair is two answers to one prompt)")]
    no_answer = {"messages": record(SYSTEM, "你是谁？", "x")["messages"][:-1], "rejected_response": "y"}
    assert dpo_pairs.pair_problems(no_answer)[0][0] == "messages"


def test_preflight_names_file_line_and_field_of_every_bad_pair(tmp_path: Path):
    data = write_jsonl(tmp_path / "pairs" / "train.jsonl",
                       [_pair(), record(SYSTEM, "a", "b"), _pair(rejected="我是沐雪！"), _pair()])
    recipe = load_recipe("muice_dpo", [f"data.train=[{data}]", "data.val=[]", "eval_steps=null"])
    checks = dpo_checks(recipe)
    assert [c.line() for c in checks] == [
        f"FAIL dpo pairs: {data}:2: rejected_response: missing (the rejected answer; `swiftkit prep-pairs` writes it)",
        f"FAIL dpo pairs: {data}:3: rejected_response: the same as the chosen answer (messages[-1]): nothing to prefer",
    ]
    write_jsonl(data, [_pair(), _pair(user="你好")])
    (ok,) = dpo_checks(recipe)
    assert ok.ok and ok.message.startswith("2 pairs") and "no prep-pairs manifest" in ok.message


# ---- prep-pairs ----------------------------------------------------------------------------------------------------


def test_curated_answers_claim_the_base_identity_in_the_prompts_language():
    for answer in dpo_pairs.CURATED_REJECTED:
        assert judge_identity(answer, "沐雪") == "claims", answer
    assert dpo_pairs.curated_rejected("Who are you?") in dpo_pairs.CURATED_REJECTED_EN
    assert dpo_pairs.curated_rejected("你是谁？") in dpo_pairs.CURATED_REJECTED_ZH
    assert dpo_pairs.curated_rejected("你是谁？") == dpo_pairs.curated_rejected("你是谁？")


def _prep_output(folder: Path) -> Path:
    write_jsonl(folder / "train.jsonl", [record(SYSTEM, "你是谁？", "我是沐雪！"), record(SYSTEM, "晚安", "晚安喵"),
                                         {"messages": [{"role": "user", "content": "no answer"}]},
                                         record(SYSTEM, "Who are you?", "I'm Muice!")])
    (folder / "train.jsonl").write_text((folder / "train.jsonl").read_text() + "{broken\n", encoding="utf-8")
    write_jsonl(folder / "val.jsonl", [record(SYSTEM, "你好", "你好呀")])
    return folder


def test_prep_pairs_without_a_model_uses_curated_answers_and_keeps_good_records(tmp_path: Path):
    src = _prep_output(tmp_path / "muice")
    result = dpo_pairs.prep_pairs(src, tmp_path / "pairs")
    assert result.counts == {"train": 3, "val": 1} and result.rejected_from == {"model": 0, "curated": 4}
    rejects = [json.loads(line) for line in (tmp_path / "pairs" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (3, "messages: the last message is not an assistant answer (the chosen answer)"),
        (5, "(line): not valid JSON (Expecting property name enclosed in double quotes)")]
    out = [json.loads(line) for line in (tmp_path / "pairs" / "train.jsonl").read_text().splitlines()]
    assert out[2]["rejected_response"] in dpo_pairs.CURATED_REJECTED_EN
    assert all(dpo_pairs.pair_problems(r) == [] for r in out)
    manifest = json.loads((tmp_path / "pairs" / "manifest.json").read_text())
    assert manifest["rejected_from"] == {"model": 0, "curated": 4} and manifest["rejected_model"] is None
    assert [p["rejected_from"] for p in manifest["pairs"]] == ["curated"] * 4
    with pytest.raises(SwiftkitError, match="the same folder as the source"):
        dpo_pairs.prep_pairs(src, src)


def test_prep_pairs_takes_the_models_answers_and_says_where_it_fell_back(tmp_path: Path):
    src = _prep_output(tmp_path / "muice")
    asked: list[list[dict]] = []

    def generate(conversations):
        asked.extend(conversations)
        return ["我是通义千问。", "晚安喵", "", "Hi"]  # own answer, the chosen one, empty, own answer

    result = dpo_pairs.prep_pairs(src, tmp_path / "pairs", generate=generate, model_label="base", max_new_tokens=8)
    assert [c[-1]["content"] for c in asked] == ["你是谁？", "晚安", "Who are you?", "你好"]
    assert all(c[-1]["role"] == "user" and c[0]["content"] == SYSTEM for c in asked)
    assert result.rejected_from == {"model": 2, "curated": 2}
    manifest = json.loads((tmp_path / "pairs" / "manifest.json").read_text())
    assert [(p["file"], p["rejected_from"], p.get("why")) for p in manifest["pairs"]] == [
        ("train.jsonl", "model", None), ("train.jsonl", "curated", "the model gave the chosen answer itself"),
        ("train.jsonl", "curated", "the model's answer was empty"), ("val.jsonl", "model", None)]
    first = json.loads((tmp_path / "pairs" / "train.jsonl").read_text().splitlines()[0])
    assert first["rejected_response"] == "我是通义千问。" and first["messages"][-1]["content"] == "我是沐雪！"
    assert manifest["rejected_model"] == "base" and manifest["max_new_tokens"] == 8


def test_prep_pairs_command_curated(tmp_path: Path, capsys):
    from swiftkit.cli import main

    src = _prep_output(tmp_path / "muice")
    assert main(["prep-pairs", str(src), "--out", str(tmp_path / "pairs")]) == 0
    assert "3 train, 1 val pairs; rejected answers from model 0, curated 4" in capsys.readouterr().out


# ---- the smoke's verdict -------------------------------------------------------------------------------------------


def test_verdict_needs_a_rising_margin_and_every_pair_won():
    rising = [{"step": i, "loss": 0.5, "margin": m} for i, m in enumerate([0.0, 0.3, 0.8, 1.2, 1.5], 1)]
    assert smoke_dpo.margin_problems(rising) == []
    flat = [{**r, "margin": 0.1} for r in rising]
    assert smoke_dpo.margin_problems(flat) == [
        "the preference margin did not rise: first +0.100, mean of the last three +0.100 (need +0.5)"]
    assert "loss not finite at step(s) [2]" in smoke_dpo.margin_problems(
        [*rising[:1], {**rising[1], "loss": float("nan")}, *rising[2:]])
    assert smoke_dpo.margin_problems(rising[:3])[0].startswith("3 logged preference margins")
    won = [{"prompt": "a", "rejected_from": "model", "after": 12.0}, {"prompt": "b", "rejected_from": "curated",
                                                                       "after": 0.5}]
    assert smoke_dpo.gap_problems(won) == []
    assert smoke_dpo.gap_problems([{**won[0], "after": -1.0}, won[1]]) == [
        "1 pair(s) still prefer the rejected answer after DPO: ['a']",
        "model-generated pairs: mean chosen-minus-rejected log-likelihood -1.00 < 5.0"]
    assert smoke_dpo.gap_problems(won[1:]) == [
        "no pair's rejected answer came from the warmed model: nothing of its own to unlearn"]
