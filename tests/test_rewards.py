"""GRPO rewards on real-shaped records: orderings that teach the right thing, None where a reward does not apply,
options from the environment, and the plugin imported the way ms-swift imports it."""
from __future__ import annotations

import dataclasses
import inspect
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import pytest

from swiftkit.train.grpo import rewards
from swiftkit.train.grpo.rewards import (
    OPTIONS_ENV,
    REWARDS,
    RewardOptionsError,
    make_reward,
    option_problems,
)

# --- records in the shapes our prep writes ------------------------------------------------------------------------

MEDICAL_SYSTEM = "你是一个医学专家，你需要根据用户的问题，给出带有思考的回答。"
MEDICAL_SOLUTION = ("<think>\n38度属于低热，可先物理降温，多喝水，观察症状变化。\n</think>\n\n"
                    "38度可以先物理降温和多喝水，超过38.5度或持续不退再用退烧药。")
MEDICAL_ANSWER = "38度可以先物理降温和多喝水，超过38.5度或持续不退再用退烧药。"
FORTUNE_SYSTEM = "你是一位精通八字的命理师，请先思考再回答。"
FORTUNE_SOLUTION = "<think>\n用户问今年运势，需结合流年简要说明。\n</think>\n\n今年流年平稳，宜守不宜攻，下半年财运渐好。"

ACTIONS_SYSTEM = ("回答用户的问题，根据需要可在下列动作中选择一个或多个执行，注意动作执行和问题回答的先后顺序。\n\n"
                  "可选动作: \n- 杯子-倒水\n- 换衣服-裙子\n- 做饭-炒冬瓜\n- 切开-西瓜\n")
ACTION_SOLUTION = "我来做饭。\n<&做饭-炒冬瓜&>\n炒冬瓜香喷四溢。"
TWO_ACTION_SOLUTION = "好的，先切西瓜再倒水。\n<&切开-西瓜&>\n<&杯子-倒水&>\n西瓜切好了，水也倒好了。"
SILENT_SOLUTION = "今天天气不错，适合出去走走。"

MUICE_SYSTEM = "你是一个名为沐雪的可爱AI女孩子"
MUICE_SOLUTION = "我是沐雪，一个可爱的AI女孩子哦~ 才不是Qwen呢！"


def record(system: str, user: str, solution: Any, score: Any = 9.5) -> dict[str, Any]:
    return {"system": system, "user": user, "solution": solution, "score": score}


MEDICAL = record(MEDICAL_SYSTEM, "感冒发烧38度需要吃药吗？", MEDICAL_SOLUTION, 9.5)
FORTUNE = record(FORTUNE_SYSTEM, "我今年运势怎么样？", FORTUNE_SOLUTION, 8.0)
ACTIONS = record(ACTIONS_SYSTEM, "饿了", ACTION_SOLUTION, 9.0)
TWO_ACTIONS = record(ACTIONS_SYSTEM, "切个西瓜，再给我倒杯水", TWO_ACTION_SOLUTION, 9.0)
SILENT = record(ACTIONS_SYSTEM, "今天天气怎么样？", SILENT_SOLUTION, 9.0)
MUICE = record(MUICE_SYSTEM, "你是谁？", MUICE_SOLUTION, 10.0)
MUICE_CHAT = record(MUICE_SYSTEM, "今天好累啊", "辛苦啦~ 沐雪给你捶捶背！", 10.0)


def batch(pairs: list[tuple[dict[str, Any], Optional[str]]]) -> tuple[list[Any], dict[str, Any]]:
    """ms-swift's call: completions, and every column as a list (messages end with the completion)."""
    completions = [c for _, c in pairs]
    kwargs: dict[str, Any] = {"messages": [], "solution": [], "score": [], "trainer_state": object()}
    for rec, completion in pairs:
        kwargs["messages"].append([{"role": "system", "content": rec["system"]},
                                   {"role": "user", "content": rec["user"]},
                                   {"role": "assistant", "content": completion}])
        kwargs["solution"].append(rec["solution"])
        kwargs["score"].append(rec["score"])
    return completions, kwargs


