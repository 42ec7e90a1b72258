"""Recipes that say the truth: every seed recipe's header states, aspect by aspect, what swiftkit does against its
seed (`#   aspect: here  -- seed: ...`), and each `here` is checked against the plan, the recipe, the bundled sample's
prep output or ms-swift's own template — a header that drifts from the code fails here."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from datasets_prep.options import PrepOptions
from datasets_prep.pipeline import prep
from swiftkit.core.jsonl import read_jsonl
from swiftkit.train.plan import Cluster, plan
from swiftkit.train.recipes import find_recipe, load_recipe

ROOT = Path(__file__).resolve().parents[1]
SEED_RECIPES = ("muice_full", "medical_r1_full", "fortune_lora", "actions_lora")
ASPECTS = ("prompt", "think", "masked", "rows", "end_token", "over_long", "batch", "checkpointing")
LINE = re.compile(r"^#   (?P<aspect>[a-z_]+): (?P<here>\S.*?)  -- seed: (?P<seed>\S.*)$")
SAMPLE = {"muice": "muice", "medical_r1": "medical_r1", "fortune": "fortune", "actions": "actions"}


def header_claims(name: str) -> dict[str, str]:
    """aspect -> the header's `here` value, from the comment lines before the first key."""
    claims: dict[str, str] = {}
    for line in find_recipe(name).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        match = LINE.match(line)
        if match:
            assert match["aspect"] not in claims, f"{name}: {match['aspect']} stated twice"
            claims[match["aspect"]] = match["here"]
    return claims


def _flag(argv: list[str], name: str) -> list[str]:
    if name not in argv:
        return []
    rest = argv[argv.index(name) + 1:]
    return rest[:next((i for i, t in enumerate(rest) if t.startswith("--")), len(rest))]


@pytest.fixture(scope="module")
def prepped(tmp_path_factory) -> dict[str, list[dict]]:
    """The bundled sample of each source through prep (default options): the records a recipe trains on."""
    out: dict[str, list[dict]] = {}
    for source, folder in SAMPLE.items():
        dest = tmp_path_factory.mktemp(source)
        prep(source, str(ROOT / "datasets_prep" / "samples" / folder), str(dest),
             PrepOptions(token_stats=False, histogram=False))
        out[source] = [r for f in ("train.jsonl", "val.jsonl") for r in read_jsonl(dest / f)]
    return out


def _ms_swift_truncation_default() -> str:
    """ms-swift's own default truncation_strategy, read from the installed source (``None`` becomes it)."""
    import swift.llm.argument.base_args.template_args as ta

    found = re.search(r"if self\.truncation_strategy is None:\s*\n\s*self\.truncation_strategy = '(\w+)'",
                      Path(ta.__file__).read_text(encoding="utf-8"))
    assert found, "ms-swift's truncation default moved: update this test"
    return found.group(1)


