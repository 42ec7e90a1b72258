"""Each reader's shapes: every Muice shape, multi-turn, the folder layout, both reasoning schemas in every
file format, the actions prompt, the generic shapes and placeholders. Runs the real pipeline on tiny files."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from datasets_prep.options import PrepOptions
from datasets_prep.pipeline import prep
from datasets_prep.registry import (
    ACTIONS_PREFIX,
    FORTUNE_SYSTEM,
    MEDICAL_SYSTEM,
    MUICE_SYSTEM,
)
from tests.helpers import write_format, write_jsonl


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def run(tmp_path: Path, source: str, src: Path, **kw) -> tuple[dict, list[dict], list[dict]]:
    out = tmp_path / "out"
    kw.setdefault("token_stats", False)
    kw.setdefault("val_ratio", 0.0)
    manifest = prep(source, src, out, PrepOptions(**kw))
    return manifest, lines(out / "train.jsonl"), lines(out / "val.jsonl")


def convo(rows: list[dict]) -> list[list[tuple[str, str]]]:
    return [[(m["role"], m["content"]) for m in r["messages"]] for r in rows]


MUICE_DATA_SYSTEM = "你是一个名为沐雪的AI女孩子"


@pytest.mark.parametrize("record, expected", [
    ({"system": MUICE_DATA_SYSTEM, "conversation": [{"human": "你好", "assistant": "你好呀~"}]},
     [("user", "你好"), ("assistant", "你好呀~")]),
    ({"prompt": "吃了吗", "completion": "吃啦！", "history": [["早", "早上好⭐"]]},
     [("user", "早"), ("assistant", "早上好⭐"), ("user", "吃了吗"), ("assistant", "吃啦！")]),
    ({"prompt": "你是谁？", "respond": "我是沐雪", "history": []},
     [("user", "你是谁？"), ("assistant", "我是沐雪")]),
    ({"messages": [{"role": "system", "content": MUICE_DATA_SYSTEM}, {"role": "user", "content": "嗨"},
                   {"role": "assistant", "content": "嗨嗨(脸红)"}]},
     [("user", "嗨"), ("assistant", "嗨嗨(脸红)")]),
])
def test_muice_each_shape(tmp_path, record, expected):
    src = write_jsonl(tmp_path / "m.jsonl", [record])
    manifest, train, _ = run(tmp_path, "muice", src)
    assert manifest["train"] == 1 and manifest["rejected"] == 0
    assert convo(train) == [[("system", MUICE_SYSTEM)] + expected]
    assert train[0]["score"] in (8.0, 8.5, 9.0, 9.5, 10.0)
    assert list(train[0]) == ["messages", "score", "solution"]
    assert train[0]["solution"] == expected[-1][1]


def test_muice_multi_turn_whole_and_single_turn(tmp_path):
    rec = {"system": MUICE_DATA_SYSTEM, "conversation": [
        {"human": "一", "assistant": "壹"}, {"human": "二", "assistant": "贰"}, {"human": "三", "assistant": "叁"}]}
    src = write_jsonl(tmp_path / "m.jsonl", [rec])
    _, train, _ = run(tmp_path, "muice", src)
    assert [c for _, c in convo(train)[0]] == [MUICE_SYSTEM, "一", "壹", "二", "贰", "三", "叁"]
    _, train, _ = run(tmp_path, "muice", src, single_turn=True)
    assert [c for _, c in convo(train)[0]] == [MUICE_SYSTEM, "一", "壹"]


def test_muice_system_policy(tmp_path):
    src = write_jsonl(tmp_path / "m.jsonl", [
        {"system": "数据自己的系统提示", "conversation": [{"human": "a", "assistant": "b"}]},
        {"prompt": "c", "completion": "d", "history": []},
    ])
    _, train, _ = run(tmp_path, "muice", src)
    assert {r["messages"][0]["content"] for r in train} == {MUICE_SYSTEM}
    _, train, _ = run(tmp_path, "muice", src, keep_system=True)
    assert sorted(r["messages"][0]["content"] for r in train) == sorted(["数据自己的系统提示", MUICE_SYSTEM])
    _, train, _ = run(tmp_path, "muice", src, system="自定义")
    assert {r["messages"][0]["content"] for r in train} == {"自定义"}


def test_muice_dataset_folder_layout(tmp_path):
    root = tmp_path / "Muice-Dataset"
    write_jsonl(root / "train.jsonl", [{"system": MUICE_DATA_SYSTEM, "conversation": [{"human": "t1", "assistant": "a1"}]},
                                       {"system": MUICE_DATA_SYSTEM, "conversation": [{"human": "t2", "assistant": "a2"}]}])
    write_jsonl(root / "Customized" / "self_cognition.jsonl", [{"prompt": "你是谁？", "respond": "我是沐雪", "history": []}])
    write_jsonl(root / "Customized" / "wikihow.jsonl", [{"prompt": "怎么煮面", "completion": "先烧水", "history": []}])
    write_jsonl(root / "test.jsonl", [{"messages": [{"role": "user", "content": "v1"}, {"role": "assistant", "content": "va"}]}])
    manifest, train, val = run(tmp_path, "muice", root, val_ratio=0.5)
    assert sorted(r["messages"][1]["content"] for r in train) == ["t1", "t2", "你是谁？", "怎么煮面"]
    assert [r["messages"][1]["content"] for r in val] == ["v1"]
    assert set(manifest["inputs"]) == {"train.jsonl", "Customized/self_cognition.jsonl", "Customized/wikihow.jsonl", "test.jsonl"}


def _reasoning_rows(kind: str) -> list[dict]:
    if kind == "fortune":
        return [{"Question": "我的运势？", "Complex_CoT": "\n先看八字。\n", "Response": "运势不错。"},
                {"Question": "风水如何？", "Complex_CoT": "门朝南。", "Response": "很好。"}]
    return [{"instruction": MEDICAL_SYSTEM, "question": "头痛怎么办？", "think": "可能是睡眠不足。", "answer": "多休息。",
             "metrics": {"quality_f1": 1.0}},
            {"instruction": "发烧了怎么办？", "think": "低热先观察。", "answer": "多喝水。", "metrics": {}}]


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "parquet"])
@pytest.mark.parametrize("kind", ["fortune", "medical_r1"])
def test_reasoning_schemas_every_format(tmp_path, kind, fmt):
    src = write_format(tmp_path / "src" / "data", fmt, _reasoning_rows(kind))
    manifest, train, _ = run(tmp_path, kind, src)
    assert manifest["train"] == 2 and manifest["rejected"] == 0
    system = FORTUNE_SYSTEM if kind == "fortune" else MEDICAL_SYSTEM
    if kind == "fortune":
        expected = [("我的运势？", "<think>\n先看八字。\n</think>\n\n运势不错。"), ("风水如何？", "<think>\n门朝南。\n</think>\n\n很好。")]
    else:  # question wins over instruction; instruction only fills in where question is absent; think is kept
        expected = [("头痛怎么办？", "<think>\n可能是睡眠不足。\n</think>\n\n多休息。"), ("发烧了怎么办？", "<think>\n低热先观察。\n</think>\n\n多喝水。")]
    assert convo(train) == [[("system", system), ("user", q), ("assistant", a)] for q, a in expected]
    assert all(list(r) == ["messages", "score", "solution"] for r in train)  # no raw columns leak (think, instruction, metrics)
    assert [r["solution"] for r in train] == [a for _, a in expected]  # the whole final answer, <think> included


def test_actions_system_lists_actions_shuffled_reproducibly(tmp_path):
    path = tmp_path / "a.csv"
    acts = ["做饭-炒冬瓜", "杯子-倒水", "换衣服-裙子", "切开-西瓜", "跳舞-华尔兹", "唱歌-小星星"]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["行动", "问题", "回答"])
        w.writerow(["、".join(acts), "饿了", "我来做饭。\n<&做饭-炒冬瓜&>"])
    systems = set()
    for seed in range(6):
        _, train, _ = run(tmp_path, "actions", path, seed=seed)
        system = train[0]["messages"][0]["content"]
        assert system.startswith(ACTIONS_PREFIX) and system.endswith("\n")
        listed = system[len(ACTIONS_PREFIX):].rstrip("\n").split("\n")
        assert sorted(listed) == sorted(f"- {a}" for a in acts)
        systems.add(system)
        _, again, _ = run(tmp_path, "actions", path, seed=seed)
        assert again[0]["messages"][0]["content"] == system
    assert len(systems) > 1  # the order depends on the seed
    assert convo(train)[0][1:] == [("user", "饿了"), ("assistant", "我来做饭。\n<&做饭-炒冬瓜&>")]


def test_generic_shapes(tmp_path):
    samples = Path(__file__).resolve().parents[1] / "datasets_prep" / "samples" / "generic"
    _, train, _ = run(tmp_path, "sharegpt", samples / "sharegpt.jsonl")
    assert convo(train)[1] == [("system", "You are terse."), ("user", "Capital of France?"), ("assistant", "Paris.")]
    assert len(convo(train)[0]) == 5 and convo(train)[0][0] == ("system", "You are a helpful assistant.")
    _, train, _ = run(tmp_path, "alpaca", samples / "alpaca.json")
    assert convo(train)[0][1] == ("user", "把下面的句子翻译成英文\n我爱你")
    _, train, _ = run(tmp_path, "messages", samples / "messages.jsonl")
    assert [r["messages"][0]["content"] for r in train] == ["你是一个乐于助人的助手。", "You are a helpful assistant."]


def test_placeholders_filled_by_tag_and_unfilled_rejected(tmp_path):
    src = Path(__file__).resolve().parents[1] / "datasets_prep" / "samples" / "generic" / "query_response.jsonl"
    manifest, train, _ = run(tmp_path, "query_response", src, model_name=("沐雪", "Muice"), model_author=("沐沐", "Moemu"))
    answers = [r["messages"][-1]["content"] for r in train]
    assert "我是沐雪，由沐沐训练的人工智能助手。" in answers
    assert "I am Muice, an assistant trained by Moemu." in answers
    assert [m["content"] for m in train[2]["messages"][1:]] == ["你好", "你好！", "今天星期几？", "我无法获取实时日期哦。"]
    manifest, train, _ = run(tmp_path, "query_response", src)
    assert manifest["rejected"] == 2 and manifest["train"] == 1
    rejects = lines(tmp_path / "out" / "rejects.jsonl")
    assert all("{{NAME}}" in r["reason"] and "--model-name" in r["reason"] for r in rejects)
