"""Every rejection reason, with the good records around the bad one kept, and reconciling counts."""
from __future__ import annotations

import json

import pytest

from datasets_prep.options import PrepOptions
from datasets_prep.pipeline import prep

S = "你是一个名为沐雪的AI女孩子"


def good(i: int) -> bytes:
    return json.dumps({"system": S, "conversation": [{"human": f"问题{i}", "assistant": f"回答{i}"}]},
                      ensure_ascii=False).encode()


def msgs(*pairs) -> bytes:
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in pairs]}, ensure_ascii=False).encode()


BAD = {
    "invalid UTF-8": b'{"prompt": "\xff\xfe", "completion": "x"}',
    "invalid JSON": b'{"prompt": "a", "completion": ',
    "missing field 'completion'": json.dumps({"prompt": "a", "history": []}).encode(),
    "field 'system' is int": json.dumps({"system": 3, "conversation": [{"human": "a", "assistant": "b"}]}).encode(),
    "messages[1] (user) content is empty": json.dumps({"prompt": "  ", "completion": "b"}).encode(),
    "messages[2] (assistant) content is empty": json.dumps({"prompt": "a", "completion": ""}).encode(),
    "messages[2] (assistant) content is int": json.dumps({"prompt": "a", "completion": 5}).encode(),
    "role is 'assistant', expected 'user'": msgs(("assistant", "先说话"), ("user", "a"), ("assistant", "b")),
    "role is 'user', expected 'assistant'": msgs(("user", "a"), ("user", "b"), ("assistant", "c")),
    "does not end with an assistant message": msgs(("user", "a"), ("assistant", "b"), ("user", "c")),
    "unknown Muice record shape": json.dumps({"text": "随便"}).encode(),
    "expected an object": b'["a", "b"]',
}


@pytest.mark.parametrize("reason", list(BAD))
def test_each_rejection_reason_keeps_neighbours(tmp_path, reason):
    data = b"\n".join([good(1), BAD[reason], good(2)]) + b"\n"
    src = tmp_path / "in.jsonl"
    src.write_bytes(data)
    manifest = prep("muice", src, tmp_path / "out", PrepOptions(val_ratio=0.0, token_stats=False))
    assert (manifest["read"], manifest["train"], manifest["rejected"]) == (3, 2, 1)
    (rej,) = [json.loads(x) for x in (tmp_path / "out" / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rej["file"] == "in.jsonl" and rej["line"] == 2
    assert reason in rej["reason"], rej["reason"]
    assert rej["raw"] == BAD[reason].decode("utf-8", "replace")
    kept = [json.loads(x)["messages"][1]["content"] for x in (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert kept == ["问题1", "问题2"]


def test_bom_crlf_blank_lines_and_duplicates(tmp_path):
    data = b"\xef\xbb\xbf" + good(1) + b"\r\n\r\n" + good(2) + b"\r\n" + good(1) + b"\r\n" + good(1) + b"\r\n"
    src = tmp_path / "in.jsonl"
    src.write_bytes(data)
    m = prep("muice", src, tmp_path / "out", PrepOptions(val_ratio=0.0, token_stats=False))
    assert (m["read"], m["train"], m["val"], m["rejected"], m["duplicates"]) == (4, 2, 0, 0, 2)
    assert m["read"] == m["train"] + m["val"] + m["rejected"] + m["duplicates"]


def test_duplicates_across_files_counted_once(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.jsonl").write_bytes(good(1) + b"\n" + good(2) + b"\n")
    (tmp_path / "src" / "b.jsonl").write_bytes(good(2) + b"\n" + good(3) + b"\n")
    m = prep("muice", tmp_path / "src", tmp_path / "out", PrepOptions(val_ratio=0.0, token_stats=False))
    assert (m["read"], m["train"], m["duplicates"]) == (4, 3, 1)


def test_csv_and_json_array_rejects_name_their_line(tmp_path):
    csv_path = tmp_path / "a.csv"
    csv_path.write_bytes("行动,问题,回答\n做饭-炒冬瓜,饿了,我来做饭。\n做饭-炒冬瓜,,空问题\n".encode() + b"\xff,x,y\n")
    m = prep("actions", csv_path, tmp_path / "out", PrepOptions(val_ratio=0.0, token_stats=False))
    rejects = [json.loads(x) for x in (tmp_path / "out" / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert (m["train"], m["rejected"]) == (1, 2)
    assert [(r["line"], r["reason"]) for r in rejects] == [(3, "messages[1] (user) content is empty"), (4, "invalid UTF-8")]

    arr = tmp_path / "f.json"
    arr.write_text('[\n  {"Question": "q1", "Complex_CoT": "c", "Response": "r"},\n  {"Question": "q2", "Response": "r"}\n]\n',
                   encoding="utf-8")
    m = prep("fortune", arr, tmp_path / "out2", PrepOptions(val_ratio=0.0, token_stats=False))
    (rej,) = [json.loads(x) for x in (tmp_path / "out2" / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert (m["train"], rej["line"], rej["reason"]) == (1, 3, "missing field 'Complex_CoT'")


def test_digest_set_finds_duplicates_across_growth():
    import random

    from datasets_prep.digestset import DigestSet

    rng = random.Random(0)
    keys = [rng.getrandbits(64) | 1 for _ in range(20_000)]
    seen = DigestSet(bits=4)
    assert all(seen.add(k) for k in keys)  # grows from 16 slots through many resizes
    assert len(seen) == len(keys)
    assert not any(seen.add(k) for k in keys[::7])
    assert len(seen) == len(keys)
    colliding = [(1 << 40) * i + 5 for i in range(1, 50)]  # same low bits: one probe chain
    assert all(seen.add(k) for k in colliding) and not any(seen.add(k) for k in colliding)


def test_json_array_invalid_utf8_element_rejected_and_broken_array_is_one_line_error(tmp_path):
    from swiftkit.core.errors import SwiftkitError

    arr = tmp_path / "f.json"
    arr.write_bytes(b'\xef\xbb\xbf[\r\n {"Question": "q1", "Complex_CoT": "c", "Response": "r"},\r\n'
                    b' {"Question": "\xff", "Complex_CoT": "c", "Response": "r"},\r\n'
                    b' {"Question": "q3", "Complex_CoT": "c", "Response": "r"}\r\n]\r\n')
    m = prep("fortune", arr, tmp_path / "out", PrepOptions(val_ratio=0.0, token_stats=False))
    (rej,) = [json.loads(x) for x in (tmp_path / "out" / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert (m["train"], rej["line"], rej["reason"]) == (2, 3, "invalid UTF-8")
    arr.write_text('[{"Question": "q1", "Complex_CoT": "c", "Response": "r"},\n {"Question": "q2", ]', encoding="utf-8")
    with pytest.raises(SwiftkitError, match=r"^f.json:2: invalid JSON array") as err:
        prep("fortune", arr, tmp_path / "out2", PrepOptions(val_ratio=0.0, token_stats=False))
    assert "\n" not in str(err.value)