@pytest.mark.parametrize("name", SEED_RECIPES)
def test_header_states_every_aspect_and_each_claim_is_the_plans(name: str, prepped):
    from swift.llm.template import TEMPLATE_MAPPING

    claims = header_claims(name)
    assert sorted(claims) == sorted(ASPECTS), f"{name}: header aspects {sorted(claims)}"
    rec = load_recipe(name)
    argv = plan(rec, Cluster(nproc_per_node=rec.launch.nproc_per_node)).argv

    # prompt: chat = ms-swift's chat template (no --use_chat_template false); raw = the generation template
    assert claims["prompt"] in ("chat", "raw") and claims["prompt"] == rec.data.prompt_format
    assert (_flag(argv, "--use_chat_template") == ["false"]) == (claims["prompt"] == "raw")

    # think: the markup prep writes into this source's answers
    answers = [m["content"] for r in prepped[rec.data.source] for m in r["messages"] if m["role"] == "assistant"]
    if claims["think"] == "none":
        assert not any("<think>" in a or "<思考>" in a for a in answers)
    else:
        assert answers and all(a.startswith(claims["think"]) for a in answers), answers[:1]

    # masked: prompt = completion-only loss (ms-swift's default); nothing = --loss_scale all
    assert claims["masked"] in ("prompt", "nothing")
    assert (_flag(argv, "--loss_scale") == ["all"]) == (claims["masked"] == "nothing")
    assert (rec.data.train_on == "all") == (claims["masked"] == "nothing")

    # rows: what prep's held-out split is used for
    assert claims["rows"] == rec.val_role
    assert bool(_flag(argv, "--val_dataset")) == (claims["rows"] == "eval")

    # end_token: the last token of every trained assistant turn, from ms-swift's template
    template = TEMPLATE_MAPPING[rec.template]
    assert [s.strip() for s in template.suffix if isinstance(s, str)] == [claims["end_token"]]

    # over_long: ms-swift's truncation_strategy (the recipe's, else ms-swift's default)
    assert claims["over_long"] == rec.extra_args.get("truncation_strategy", _ms_swift_truncation_default())

    # batch: per-device and global
    batch = re.fullmatch(r"per-device (\d+), global (\d+)", claims["batch"])
    assert batch, claims["batch"]
    assert (int(batch[1]), int(batch[2])) == (rec.per_device_batch_size, rec.global_batch_size)
    assert _flag(argv, "--per_device_train_batch_size") == [batch[1]]

    # checkpointing: gradient checkpointing and when checkpoints are saved
    ckpt = re.fullmatch(r"gradient (on|off), save (?:every (\d+) steps|per epoch)", claims["checkpointing"])
    assert ckpt, claims["checkpointing"]
    assert _flag(argv, "--gradient_checkpointing") == [{"on": "true", "off": "false"}[ckpt[1]]]
    if ckpt[2]:
        assert _flag(argv, "--save_strategy") == ["steps"] and _flag(argv, "--save_steps") == [ckpt[2]]
    else:
        assert _flag(argv, "--save_strategy") == ["epoch"]


def test_train_on_all_is_the_seeds_whole_text_loss_and_changes_no_other_flag():
    """`data.train_on: all` adds exactly `--loss_scale all` (ms-swift 3.12's base strategy that gives every token,
    system and prompt included, a loss: swift/plugin/loss_scale/loss_scale.py); the shipped recipe's plan is as
    before (its golden file is unchanged)."""
    from swift.plugin.loss_scale.loss_scale import ALL_BASE_STRATEGY

    assert "all" in ALL_BASE_STRATEGY
    shipped = plan(load_recipe("fortune_lora"), Cluster()).argv
    whole = plan(load_recipe("fortune_lora", ["data.train_on=all"]), Cluster()).argv
    assert "--loss_scale" not in shipped
    i = whole.index("--loss_scale")
    assert whole[i:i + 2] == ["--loss_scale", "all"] and whole[:i] + whole[i + 2:] == shipped


def test_the_prompt_line_names_an_option_that_plans_the_seeds_format():
    """fortune_lora's header names data.prompt_format: raw as the seed's format: with it (and train_on: all, which raw
    requires) the plan trains through ms-swift's generation template, every token, and nothing else changes."""
    prompt = next(line for line in find_recipe("fortune_lora").read_text(encoding="utf-8").splitlines()
                  if line.startswith("#   prompt: "))
    assert "data.prompt_format: raw" in prompt
    assert "--prompt-format raw" in find_recipe("fortune_lora").read_text(encoding="utf-8")
    assert PrepOptions(prompt_format="raw").problems() == []
    shipped = plan(load_recipe("fortune_lora"), Cluster()).argv
    raw = plan(load_recipe("fortune_lora", ["data.prompt_format=raw", "data.train_on=all"]), Cluster()).argv
    i = raw.index("--loss_scale")
    assert raw[i:i + 4] == ["--loss_scale", "all", "--use_chat_template", "false"]
    assert raw[:i] + raw[i + 4:] == shipped
