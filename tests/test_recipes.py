"""Recipe schema and registry: every shipped recipe validates; bad recipes fail with file:line: field lines."""
from __future__ import annotations

from pathlib import Path

import pytest

from swiftkit.core.errors import SwiftkitError
from swiftkit.train.recipes import (
    RecipeError,
    find_recipe,
    list_recipes,
    load_recipe,
    parse_recipe,
)

ROOT = Path(__file__).resolve().parent.parent
NAMES = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))
"""Every shipped recipe, read off the folder: a new recipe is checked without editing this file."""
SEEDS = {"muice_full", "medical_r1_full", "fortune_lora", "actions_lora"}
"""The seed recipes the product promises; the folder must keep them."""

GOOD = """\
description: test recipe
model: models/tiny
model_type: qwen2_5
train_type: full
data:
  source: muice
  train: [data/muice/train.jsonl]
max_length: 256
global_batch_size: 16
learning_rate: 1.0e-3
"""


def test_registry_lists_every_recipe_and_each_validates():
    assert SEEDS <= set(NAMES) and "smoke_tiny" in NAMES
    assert [p.stem for p in list_recipes()] == NAMES
    for name in NAMES:
        recipe = load_recipe(name)
        assert recipe.name == name
        assert recipe.description and "\n" not in recipe.description
        src = recipe.data.source
        # the source's prep output; DPO trains on its pairs (prep-pairs), the DPO smoke's warm-up on its Qwen answers
        folder = {"dpo": f"data/{src}_pairs", "smoke_dpo_sft": f"data/{src}_qwen"}.get(
            "smoke_dpo_sft" if name == "smoke_dpo_sft" else recipe.method, f"data/{src}")
        assert recipe.data.train[0] == f"{folder}/train.jsonl"  # the GRPO smoke mixes two prep outputs
        assert all(Path(f).name == "train.jsonl" and Path(f).parts[0] == "data" for f in recipe.data.train)
        assert recipe.data.val in ([f"{folder}/val.jsonl"], [])
        assert "system" not in recipe.extra_args


def test_contract_fields_persona_and_lora_rank():
    assert {n for n in NAMES if load_recipe(n).persona} == {"muice_full", "smoke_tiny", "muice_dpo", "smoke_dpo_sft",
                                                            "smoke_dpo"}
    assert load_recipe("fortune_lora").lora.rank == 16
    assert load_recipe("actions_lora").lora.rank == 8
    assert load_recipe("fortune_lora").run_train_type == "qlora"  # seed 004 loaded the model in 4 bit
    assert load_recipe("fortune_lora", ["lora.qlora=false"]).run_train_type == "lora"


SEED_RUNS = {
    # recipe: what its seed ran (tests/../shared/seeds), in recipe fields. The departures are asserted below.
    "muice_full": dict(model="Qwen/Qwen2-1.5B-Instruct", train_type="full", learning_rate=1e-5, num_train_epochs=5,
                       warmup_ratio=0.05, logging_steps=5, save_total_limit=5, gradient_checkpointing=True),
    "medical_r1_full": dict(model="Qwen/Qwen2.5-1.5B", train_type="full", global_batch_size=4, learning_rate=1e-4,
                            num_train_epochs=2, max_length=2048, eval_steps=100, save_steps=400, logging_steps=10,
                            gradient_checkpointing=True, lr_scheduler_type="linear", weight_decay=0.0),
    "fortune_lora": dict(model="Qwen/Qwen3-8B", train_type="lora", global_batch_size=8, max_steps=75, warmup_steps=5,
                         learning_rate=2e-4, lr_scheduler_type="linear", weight_decay=0.01, seed=3407, max_length=2048),
    "actions_lora": dict(train_type="lora", global_batch_size=16, learning_rate=1e-4, num_train_epochs=3,
                         logging_steps=10, save_steps=100, gradient_checkpointing=True, lr_scheduler_type="linear",
                         weight_decay=0.0, max_length=2048),
}


@pytest.mark.parametrize("name", sorted(SEED_RUNS))
def test_recipes_run_what_their_seeds_ran(name: str):
    recipe = load_recipe(name)
    assert {k: getattr(recipe, k) for k in SEED_RUNS[name]} == SEED_RUNS[name]