def scores(reward: str, rec: dict[str, Any], completions: list[Optional[str]], /,
           **options: Any) -> list[Optional[float]]:
    """Reward ``reward`` (built with ``options``) on ``completions`` of one record; plain floats or None."""
    completions_, kwargs = batch([(rec, c) for c in completions])
    out = make_reward(reward, options)(completions_, **kwargs)
    assert all(v is None or type(v) is float for v in out)
    return out


@pytest.fixture(autouse=True)
def _no_env_options(monkeypatch):
    monkeypatch.delenv(OPTIONS_ENV, raising=False)


# --- swiftkit_action ----------------------------------------------------------------------------------------------

def test_action_reference_wins_and_offered_is_never_worse_than_none():
    ref, no_tag, unoffered, other, malformed, ref_plus_unoffered = scores("swiftkit_action", ACTIONS, [
        ACTION_SOLUTION,
        "我来做饭。\n炒冬瓜香喷四溢。",
        "我来做饭。\n<&点外卖&>\n外卖马上到。",
        "我来倒水。\n<&杯子-倒水&>\n先喝点水吧。",
        "我来做饭。\n<&做饭-炒冬瓜\n炒冬瓜香喷四溢。",
        "我来做饭。\n<&做饭-炒冬瓜&>\n<&点外卖&>\n炒冬瓜香喷四溢。",
    ])
    assert ref == 1.0
    assert ref > no_tag and ref > unoffered and ref > other and ref > ref_plus_unoffered
    assert other >= no_tag  # the trap: no tag must never beat an offered tag, or the model learns to stop acting
    assert other > unoffered and no_tag > unoffered
    assert malformed == unoffered  # an unclosed <& is an unoffered action
    assert (ref, other, no_tag, unoffered, ref_plus_unoffered) == pytest.approx((1.0, 0.1, 0.0, -0.6, 0.4))


def test_action_several_tags_order_and_partial_credit():
    exact, swapped, one_of_two, repeated, none = scores("swiftkit_action", TWO_ACTIONS, [
        TWO_ACTION_SOLUTION,
        "好的。\n<&杯子-倒水&>\n<&切开-西瓜&>\n水倒好了，西瓜也切好了。",
        "好的。\n<&切开-西瓜&>\n西瓜切好了。",
        "好的。\n<&切开-西瓜&>\n<&杯子-倒水&>\n<&杯子-倒水&>\n好了。",
        "好的，西瓜切好了，水也倒好了。",
    ])
    assert exact > swapped == repeated > one_of_two > none
    assert (exact, swapped, one_of_two, none) == pytest.approx((1.0, 0.6, 0.3, 0.0))  # 0.3: 0.1 + 0.4 x Jaccard 1/2


def test_action_reference_without_tag():
    silent, acts, invents = scores("swiftkit_action", SILENT, [
        SILENT_SOLUTION, "我给你倒杯水。\n<&杯子-倒水&>\n今天天气不错。", "<&开窗&>\n今天天气不错。",
    ])
    assert silent > acts > invents
    assert (silent, acts, invents) == pytest.approx((1.0, 0.3, -0.3))


def test_action_options_change_values_not_the_order():
    swapped, unoffered = scores("swiftkit_action", TWO_ACTIONS, [
        "<&杯子-倒水&>\n<&切开-西瓜&>\n好了。", "<&点外卖&>\n好了。"], order_credit=0.9, unoffered_penalty=1.0)
    assert (swapped, unoffered) == pytest.approx((0.9, -1.0))
    assert option_problems("swiftkit_action", {"order_credit": 0.4})  # would rank below a partial match


def test_action_does_not_apply_without_actions():
    assert scores("swiftkit_action", MEDICAL, [MEDICAL_SOLUTION, "<&做饭-炒冬瓜&>"]) == [None, None]
    assert scores("swiftkit_action", record(ACTIONS_SYSTEM, "饿了", None), [ACTION_SOLUTION]) == [None]
    # no 可选动作 list, but the solution acts: its own tag is the offered set
    no_list = record("你是数字人助手。", "饿了", ACTION_SOLUTION)
    assert scores("swiftkit_action", no_list, [ACTION_SOLUTION, "<&杯子-倒水&>"]) == [1.0, pytest.approx(-0.6)]


# --- swiftkit_think -----------------------------------------------------------------------------------------------

