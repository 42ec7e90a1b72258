"""Issue 13, prep part: data as the seed authors have it (an Excel CSV, renamed columns, duplicates on purpose,
over-long records, Muice's own system prompts, folders make prep does not know)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from datasets_prep.options import PrepOptions
from datasets_prep.pipeline import prep
from datasets_prep.registry import ACTIONS_PREFIX, MUICE_SYSTEM
from swiftkit.cli import main as swiftkit_main
from swiftkit.core.errors import SwiftkitError

FAST = dict(token_stats=False, histogram=False, val_ratio=0.0)
ACTION_ROWS = [
    ("行动", "问题", "回答"),
    ("杯子-倒水、跳舞-华尔兹", "口渴了", "给你倒杯水。\r\n<&杯子-倒水&>\r\n请慢慢喝。"),
    ("挥手-再见、鞠躬-谢谢", "我要走了", "路上小心！\r<&挥手-再见&>"),
    ("唱歌-小星星、跳舞-华尔兹", "表演个节目吧", "好的。\n<&唱歌-小星星&>"),
]


def _csv(rows) -> str:
    def cell(v: str) -> str:
        return '"' + v.replace('"', '""') + '"' if any(c in v for c in ',"\r\n') else v
    return "".join(",".join(cell(v) for v in row) + "\r\n" for row in rows)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def _reconciles(m: dict) -> None:
    assert m["read"] == m["train"] + m["val"] + m["rejected"] + m["duplicates"]


# --- 1. the action CSV made in Excel ---------------------------------------------------------------------------

def test_gbk_csv_without_encoding_is_one_line_with_the_hint(tmp_path):
    src = tmp_path / "x.csv"
    src.write_bytes(_csv(ACTION_ROWS).encode("gbk"))
    with pytest.raises(SwiftkitError) as err:
        prep("actions", src, tmp_path / "o", PrepOptions(**FAST))
    first = _csv(ACTION_ROWS).encode("gbk")
    offset = next(i for i, b in enumerate(first) if b >= 0x80)
    assert str(err.value) == (f"x.csv: not valid UTF-8 (byte 0x{first[offset]:02x} at offset {offset}); it looks like "
                              "GBK, which Excel writes on Chinese Windows: pass --encoding gbk")
    assert not (tmp_path / "o" / "train.jsonl").exists()


@pytest.mark.parametrize("encoding", ["gbk", "gb18030", "GBK"])
def test_gbk_csv_with_encoding_reads_like_utf8(tmp_path, encoding):
    (tmp_path / "gbk.csv").write_bytes(_csv(ACTION_ROWS).encode("gbk"))
    (tmp_path / "utf8.csv").write_bytes(_csv(ACTION_ROWS).encode("utf-8"))
    a = prep("actions", tmp_path / "gbk.csv", tmp_path / "a", PrepOptions(encoding=encoding, **FAST))
    b = prep("actions", tmp_path / "utf8.csv", tmp_path / "b", PrepOptions(**FAST))
    assert a["train"] == b["train"] == 3 and a["rejected"] == 0
    assert (tmp_path / "a" / "train.jsonl").read_bytes() == (tmp_path / "b" / "train.jsonl").read_bytes()
    assert a["options"]["encoding"] == encoding


def test_gbk_jsonl_with_encoding_and_utf8_sig(tmp_path):
    rows = [{"instruction": "你好", "output": "你好呀"}, {"instruction": "再见", "output": "拜拜"}]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    (tmp_path / "g.jsonl").write_bytes(text.encode("gbk"))
    (tmp_path / "s.jsonl").write_bytes(text.encode("utf-8-sig"))
    with pytest.raises(SwiftkitError, match="pass --encoding gbk"):
        prep("alpaca", tmp_path / "g.jsonl", tmp_path / "o", PrepOptions(**FAST))
    g = prep("alpaca", tmp_path / "g.jsonl", tmp_path / "g", PrepOptions(encoding="gbk", **FAST))
    s = prep("alpaca", tmp_path / "s.jsonl", tmp_path / "s", PrepOptions(encoding="utf-8-sig", **FAST))
    assert g["train"] == s["train"] == 2
    assert (tmp_path / "g" / "train.jsonl").read_bytes() == (tmp_path / "s" / "train.jsonl").read_bytes()


def test_unknown_encoding_is_one_line(tmp_path, capsys):
    src = tmp_path / "x.csv"
    src.write_text(_csv(ACTION_ROWS), encoding="utf-8")
    code = swiftkit_main(["prep", "actions", "--src", str(src), "--out", str(tmp_path / "o"), "--no-progress",
                          "--encoding", "klingon"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "--encoding klingon: unknown encoding" in err and "\n" not in err


def test_stray_bad_byte_that_is_not_gbk_stays_a_reject(tmp_path):
    src = tmp_path / "x.jsonl"
    src.write_bytes(b'{"instruction": "a", "output": "b"}\n{"instruction": "\xff\xff", "output": "c"}\n')
    m = prep("alpaca", src, tmp_path / "o", PrepOptions(**FAST))
    assert (m["train"], m["rejected"]) == (1, 1)


def test_columns_rename_english_headers(tmp_path, capsys):
    rows = [("actions", "question", "answer")] + ACTION_ROWS[1:]
    src = tmp_path / "en.csv"
    src.write_text(_csv(rows), encoding="utf-8")
    code = swiftkit_main(["prep", "actions", "--src", str(src), "--out", str(tmp_path / "o"), "--no-progress",
                          "--val-ratio", "0", "--columns", "actions=行动,question=问题,answer=回答"])
    assert code == 0, capsys.readouterr().err
    m = _manifest(tmp_path / "o")
    assert m["train"] == 3 and m["options"]["columns"] == {"actions": "行动", "question": "问题", "answer": "回答"}
    # without the mapping every record misses 行动
    with pytest.raises(SwiftkitError, match="missing field '行动'"):
        prep("actions", src, tmp_path / "p", PrepOptions(**FAST))


def test_columns_unknown_from_is_one_line_naming_file_and_columns(tmp_path):
    src = tmp_path / "en.csv"
    src.write_text(_csv([("actions", "question", "answer")] + ACTION_ROWS[1:]), encoding="utf-8")
    with pytest.raises(SwiftkitError) as err:
        prep("actions", src, tmp_path / "o", PrepOptions(columns="acts=行动,question=问题,answer=回答", **FAST))
    assert str(err.value) == "--columns: en.csv has no column 'acts' (columns: actions, question, answer)"
    with pytest.raises(SwiftkitError, match="expected FROM=TO"):
        prep("actions", src, tmp_path / "o", PrepOptions(columns="actions", **FAST))


def test_columns_parquet_and_jsonl(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"q": ["你好", "再见"], "a": ["你好呀", "拜拜"]}), tmp_path / "d.parquet")
    m = prep("alpaca", tmp_path / "d.parquet", tmp_path / "p", PrepOptions(columns={"q": "instruction", "a": "output"}, **FAST))
    assert m["train"] == 2 and m["rejected"] == 0
    src = tmp_path / "d.jsonl"
    src.write_text('{"q": "你好", "a": "你好呀"}\n{"q": "再见", "a": "拜拜"}\n', encoding="utf-8")
    m = prep("alpaca", src, tmp_path / "j", PrepOptions(columns="q=instruction,a=output", **FAST))
    assert m["train"] == 2 and m["rejected"] == 0
    with pytest.raises(SwiftkitError) as err:
        prep("alpaca", src, tmp_path / "k", PrepOptions(columns="query=instruction,a=output", **FAST))
    assert str(err.value) == "--columns: d.jsonl has no column 'query' (keys its records have: q, a)"


def test_line_ends_inside_fields_become_newlines(tmp_path):
    src = tmp_path / "x.csv"
    src.write_text(_csv(ACTION_ROWS), encoding="utf-8", newline="")
    m = prep("actions", src, tmp_path / "o", PrepOptions(**FAST))
    raw = (tmp_path / "o" / "train.jsonl").read_bytes()
    assert b"\\r" not in raw
    answers = {r["messages"][-1]["content"] for r in _lines(tmp_path / "o" / "train.jsonl")}
    assert "给你倒杯水。\n<&杯子-倒水&>\n请慢慢喝。" in answers and "路上小心！\n<&挥手-再见&>" in answers
    assert m["line_ends_normalized"] == 2
    # every source, every message (here a messages record with CR in the system and user content)
    rec = {"messages": [{"role": "system", "content": "s\r\nt"}, {"role": "user", "content": "a\rb"},
                        {"role": "assistant", "content": "c"}]}
    j = tmp_path / "m.jsonl"
    j.write_text(json.dumps(rec) + "\n", encoding="utf-8")
    prep("messages", j, tmp_path / "m", PrepOptions(**FAST))
    out = _lines(tmp_path / "m" / "train.jsonl")[0]["messages"]
    assert [x["content"] for x in out] == ["s\nt", "a\nb", "c"]


def test_answer_tag_not_offered_is_a_reject_naming_it(tmp_path):
    rows = ACTION_ROWS + [("杯子-倒水、挥手-再见", "带我飞", "好的！\n<&飞上天&>")]
    src = tmp_path / "x.csv"
    src.write_text(_csv(rows), encoding="utf-8")
    m = prep("actions", src, tmp_path / "o", PrepOptions(**FAST))
    assert (m["train"], m["rejected"]) == (3, 1)
    _reconciles(m)
    rej = _lines(tmp_path / "o" / "rejects.jsonl")
    assert [(r["file"], r["line"], r["reason"]) for r in rej] == [
        ("x.csv", 10, "answer uses action '飞上天' that the record's 行动 list does not offer")]


def test_actions_system_keeps_the_action_list(tmp_path):
    src = tmp_path / "x.csv"
    src.write_text(_csv(ACTION_ROWS), encoding="utf-8")
    prep("actions", src, tmp_path / "d", PrepOptions(**FAST))
    prep("actions", src, tmp_path / "o", PrepOptions(system="你是数字人小雪。", **FAST))
    default = {r["messages"][1]["content"]: r["messages"][0]["content"] for r in _lines(tmp_path / "d" / "train.jsonl")}
    given = {r["messages"][1]["content"]: r["messages"][0]["content"] for r in _lines(tmp_path / "o" / "train.jsonl")}
    for user, prompt in given.items():
        assert default[user].startswith(ACTIONS_PREFIX)
        action_list = default[user][len(ACTIONS_PREFIX):]
        assert prompt == "你是数字人小雪。\n\n可选动作: \n" + action_list
    assert "- 杯子-倒水" in given["口渴了"]


# --- 2. quietly changed data -----------------------------------------------------------------------------------

def test_keep_duplicates(tmp_path, capsys):
    src = tmp_path / "d.jsonl"
    src.write_text('{"instruction": "a", "output": "b"}\n' * 2 + '{"instruction": "c", "output": "d"}\n',
                   encoding="utf-8")
    m = prep("alpaca", src, tmp_path / "o", PrepOptions(**FAST))
    assert (m["train"], m["duplicates"], m["duplicates_kept"]) == (2, 1, 0)
    k = prep("alpaca", src, tmp_path / "k", PrepOptions(keep_duplicates=True, **FAST))
    assert (k["train"], k["duplicates"], k["duplicates_kept"]) == (3, 0, 1)
    assert k["options"]["keep_duplicates"] is True
    _reconciles(k)
    lines = (tmp_path / "k" / "train.jsonl").read_bytes().splitlines()
    assert len(lines) == 3 and len(set(lines)) == 2
    code = swiftkit_main(["prep", "alpaca", "--src", str(src), "--out", str(tmp_path / "c"), "--no-progress",
                          "--keep-duplicates", "--val-ratio", "0"])
    out = capsys.readouterr().out
    assert code == 0 and "duplicates 0 (kept 1 duplicate(s))" in out


def _long_short(tmp_path: Path) -> Path:
    src = tmp_path / "d.jsonl"
    rows = [{"instruction": "短", "output": "好的。"}, {"instruction": "长", "output": "这是一个很长的回答。" * 200}]
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return src


def test_over_length_drop_and_keep(tmp_path):
    src = _long_short(tmp_path)
    kept = prep("alpaca", src, tmp_path / "k", PrepOptions(max_length=100, histogram=False, val_ratio=0.0))
    assert kept["train"] == 2 and kept["token_lengths"]["over_max_length"] == 1
    assert kept["over_length"] == {"policy": "keep"}
    m = prep("alpaca", src, tmp_path / "o", PrepOptions(max_length=100, over_length="drop", histogram=False, val_ratio=0.0))
    assert (m["train"], m["rejected"]) == (1, 1) and m["over_length"] == {
        "policy": "drop", "over": 1, "truncated": 0, "dropped": 1, "tokenizer": "qwen (bundled)"}
    _reconciles(m)
    (rej,) = _lines(tmp_path / "o" / "rejects.jsonl")
    assert rej["line"] == 2 and rej["reason"].endswith(" tokens, over --max-length 100 (--over-length drop)")
    assert int(rej["reason"].split()[0]) > 100
    with pytest.raises(SwiftkitError, match="--over-length cut: choose keep, truncate, drop"):
        prep("alpaca", src, tmp_path / "x", PrepOptions(over_length="cut", **FAST))


def test_over_length_truncate_cuts_the_last_answer_to_fit(tmp_path):
    src = _long_short(tmp_path)
    m = prep("alpaca", src, tmp_path / "o", PrepOptions(max_length=100, over_length="truncate", histogram=False, val_ratio=0.0))
    assert (m["train"], m["rejected"]) == (2, 0)
    assert m["over_length"] == {"policy": "truncate", "over": 1, "truncated": 1, "dropped": 0, "tokenizer": "qwen (bundled)"}
    assert m["token_lengths"]["over_max_length"] == 0 and 90 <= m["token_lengths"]["max"] <= 100
    rows = {r["messages"][1]["content"]: r for r in _lines(tmp_path / "o" / "train.jsonl")}
    cut = rows["长"]["messages"][-1]["content"]
    assert ("这是一个很长的回答。" * 200).startswith(cut) and 10 < len(cut) < 2000
    assert rows["长"]["solution"] == cut and rows["短"]["messages"][-1]["content"] == "好的。"
    # a prompt that alone is over the limit cannot be cut to fit: a reject
    with pytest.raises(SwiftkitError, match=r"first reject d.jsonl:1: \d+ tokens, over --max-length 5; cutting the "
                       r"last answer cannot make it fit \(--over-length truncate\)"):
        prep("alpaca", src, tmp_path / "t", PrepOptions(max_length=5, over_length="truncate", histogram=False, val_ratio=0.0))


def test_muice_own_system_prompt_replaced_is_counted(tmp_path):
    src = tmp_path / "m.jsonl"
    rows = [{"system": "你是小明", "prompt": "你好", "completion": "你好呀"},
            {"prompt": "再见", "completion": "拜拜"},
            {"system": "你是小红", "prompt": "早", "completion": "早上好"}]
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    m = prep("muice", src, tmp_path / "o", PrepOptions(**FAST))
    assert m["system_replaced"] == 2
    assert {r["messages"][0]["content"] for r in _lines(tmp_path / "o" / "train.jsonl")} == {MUICE_SYSTEM}
    k = prep("muice", src, tmp_path / "k", PrepOptions(keep_system=True, **FAST))
    assert k["system_replaced"] == 0


def test_make_prep_reports_unknown_folders(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "medical").mkdir(parents=True)
    (src / "medical" / "x.jsonl").write_text("{}\n", encoding="utf-8")
    (src / "alpaca").mkdir()
    (src / "actions").mkdir()
    (src / "actions" / "a.csv").write_text(_csv(ACTION_ROWS), encoding="utf-8")
    code = swiftkit_main(["prep-all", "--src-dir", str(src), "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.splitlines()
    assert code == 0
    assert err == [
        f"swiftkit prep-all: skipping alpaca/ (prep-all converts only muice, fortune, medical_r1, actions, general; "
        f"run `swiftkit prep alpaca --src {src / 'alpaca'}`)",
        "swiftkit prep-all: skipping medical/ (no source of that name; known: muice, fortune, medical_r1, actions, general)"]
