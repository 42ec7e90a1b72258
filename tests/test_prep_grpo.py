"""Prep output ready for GRPO: a ``solution`` column (the final assistant message's content) on every record of
every source, and ``--score-from FIELD`` taking a record's real rating instead of a placeholder score."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from datasets_prep.options import PrepOptions
from datasets_prep.pipeline import COLUMNS, prep
from datasets_prep.records import FieldError
from datasets_prep.scorefield import ScoreField
from swiftkit.cli import main as swiftkit_main
from swiftkit.core.errors import SwiftkitError
from tests.helpers import write_format, write_jsonl

SAMPLES = Path(__file__).resolve().parents[1] / "datasets_prep" / "samples"
FIELD = "metrics.quality_f1"


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def outputs(out: Path) -> list[dict]:
    return lines(out / "train.jsonl") + lines(out / "val.jsonl")


def medical(question: str, metrics: object = None, **extra) -> dict:
    row = {"instruction": "医学专家", "question": question, "think": f"想想{question}", "answer": f"答{question}",
           **extra}
    if metrics is not None:
        row["metrics"] = metrics
    return row


# --- solution ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("source, src, kw", [
    ("muice", SAMPLES / "muice", {}),
    ("fortune", SAMPLES / "fortune", {}),
    ("medical_r1", SAMPLES / "medical_r1", {}),
    ("actions", SAMPLES / "actions", {}),
    ("messages", SAMPLES / "generic" / "messages.jsonl", {}),
    ("sharegpt", SAMPLES / "generic" / "sharegpt.jsonl", {}),
    ("alpaca", SAMPLES / "generic" / "alpaca.json", {}),
    ("query_response", SAMPLES / "generic" / "query_response.jsonl",
     {"model_name": ("沐雪", "Muice"), "model_author": ("沐沐", "Moemu")}),
])
def test_solution_is_the_final_assistant_content_for_every_source(tmp_path, source, src, kw):
    manifest = prep(source, src, tmp_path / "o", PrepOptions(token_stats=False, **kw))
    recs = outputs(tmp_path / "o")
    assert len(recs) == manifest["train"] + manifest["val"] > 0
    for rec in recs:
        assert tuple(rec) == COLUMNS == ("messages", "score", "solution")
        assert rec["messages"][-1]["role"] == "assistant"
        assert rec["solution"] == rec["messages"][-1]["content"] and rec["solution"].strip()
        assert "{{" not in rec["solution"]  # placeholders are filled in the solution too
    assert manifest["columns"] == ["messages", "score", "solution"]
    if source in ("muice", "sharegpt", "query_response"):  # multi-turn: the last answer, not the first
        assert any(len(r["messages"]) > 3 and r["solution"] != r["messages"][2]["content"] for r in recs)


def test_solution_multi_turn_and_single_turn(tmp_path):
    last = "叁\n\"引号\"\\"  # escapes survive the round trip
    src = write_jsonl(tmp_path / "m.jsonl", [{"conversation": [
        {"human": "一", "assistant": "壹"}, {"human": "二", "assistant": "贰"}, {"human": "三", "assistant": last}]}])
    prep("muice", src, tmp_path / "a", PrepOptions(token_stats=False, val_ratio=0.0))
    (rec,) = lines(tmp_path / "a" / "train.jsonl")
    assert rec["solution"] == last and len(rec["messages"]) == 7
    prep("muice", src, tmp_path / "b", PrepOptions(token_stats=False, val_ratio=0.0, single_turn=True))
    (rec,) = lines(tmp_path / "b" / "train.jsonl")
    assert rec["solution"] == "壹" and len(rec["messages"]) == 3


# Pre-solution outputs of the bundled samples (seed 42, placeholder scores), sha256 of train.jsonl / val.jsonl.
# Taking the solution column off every line gives these bytes back: same records, same split, same scores.
BEFORE_SOLUTION = {
    "muice": ("2ac1c2e6549db6b881f30955c758fbd66575caa5db398096a6664c903156b5c1",
              "2621f7562d76da0770e83cc8194459aedc2fe9f988557dff4b3b0e117f71abab"),
    "medical_r1": ("ab7d98cd00a75c6145aa9d4b5c432a0189644407f9455a65b5a6a59d55cd3dd1",
                   "8eecbdd1d4f280b4923b54d6d17e90e694e4400fd8fad7ad3bf02b7e7096d148"),
    "actions": ("3e31e4e87e650cf1a4177ad727c777c5358d2167fc1ecb03278ca6e491c7f61a",
                "164728e039864a31503d1f132086067353eae7cc60258fca991b3b7bf7db71ca"),
}


@pytest.mark.parametrize("source", sorted(BEFORE_SOLUTION))
def test_the_new_column_is_the_only_change_in_bytes(tmp_path, source):
    prep(source, SAMPLES / source, tmp_path / "o", PrepOptions(token_stats=False))
    for name, expected in zip(("train.jsonl", "val.jsonl"), BEFORE_SOLUTION[source]):
        data = (tmp_path / "o" / name).read_bytes()
        stripped = b"".join(row.rsplit(b',"solution":', 1)[0] + b"}\n" for row in data.splitlines())
        assert hashlib.sha256(stripped).hexdigest() == expected


# --- --score-from -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_score_from_takes_the_real_rating(tmp_path, fmt):
    """Nested path; CSV/Parquet carry ``metrics`` as JSON text in a cell, and CSV numbers as text."""
    rows = [medical("头痛", {"quality_f1": 0.25}), medical("发烧", {"quality_f1": 1}),
            medical("咳嗽", {"quality_f1": 0.75})]
    src = write_format(tmp_path / "src" / "data", fmt, rows)
    m = prep("medical_r1", src, tmp_path / "o", PrepOptions(token_stats=False, val_ratio=0.0, score_from=FIELD))
    assert (m["read"], m["train"], m["rejected"]) == (3, 3, 0)
    scores = {r["messages"][1]["content"]: r["score"] for r in outputs(tmp_path / "o")}
    assert scores == {"头痛": 0.25, "发烧": 1.0, "咳嗽": 0.75}
    assert m["score"] == {"source": "field", "field": FIELD, "min": 0.25, "max": 1.0}
    assert m["options"]["score_from"] == FIELD


def test_score_from_flattened_csv_header_and_top_level_field(tmp_path):
    src = tmp_path / "flat.csv"
    src.write_text("question,think,answer,metrics.quality_f1,rating\n"
                   "头痛,想,答,0.5, 7 \n"
                   "发烧,想,答,1e-1,3\n", encoding="utf-8")
    m = prep("medical_r1", src, tmp_path / "a", PrepOptions(token_stats=False, val_ratio=0.0, score_from=FIELD))
    assert [r["score"] for r in outputs(tmp_path / "a")] == [0.5, 0.1] and m["score"]["min"] == 0.1
    prep("medical_r1", src, tmp_path / "b", PrepOptions(token_stats=False, val_ratio=0.0, score_from="rating"))
    assert [r["score"] for r in outputs(tmp_path / "b")] == [7.0, 3.0]


def test_record_without_a_score_is_rejected_naming_the_field(tmp_path):
    rows = [medical("好1", {"quality_f1": 0.9}),
            medical("缺metrics"),
            medical("空metrics", {}),
            medical("文字", {"quality_f1": "高"}),
            medical("布尔", {"quality_f1": True}),
            medical("空值", {"quality_f1": None}),
            medical("列表", {"quality_f1": [1]}),
            medical("好2", {"quality_f1": 0.6})]
    src = write_jsonl(tmp_path / "r1.jsonl", rows)
    m = prep("medical_r1", src, tmp_path / "o", PrepOptions(token_stats=False, val_ratio=0.0, score_from=FIELD))
    assert (m["read"], m["train"], m["val"], m["rejected"], m["duplicates"]) == (8, 2, 0, 6, 0)
    assert m["read"] == m["train"] + m["val"] + m["rejected"] + m["duplicates"]
    assert {r["messages"][1]["content"]: r["score"] for r in outputs(tmp_path / "o")} == {"好1": 0.9, "好2": 0.6}
    rejects = lines(tmp_path / "o" / "rejects.jsonl")
    assert [(r["file"], r["line"]) for r in rejects] == [("r1.jsonl", n) for n in range(2, 8)]
    assert all(f"score field '{FIELD}'" in r["reason"] for r in rejects)
    assert [r["reason"].split(f"'{FIELD}' ")[1] for r in rejects] == [
        "is missing", "is missing", "is '高', expected a number", "is true, expected a number",
        "is null, expected a number", "is a list, expected a number"]
    assert rejects[0]["raw"] == json.dumps(rows[1], ensure_ascii=False)
    assert m["score"] == {"source": "field", "field": FIELD, "min": 0.6, "max": 0.9}


def test_csv_cells_that_are_not_numbers_are_rejected(tmp_path):
    src = tmp_path / "r1.csv"
    src.write_text("question,think,answer,rating\n好,想,答,8\n空,想,答,\n布尔,想,答,true\n无穷,想,答,inf\n",
                   encoding="utf-8")
    m = prep("medical_r1", src, tmp_path / "o", PrepOptions(token_stats=False, val_ratio=0.0, score_from="rating"))
    assert (m["read"], m["train"], m["rejected"]) == (4, 1, 3)
    rejects = lines(tmp_path / "o" / "rejects.jsonl")
    assert [(r["file"], r["line"]) for r in rejects] == [("r1.csv", 3), ("r1.csv", 4), ("r1.csv", 5)]
    assert all("score field 'rating'" in r["reason"] for r in rejects)


def test_a_reader_reject_keeps_its_own_reason(tmp_path):
    """The sample's last medical record has no 'think' and no rating: the reader's reason is the one reported."""
    m = prep("medical_r1", SAMPLES / "medical_r1", tmp_path / "o", PrepOptions(token_stats=False, score_from=FIELD))
    assert [r["reason"] for r in lines(tmp_path / "o" / "rejects.jsonl")] == ["missing field 'think'"]
    assert m["rejected"] == 1 and {r["score"] for r in outputs(tmp_path / "o")} == {1.0}


def test_score_from_does_not_move_records_between_splits(tmp_path):
    """Dedupe and split hash the messages only; the score column is the only difference."""
    kw = dict(token_stats=False, val_ratio=0.3)
    placeholder = prep("medical_r1", SAMPLES / "medical_r1", tmp_path / "p", PrepOptions(**kw))
    field = prep("medical_r1", SAMPLES / "medical_r1", tmp_path / "f", PrepOptions(score_from=FIELD, **kw))
    for name in ("train.jsonl", "val.jsonl"):
        p, f = lines(tmp_path / "p" / name), lines(tmp_path / "f" / name)
        assert [(r["messages"], r["solution"]) for r in p] == [(r["messages"], r["solution"]) for r in f]
        assert {r["score"] for r in f} == {1.0}
    counts = ("train", "val", "duplicates")
    assert [placeholder[k] for k in counts] == [field[k] for k in counts]


def test_manifest_says_placeholder_or_field(tmp_path):
    m = prep("medical_r1", SAMPLES / "medical_r1", tmp_path / "p", PrepOptions(token_stats=False, score_choices=[1, 2]))
    assert m["score"] == {"source": "placeholder", "choices": [1.0, 2.0]} and m["options"]["score_from"] is None
    assert {r["score"] for r in outputs(tmp_path / "p")} <= {1.0, 2.0}
    m = prep("medical_r1", SAMPLES / "medical_r1", tmp_path / "f", PrepOptions(token_stats=False, score_from=FIELD))
    assert m["score"] == {"source": "field", "field": FIELD, "min": 1.0, "max": 1.0}
    on_disk = json.loads((tmp_path / "f" / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk["score"] == m["score"] and on_disk["columns"] == ["messages", "score", "solution"]


def test_rerun_with_score_from_is_byte_identical(tmp_path):
    rows = [medical(f"问{i}", {"quality_f1": i / 10}) for i in range(30)] + [medical("缺")]
    src = write_jsonl(tmp_path / "r1.jsonl", rows)
    runs = []
    for name in ("a", "b"):
        prep("medical_r1", src, tmp_path / name, PrepOptions(score_from=FIELD, val_ratio=0.2))
        runs.append({p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())})
    assert runs[0] == runs[1] and len(runs[0]) == 5
    assert b'"score":0.5,"solution":"<think>' in runs[0]["train.jsonl"] + runs[0]["val.jsonl"]


@pytest.mark.parametrize("field, obj, expected", [
    ("a.b", {"a": {"b": 2}}, 2.0),
    ("a.b", {"a.b": "3.5"}, 3.5),  # flattened header
    ("a.b", {"a": '{"b": 4}'}, 4.0),  # nested object as JSON text (CSV)
    ("a.b.c", {"a": {"b.c": 5}}, 5.0),
    ("a", {"a": " -1 "}, -1.0),
])
def test_score_field_lookup(field, obj, expected):
    assert ScoreField(field).take(obj) == expected


@pytest.mark.parametrize("obj", [{}, {"a": 1}, {"a": {"c": 1}}, {"a": "{bad json"}, {"a": {"b": False}},
                                 {"a": {"b": "nan"}}, {"a": {"b": float("inf")}}, {"a": {"b": ""}},
                                 {"a": {"b": 10**400}}])
def test_score_field_rejects(obj):
    with pytest.raises(FieldError, match="score field 'a.b'"):
        ScoreField("a.b").take(obj)


@pytest.mark.parametrize("field", ["", "a..b", ".a", "a."])
def test_score_field_bad_path(tmp_path, field):
    with pytest.raises(SwiftkitError, match="--score-from"):
        prep("medical_r1", SAMPLES / "medical_r1", tmp_path / "o", PrepOptions(token_stats=False, score_from=field))


# --- CLI and make prep ------------------------------------------------------------------------------------------

def test_cli_score_from_and_help(tmp_path, capsys):
    code = swiftkit_main(["prep", "medical_r1", "--src", str(SAMPLES / "medical_r1"), "--out", str(tmp_path / "o"),
                          "--no-progress", "--score-from", FIELD])
    summary = capsys.readouterr().out
    assert code == 0 and summary.startswith("medical_r1: read 13, train 8, val 3, rejected 1, duplicates 1")
    m = json.loads((tmp_path / "o" / "manifest.json").read_text(encoding="utf-8"))
    assert m["score"]["source"] == "field" and m["options"]["score_from"] == FIELD
    with pytest.raises(SystemExit):
        swiftkit_main(["prep", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert '"solution": "..."' in help_text and "--score-from FIELD" in help_text and "metrics.quality_f1" in help_text


def test_make_prep_score_from_per_source(tmp_path, capsys):
    out = tmp_path / "data"
    base = ["--src-dir", str(SAMPLES), "--out", str(out), "--no-progress", "--sources", "medical_r1"]
    assert swiftkit_main(["prep-all", *base, "fortune", "--score-from", f"medical_r1={FIELD}"]) == 0
    medical_m = json.loads((out / "medical_r1" / "manifest.json").read_text(encoding="utf-8"))
    fortune_m = json.loads((out / "fortune" / "manifest.json").read_text(encoding="utf-8"))
    assert medical_m["score"] == {"source": "field", "field": FIELD, "min": 1.0, "max": 1.0}
    assert fortune_m["score"]["source"] == "placeholder"
    capsys.readouterr()
    for bad in (FIELD, f"actions={FIELD}"):
        assert swiftkit_main(["prep-all", *base, "--score-from", bad]) == 1
        assert "--score-from" in capsys.readouterr().err