def test_think_ranks_the_reference_above_partial_forms():
    full, bare, empty_answer, unclosed, twice, late, indented = scores("swiftkit_think", MEDICAL, [
        MEDICAL_SOLUTION,
        MEDICAL_ANSWER,
        "<think>\n38度属于低热。\n</think>\n\n",
        "<think>\n38度属于低热，先物理降温",
        "<think>低热</think>多喝水<think>再想想</think>先降温。",
        "好的。<think>低热</think>多喝水。",
        "\n  " + MEDICAL_SOLUTION,
    ])
    assert full == indented == 1.0
    assert full > empty_answer == late == 0.5 > unclosed == twice == 0.25 > bare == 0.0


def test_think_applies_only_where_the_solution_thinks_unless_required():
    assert scores("swiftkit_think", ACTIONS, [ACTION_SOLUTION]) == [None]
    assert scores("swiftkit_think", ACTIONS, [ACTION_SOLUTION], require=True) == [0.0]
    assert scores("swiftkit_think", FORTUNE, [FORTUNE_SOLUTION]) == [1.0]


# --- swiftkit_reference -------------------------------------------------------------------------------------------

def test_reference_similarity_is_chinese_aware_and_weighted_by_score():
    ref, answer_only, unrelated, punctuated = scores("swiftkit_reference", MEDICAL, [
        MEDICAL_SOLUTION, MEDICAL_ANSWER, "今年流年平稳，宜守不宜攻。",
        "38度 可以先物理降温、和多喝水!!超过38.5度或持续不退,再用退烧药",
    ])
    assert ref == answer_only == punctuated == pytest.approx(0.95)  # F1 1.0 x weight 9.5/10: thinking is stripped
    assert unrelated < 0.1
    assert scores("swiftkit_reference", {**MEDICAL, "score": 0.5}, [MEDICAL_SOLUTION]) == [pytest.approx(0.05)]
    assert scores("swiftkit_reference", {**MEDICAL, "score": 0.5}, [MEDICAL_SOLUTION], score_max=1.0) == [0.5]
    assert scores("swiftkit_reference", {**MEDICAL, "score": 42}, [MEDICAL_SOLUTION]) == [1.0]  # clipped
    for missing in (None, "high", True, float("nan")):  # not a number: weight 1
        assert scores("swiftkit_reference", {**MEDICAL, "score": missing}, [MEDICAL_SOLUTION]) == [1.0]
    near = scores("swiftkit_reference", MEDICAL, ["38度可以先物理降温，超过38.5度再用退烧药。"])[0]
    assert unrelated < near < ref


def test_reference_can_include_the_thinking():
    without, with_think = scores("swiftkit_reference", MEDICAL, [MEDICAL_ANSWER] * 2)[0], scores(
        "swiftkit_reference", MEDICAL, [MEDICAL_ANSWER], include_think=True)[0]
    assert without == pytest.approx(0.95) and with_think < 0.8


# --- swiftkit_repetition ------------------------------------------------------------------------------------------

LOOPING = "多喝水，多喝水，多喝水，多喝水，多喝水，多喝水，多喝水，多喝水。"


def test_repetition_sees_chinese_loops_where_ms_swift_does_not():
    from swift.plugin.orm import RepetitionPenalty

    theirs = RepetitionPenalty(repetition_n_grams=3, repetition_max_penalty=-1.0)([LOOPING, MEDICAL_ANSWER])
    assert theirs == [0.0, 0.0]  # no spaces in Chinese: never more than one "word"
    looping, fine, short, spaced = scores("swiftkit_repetition", MEDICAL, [LOOPING, MEDICAL_ANSWER, "好", "好 的"])
    assert looping < -0.5 and -0.1 < fine <= 0.0
    assert short == 0.0 and spaced == 0.0  # shorter than an n-gram once spaces are gone
    unique = scores("swiftkit_repetition", MEDICAL, ["你好呀我的朋友"])[0]
    assert unique == 0.0 and math.copysign(1, unique) == 1.0  # no repeats: 0.0, not -0.0 in the logs
    assert scores("swiftkit_repetition", MEDICAL, [LOOPING], max_penalty=0.5)[0] == pytest.approx(looping / 2)