def test_the_stated_departures_from_the_seeds():
    muice = load_recipe("muice_full")  # 8 data-parallel processes instead of one: global 8, not the seed's 4
    assert (muice.launch.nproc_per_node, muice.launch.deepspeed, muice.global_batch_size) == (8, "zero2", 8)
    assert (muice.eval_steps, muice.save_steps) == (10, 25)  # the seed's 20 and 50 steps of 4 samples, in samples
    assert muice.max_length <= 32768  # the seed's 40960 exceeded Qwen2-1.5B-Instruct's context
    assert (muice.report.report_to, muice.report.swanlab_project) == (["swanlab"], "swift-robot")
    fortune = load_recipe("fortune_lora")  # the seed's 4-bit load, LoRA shape and 8-bit AdamW
    assert (fortune.lora.rank, fortune.lora.alpha, fortune.lora.dropout, fortune.lora.target_modules) == (
        16, 16, 0.0, ["all-linear"])
    assert fortune.lora.qlora and fortune.extra_args == {"optim": "adamw_8bit"}
    actions = load_recipe("actions_lora")
    assert (actions.lora.rank, actions.lora.alpha, actions.lora.dropout) == (8, 32, 0.1)
    assert actions.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    for name in ("fortune_lora", "actions_lora"):  # per-device 1: the same global batch, less activation memory
        assert load_recipe(name).per_device_batch_size == 1
    assert load_recipe("medical_r1_full").report.swanlab_mode == "local"  # the seed's swanlab calls are commented out


def test_unknown_key_is_reported_with_line_and_did_you_mean():
    text = GOOD + "lerning_rate: 1.0e-4\n"
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, source="r.yaml", name="r")
    assert err.value.problems == ["r.yaml:11: lerning_rate: unknown key (did you mean 'learning_rate'?)"]


def test_nested_unknown_key_did_you_mean():
    text = GOOD.replace("  source: muice\n", "  source: muice\n  vall: [x.jsonl]\n")
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, source="r.yaml", name="r")
    assert err.value.problems == ["r.yaml:7: data.vall: unknown key (did you mean 'val'?)"]


def test_all_problems_reported_at_once():
    text = GOOD.replace("max_length: 256", "max_length: lots").replace("global_batch_size: 16", "global_batch_size: -2")
    text += "warmup_ratoi: 0.1\n"
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, source="r.yaml", name="r")
    problems = err.value.problems
    assert len(problems) == 3, problems
    assert problems[0].startswith("r.yaml:8: max_length: Input should be a valid integer")
    assert problems[1].startswith("r.yaml:9: global_batch_size: Input should be greater than or equal to 1")
    assert problems[2] == "r.yaml:11: warmup_ratoi: unknown key (did you mean 'warmup_ratio'?)"
    assert str(err.value).count("\n") == 2  # one line per problem


def test_wrong_type_and_cross_field_rules():
    with pytest.raises(RecipeError, match=r"train_type: Input should be 'full' or 'lora'"):
        parse_recipe(GOOD.replace("train_type: full", "train_type: qlora"), source="r.yaml", name="r")
    with pytest.raises(RecipeError, match="train_type lora needs a `lora:` section"):
        parse_recipe(GOOD.replace("train_type: full", "train_type: lora"), source="r.yaml", name="r")
    with pytest.raises(RecipeError, match="global_batch_size 16 is not a multiple of per_device_batch_size 3"):
        parse_recipe(GOOD + "per_device_batch_size: 3\n", source="r.yaml", name="r")
    with pytest.raises(RecipeError, match="eval_steps needs data.val"):
        parse_recipe(GOOD + "eval_steps: 5\n", source="r.yaml", name="r")
    with pytest.raises(RecipeError, match="extra_args.system: set it through the recipe field"):
        parse_recipe(GOOD + "extra_args: {system: hi}\n", source="r.yaml", name="r")


def test_every_broken_cross_field_rule_is_reported_at_once_with_its_line():
    text = GOOD.replace("train_type: full", "train_type: lora") + "per_device_batch_size: 3\neval_steps: 5\n"
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, source="r.yaml", name="r")
    problems = err.value.problems
    assert len(problems) == 3, problems
    lines = text.splitlines()
    for problem, key in zip(problems, ("train_type", "eval_steps", "global_batch_size")):
        where, field = problem.split(": ")[:2]
        assert field == key and lines[int(where.split(":")[1]) - 1].startswith(key), problem


def test_name_must_match_file_and_yaml_must_parse():
    with pytest.raises(RecipeError, match="differs from the file name"):
        parse_recipe("name: other\n" + GOOD, source="r.yaml", name="r")
    with pytest.raises(RecipeError, match=r"r.yaml:2: not valid YAML"):
        parse_recipe("a: 1\nb: c: d\n", source="r.yaml", name="r")
    with pytest.raises(RecipeError, match="a recipe is a mapping"):
        parse_recipe("- 1\n", source="r.yaml", name="r")


def test_overrides_apply_parse_yaml_values_and_validate():
    r = parse_recipe(GOOD, source="r.yaml", name="r", overrides=["learning_rate=2e-5", "launch.nproc_per_node=4"])
    assert r.learning_rate == 2e-5 and r.launch.nproc_per_node == 4
    with pytest.raises(RecipeError, match=r"learnig_rate: unknown key \(did you mean 'learning_rate'\?\)"):
        parse_recipe(GOOD, source="r.yaml", name="r", overrides=["learnig_rate=1"])
    with pytest.raises(SwiftkitError, match="expected key=value"):
        parse_recipe(GOOD, source="r.yaml", name="r", overrides=["learning_rate"])


def test_find_recipe_did_you_mean_and_paths(tmp_path: Path, monkeypatch):
    with pytest.raises(SwiftkitError, match="unknown recipe 'muice_ful' \\(did you mean 'muice_full'\\?\\)"):
        find_recipe("muice_ful")
    path = tmp_path / "mine.yaml"
    path.write_text(GOOD, encoding="utf-8")
    assert load_recipe(path).name == "mine"
    monkeypatch.setenv("SWIFTKIT_RECIPES", str(tmp_path))
    assert [p.stem for p in list_recipes()] == ["mine"]
    assert load_recipe("mine").model == "models/tiny"


def test_show_round_trips():
    r = load_recipe("fortune_lora")
    again = parse_recipe(r.to_yaml(), source="x", name="fortune_lora")
    assert again == r


GRPO = GOOD + """\
method: grpo
grpo:
  num_generations: 4
  rewards:
    - name: swiftkit_think
    - name: swiftkit_reference
      weight: 0.5
      options: {score_max: 1.0}
"""


def test_grpo_recipe_validates():
    r = parse_recipe(GRPO, source="r.yaml", name="r")
    assert r.method == "grpo" and r.grpo is not None and r.grpo.num_generations == 4
    assert [(x.name, x.weight) for x in r.grpo.rewards] == [("swiftkit_think", 1.0), ("swiftkit_reference", 0.5)]
    assert r.grpo.rollout.backend == "pt"


def test_every_broken_grpo_rule_is_reported_at_once_with_its_line():
    text = (GRPO.replace("num_generations: 4", "num_generations: 3")
            .replace("swiftkit_think", "swiftkit_thnk")
            .replace("{score_max: 1.0}", "{score_max: 1.0, scale: 2}")
            + "  rollout:\n    backend: vllm_server\nlaunch:\n  device: cpu\n")
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, source="r.yaml", name="r")
    problems = err.value.problems
    lines = text.splitlines()
    expect = [
        ("global_batch_size", "global_batch_size 16 counts completions: it must be a multiple of grpo.num_generations 3"),
        ("grpo.rewards.0.name", "unknown reward 'swiftkit_thnk' (did you mean 'swiftkit_think'?)"),
        ("grpo.rewards.1.options", "scale"),
        ("grpo.rollout.server_host", "rollout backend vllm_server needs server_host"),
        ("grpo.rollout.backend", "vllm_server cannot run on a CPU: the rollout server syncs weights over NCCL"),
    ]
    assert len(problems) == len(expect), problems
    for (field, message), problem in zip(expect, problems):
        where, got_field, rest = problem.split(": ", 2)
        assert got_field == field and message in rest, problem
        assert where.startswith("r.yaml:") and int(where.split(":")[1]) <= len(lines), problem