# --- swiftkit_persona ---------------------------------------------------------------------------------------------

def test_persona_rewards_the_name_and_punishes_a_qwen_claim():
    ref, qwen, tongyi, neither, thinking_only = scores("swiftkit_persona", MUICE, [
        MUICE_SOLUTION, "我是通义千问，由阿里云开发的AI助手。", "我是QWEN大模型。", "我是一个AI助手。",
        "<think>我是沐雪</think>我是ChatGPT。",
    ])
    assert ref == 1.0  # names 沐雪 and denies Qwen: the maximum
    assert qwen == tongyi == thinking_only == -1.0 and neither == 0.0
    for question in ("你叫什么名字？", "介绍一下你自己吧", "你是什么模型", "Who are you?"):
        assert scores("swiftkit_persona", {**MUICE, "user": question}, [MUICE_SOLUTION]) == [1.0]


def test_persona_applies_only_to_identity_questions_with_a_known_name():
    assert scores("swiftkit_persona", MUICE_CHAT, ["我是Qwen。"]) == [None]
    assert scores("swiftkit_persona", {**MEDICAL, "user": "你是谁？"}, ["我是Qwen。"]) == [None]  # no name found
    assert scores("swiftkit_persona", {**MEDICAL, "user": "你是谁？"}, ["我是小医。"], name="小医") == [1.0]
    quoted = {**MUICE, "system": '你是一个名为"沐雪"的可爱AI女孩子\n说话带喵'}
    assert scores("swiftkit_persona", quoted, ["我是沐雪喵~"]) == [1.0]
    assert scores("swiftkit_persona", MUICE, ["I am ChatGPT."], forbidden=["Gemini"]) == [0.0]


# --- mixed batches and odd input ----------------------------------------------------------------------------------

def test_mixed_batch_none_where_a_reward_does_not_apply():
    completions, kwargs = batch([(MEDICAL, MEDICAL_SOLUTION), (ACTIONS, ACTION_SOLUTION), (MUICE, MUICE_SOLUTION),
                                 (MUICE_CHAT, "辛苦啦~")])
    got = {name: make_reward(name)(completions, **kwargs) for name in REWARDS}
    assert got["swiftkit_think"] == [1.0, None, None, None]
    assert got["swiftkit_action"] == [None, 1.0, None, None]
    assert got["swiftkit_persona"] == [None, None, 1.0, None]
    assert got["swiftkit_reference"][:3] == [pytest.approx(0.95), pytest.approx(0.9), 1.0]
    assert all(v is not None for v in got["swiftkit_repetition"])


def test_odd_input_gives_none_never_an_exception():
    odd = [None, 12, "", "<&", "<think>"]
    completions, kwargs = batch([(ACTIONS, c) for c in odd])
    kwargs["solution"] = [None, 3, ["x"], ACTION_SOLUTION]  # short column, non-strings
    kwargs["messages"][1] = "not messages"
    kwargs["score"] = ["high", float("nan"), True]
    for name in REWARDS:
        reward = make_reward(name)
        out = reward(completions, **kwargs)
        assert len(out) == len(odd) and out[0] is None and out[1] is None, name
        assert all(v is None or (type(v) is float and math.isfinite(v)) for v in out), name
        assert reward([]) == [] and reward(["好的"]) in ([None], [0.0]), name  # no columns at all
    assert make_reward("swiftkit_action")(["<&"], messages=[[{"role": "system", "content": ACTIONS_SYSTEM}]],
                                          solution=[ACTION_SOLUTION]) == [pytest.approx(-0.6)]


# --- options ------------------------------------------------------------------------------------------------------

def test_options_come_from_the_environment_json(monkeypatch):
    monkeypatch.setenv(OPTIONS_ENV, json.dumps({"swiftkit_reference": {"score_max": 1.0},
                                                "swiftkit_persona": {"name": "小医"}}))
    assert make_reward("swiftkit_reference").options.score_max == 1.0
    assert make_reward("swiftkit_persona").options.name == "小医"
    assert make_reward("swiftkit_think").options.require is False  # not named: defaults
    assert make_reward("swiftkit_think", {"require": True}).options.require is True  # explicit beats the env
    monkeypatch.setenv(OPTIONS_ENV, json.dumps({"swiftkit_refrence": {}, "swiftkit_think": {"requir": True}}))
    with pytest.raises(RewardOptionsError) as err:
        make_reward("swiftkit_repetition")  # any bad entry fails every reward, loudly, at start
    assert len(err.value.problems) == 2 and "did you mean 'swiftkit_reference'" in str(err.value)
    monkeypatch.setenv(OPTIONS_ENV, "{not json")
    with pytest.raises(RewardOptionsError, match=OPTIONS_ENV):
        make_reward("swiftkit_think")