def test_method_and_grpo_section_go_together():
    with pytest.raises(RecipeError, match="method grpo needs a `grpo:` section"):
        parse_recipe(GOOD + "method: grpo\n", source="r.yaml", name="r")
    with pytest.raises(RecipeError, match="`grpo:` given but method is sft"):
        parse_recipe(GRPO.replace("method: grpo", "method: sft"), source="r.yaml", name="r")
    with pytest.raises(RecipeError, match="method 'kto': choose one of sft, grpo, dpo"):
        parse_recipe(GOOD + "method: kto\n", source="r.yaml", name="r")
    with pytest.raises(RecipeError, match="method dpo needs a `dpo:` section"):
        parse_recipe(GOOD + "method: dpo\n", source="r.yaml", name="r")
    with pytest.raises(RecipeError, match=r"grpo.num_generations: Input should be greater than or equal to 2"):
        parse_recipe(GRPO.replace("num_generations: 4", "num_generations: 1"), source="r.yaml", name="r")
    with pytest.raises(RecipeError, match="format: ms-swift's built-in rewards take no options here"):
        parse_recipe(GRPO.replace("swiftkit_think", "format\n      options: {x: 1}"), source="r.yaml", name="r")


def test_list_items_can_be_overridden():
    r = load_recipe("actions_grpo", ["grpo.rewards.1.weight=2", "grpo.rewards.0.options={unoffered_penalty: 0.9}"])
    assert r.grpo.rewards[1].weight == 2.0 and r.grpo.rewards[0].options == {"unoffered_penalty": 0.9}
    with pytest.raises(SwiftkitError, match="'7' is not an index of a list of 3"):
        load_recipe("actions_grpo", ["grpo.rewards.7.weight=2"])


def test_ms_swift_builtin_reward_names_are_the_installed_ones():
    from swift.plugin import orms

    from swiftkit.train.recipes import MS_SWIFT_REWARDS

    assert set(MS_SWIFT_REWARDS) == {k for k in orms if not k.startswith("swiftkit_")}


def test_yaml_aliases_are_refused_before_anything_expands():
    bomb = GOOD + "".join(f"{k}: &{k} [{', '.join(['*' + p] * 9 if p else ['lol'] * 9)}]\n"
                          for k, p in zip("abcdefghi", [None, *"abcdefgh"]))
    with pytest.raises(RecipeError, match=r"r.yaml:11: YAML anchors and aliases .* are not allowed"):
        parse_recipe(bomb, source="r.yaml", name="r")
    with pytest.raises(RecipeError, match="--set lora:1: YAML anchors and aliases"):
        parse_recipe(GOOD, source="r.yaml", name="r", overrides=["lora=&x [1, *x]"])


def test_recipe_names_stay_one_path_component():
    for bad in ("../../etc", "a/b", ".hidden", ""):
        with pytest.raises(RecipeError, match="letters, digits, _ . - only"):
            parse_recipe(GOOD, source="r.yaml", name="r", overrides=[f"name={bad}"])
    assert parse_recipe(GOOD, source="r.yaml", name="r", overrides=["name=r-2.b_3"]).name == "r-2.b_3"


def test_a_recipes_system_prompt_is_the_one_its_prep_source_writes():
    """data.system restates what prep wrote into every record (the persona template and the identity check use it):
    it must be that source's prompt, or a recipe would check a persona its data never had."""
    from datasets_prep.registry import get_source

    for name in NAMES:
        recipe = load_recipe(name)
        if recipe.data.system is not None:
            assert recipe.data.system == get_source(recipe.data.source).system, name


def test_a_bad_set_is_blamed_on_the_set_not_on_the_recipe_file():
    with pytest.raises(RecipeError) as err:
        parse_recipe(GOOD, source="r.yaml", name="r", overrides=["learning_rate=abc", "launch.nproc_per_node=0"])
    assert [p.split(": ")[0] for p in err.value.problems] == ["--set learning_rate=abc", "--set launch.nproc_per_node=0"]
    with pytest.raises(RecipeError, match=r"^--set eval_steps=5: eval_steps: eval_steps needs data.val files$"):
        parse_recipe(GOOD, source="r.yaml", name="r", overrides=["eval_steps=5"])
    with pytest.raises(RecipeError, match=r"^r.yaml:9: global_batch_size: .* not a multiple of per_device_batch_size 3"):
        parse_recipe(GOOD, source="r.yaml", name="r", overrides=["per_device_batch_size=3"])