def test_option_problems_lists_every_problem_at_once():
    assert option_problems("swiftkit_reference", {"score_max": 1.0, "include_think": True}) == []
    problems = option_problems("swiftkit_reference", {"score_mx": 1.0, "include_think": "maybe", "score_max": -1})
    assert len(problems) == 3 and all("\n" not in p and p.startswith("reward 'swiftkit_reference'") for p in problems)
    assert any("'score_mx'" in p and "did you mean 'score_max'" in p for p in problems)
    assert any("'include_think'" in p for p in problems) and any("'score_max'" in p for p in problems)
    assert option_problems("swiftkit_persona", {"forbidden": "Qwen"}) != []
    assert "did you mean 'swiftkit_action'" in option_problems("swiftkit_actions", {})[0]
    assert "known:" in option_problems("bleu", {})[0]
    assert "mapping" in option_problems("swiftkit_think", [1])[0]
    with pytest.raises(RewardOptionsError):
        make_reward("swiftkit_nope")
    assert rewards.options_env_value({"swiftkit_reference": {"score_max": 1.0}}) == \
        '{"swiftkit_reference": {"score_max": 1.0}}'


def test_every_reward_documents_itself():
    for name, cls in REWARDS.items():
        assert name.startswith("swiftkit_") and cls.name == name
        assert cls.Options.model_config.get("extra") == "forbid"
        assert all(f.description for f in cls.Options.model_fields.values()), name
        cls.Options()  # every option has a default
        # 3.x fills parameters named like training arguments (none of these is one); 4.x passes args=
        assert list(inspect.signature(cls.__init__).parameters) == ["self", "swiftkit_options", "args"]
        assert (cls.__doc__ or "").strip(), name


def test_importing_rewards_stays_light():
    import subprocess

    code = ("import sys, swiftkit.train.grpo.rewards; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'swift', 'transformers'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- the plugin, imported the way ms-swift imports it --------------------------------------------------------------

def test_plugin_registers_every_reward_and_ms_swift_builds_them(monkeypatch):
    from swift.plugin import orms
    from swift.trainers import GRPOConfig
    from swift.trainers.rlhf_trainer.grpo_trainer import GRPOTrainer
    from swift.utils import import_external_file

    plugin = Path(rewards.__file__).with_name("swiftkit_plugin.py")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "swiftkit_plugin", raising=False)
    import_external_file(str(plugin))  # what BaseArguments._import_external_plugins does for --external_plugins
    assert str(plugin.parent) not in sys.path  # swiftkit/ must not shadow top-level modules afterwards
    assert all(orms[name] is cls for name, cls in REWARDS.items())

    # ms-swift's own construction: orms[name](**{p: getattr(args, p) for each __init__ p that args has}), with
    # args carrying every GRPOConfig field, then the reward names it logs metrics under
    args = SimpleNamespace(**{f.name: None if f.default is dataclasses.MISSING else f.default
                              for f in dataclasses.fields(GRPOConfig)})
    trainer = SimpleNamespace(args=args, accelerator=SimpleNamespace(device="cpu"), processing_class=None)
    GRPOTrainer._prepare_rewards(trainer, list(REWARDS))
    assert trainer.reward_func_names == ["ThinkFormat", "ActionMatch", "ReferenceSimilarity", "CharRepetition",
                                         "PersonaIdentity"]
    assert trainer._async_reward_func_indices == []
    completions, kwargs = batch([(ACTIONS, ACTION_SOLUTION), (MUICE, MUICE_SOLUTION)])
    got = [func(completions, **kwargs) for func in trainer.reward_funcs]
    assert got[1] == [1.0, None] and got[4] == [None, 1.0]
