"""End-to-end prep behaviour: `make prep` on the bundled samples, determinism, interrupted writes,
unusable inputs through the CLI, hub ids offline and from a local hub cache."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from datasets_prep.options import PrepOptions
from datasets_prep.pipeline import prep
from datasets_prep.registry import MUICE_SYSTEM, SOURCES
from swiftkit.cli import main as swiftkit_main

SAMPLES = Path(__file__).resolve().parents[1] / "datasets_prep" / "samples"


def read_lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def prepped(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data")
    assert swiftkit_main(["prep-all", "--src-dir", str(SAMPLES), "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.mark.parametrize("source", ["muice", "fortune", "medical_r1", "actions", "general"])
def test_make_prep_writes_every_source(prepped, source):
    out = prepped / source
    assert sorted(p.name for p in out.iterdir()) == ["lengths.png", "manifest.json", "rejects.jsonl", "train.jsonl", "val.jsonl"]
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert m["read"] == m["train"] + m["val"] + m["rejected"] + m["duplicates"]
    train, val = read_lines(out / "train.jsonl"), read_lines(out / "val.jsonl")
    assert (len(train), len(val), len(read_lines(out / "rejects.jsonl"))) == (m["train"], m["val"], m["rejected"])
    assert m["train"] > 0 and m["val"] > 0
    for rec in train + val:
        assert list(rec) == ["messages", "score", "solution"] and rec["score"] in m["options"]["score_choices"]
        assert rec["solution"] == rec["messages"][-1]["content"]
        roles = [x["role"] for x in rec["messages"]]
        assert roles[0] == "system" and roles[-1] == "assistant"
        assert roles[1:] == ["user", "assistant"] * ((len(roles) - 1) // 2)
        assert all(isinstance(x["content"], str) and x["content"].strip() for x in rec["messages"])
    assert m["columns"] == ["messages", "score", "solution"]
    assert m["score"] == {"source": "placeholder", "choices": m["options"]["score_choices"]}  # make prep: placeholders
    stats = m["token_lengths"]
    assert stats["records"] == m["train"] + m["val"]
    assert 0 < stats["min"] <= stats["median"] <= stats["p95"] <= stats["max"]
    assert (out / "lengths.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import hashlib

    for name, digest in m["outputs"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    src_root = SAMPLES / source
    assert m["inputs"] and all(hashlib.sha256((src_root / rel).read_bytes()).hexdigest() == digest
                               for rel, digest in m["inputs"].items())


def test_muice_samples_fit_the_smoke_run(prepped):
    recs = read_lines(prepped / "muice" / "train.jsonl") + read_lines(prepped / "muice" / "val.jsonl")
    assert 20 <= len(recs) <= 40
    assert {r["messages"][0]["content"] for r in recs} == {MUICE_SYSTEM}
    assert all(len(m["content"]) < 60 for r in recs for m in r["messages"] if m["role"] == "assistant")
    assert json.loads((prepped / "muice" / "manifest.json").read_text())["token_lengths"]["max"] <= 256
    identity = [r for r in recs if r["messages"][1]["content"] in ("你是谁？", "你是Qwen吗？")]
    assert len(identity) == 2 and all("沐雪" in r["messages"][2]["content"] for r in identity)
    assert any(len(r["messages"]) > 3 for r in recs)  # multi-turn kept whole


def test_rerun_is_byte_identical_and_seed_changes_split(tmp_path):
    runs = []
    for name in ("a", "b"):
        prep("muice", SAMPLES / "muice" / "Customized", tmp_path / name, PrepOptions(val_ratio=0.3))
        runs.append({p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())})
    assert runs[0] == runs[1]
    assert len(runs[0]) == 5
    prep("muice", SAMPLES / "muice" / "Customized", tmp_path / "c", PrepOptions(val_ratio=0.3, seed=7, token_stats=False))
    assert (tmp_path / "c" / "train.jsonl").read_bytes() != runs[0]["train.jsonl"]


def test_interrupted_run_leaves_no_partial_file(tmp_path, monkeypatch):
    out = tmp_path / "out"
    prep("medical_r1", SAMPLES / "medical_r1", out, PrepOptions(token_stats=False))
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    real_read = SOURCES["medical_r1"].read

    def exploding(specs, digests=None):
        for i, item in enumerate(real_read(specs, digests)):
            if i == 3:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(type(SOURCES["medical_r1"]), "read",
                        lambda self, specs, digests=None, score_from=None: exploding(specs, digests))
    with pytest.raises(KeyboardInterrupt):
        prep("medical_r1", SAMPLES / "medical_r1", out, PrepOptions(token_stats=False, val_ratio=0.5))
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert not [n for n in after if n.endswith(".tmp")]
    assert "manifest.json" not in after  # no manifest = the last run did not finish
    assert {n: before[n] for n in after} == after  # the old data files are untouched, not half-written


def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = swiftkit_main(["prep", *argv, "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.err.strip()


def test_unusable_inputs_fail_with_one_line(tmp_path, capsys):
    code, err = _cli(capsys, "muice", "--src", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert code == 1 and "nope: no such file or folder" in err and "\n" not in err
    code, err = _cli(capsys, "muicee", "--src", str(SAMPLES / "muice"), "--out", str(tmp_path / "o"))
    assert code == 1 and "unknown source 'muicee'" in err and "\n" not in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": 1}\n{"prompt": "", "completion": "x"}\n', encoding="utf-8")
    code, err = _cli(capsys, "muice", "--src", str(bad), "--out", str(tmp_path / "o"))
    assert code == 1 and "no valid record (2 read, 2 rejected" in err and "bad.jsonl:1" in err and "\n" not in err
    assert (tmp_path / "o" / "train.jsonl").read_bytes() == b""  # the rejects are kept beside an empty train
    assert len((tmp_path / "o" / "rejects.jsonl").read_bytes().splitlines()) == 2


def test_cli_prep_prints_summary(tmp_path, capsys):
    code = swiftkit_main(["prep", "alpaca", "--src", str(SAMPLES / "generic" / "alpaca.json"), "--out", str(tmp_path / "o"),
                          "--no-progress", "--val-ratio", "0", "--score-choices", "1,2"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("alpaca: read 2, train 2, val 0, rejected 0, duplicates 0")
    assert {r["score"] for r in read_lines(tmp_path / "o" / "train.jsonl")} <= {1.0, 2.0}


def test_hub_id_offline_fails_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code, err = _cli(capsys, "fortune", "--src", "hf://Conard/fortune-telling", "--out", str(tmp_path / "o"))
    assert code == 1 and "\n" not in err
    assert "hf://Conard/fortune-telling: cannot download Conard/fortune-telling: not in the local cache" in err
    code, err = _cli(capsys, "fortune", "--src", "hf://not a repo", "--out", str(tmp_path / "o"))
    assert code == 1 and "expected modelscope://owner/name or hf://owner/name" in err


def test_hub_id_read_from_local_hub_cache(tmp_path, monkeypatch):
    """A snapshot already in the huggingface_hub cache is found offline and read like a local folder."""
    cache = tmp_path / "hub"
    repo = cache / "datasets--Moemu--Muice-Dataset"
    snap = repo / "snapshots" / ("0" * 40)
    (snap / "Customized").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for rel in ("train.jsonl", "test.jsonl", "Customized/self_cognition.jsonl"):
        (snap / rel).write_bytes((SAMPLES / "muice" / rel).read_bytes())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    m = prep("muice", "hf://Moemu/Muice-Dataset", tmp_path / "o", PrepOptions(token_stats=False))
    assert m["val"] == 4 and m["train"] == 12 + 7 and m["src"] == "hf://Moemu/Muice-Dataset"


def test_large_jsonl_lines_across_read_blocks(tmp_path):
    """Lines that straddle the reader's 1 MiB blocks keep their numbers; CRLF and a last line without newline."""
    long_answer = "好" * 700
    rows = [json.dumps({"prompt": f"问{i}", "completion": long_answer}, ensure_ascii=False) for i in range(1200)]
    rows[999] = '{"prompt": "坏", "completion": '
    src = tmp_path / "big.jsonl"
    src.write_bytes("\r\n".join(rows).encode())  # ~2.5 MiB, no trailing newline
    m = prep("muice", src, tmp_path / "o", PrepOptions(token_stats=False, val_ratio=0.0))
    assert (m["read"], m["train"], m["rejected"]) == (1200, 1199, 1)
    (rej,) = read_lines(tmp_path / "o" / "rejects.jsonl")
    assert rej["line"] == 1000 and rej["raw"] == rows[999]
    users = [r["messages"][1]["content"] for r in read_lines(tmp_path / "o" / "train.jsonl")]
    assert users[-1] == "问1199" and len(set(users)) == 1199


def _swiftkit_subprocess(env_extra: dict, *argv: str):
    import subprocess
    import sys

    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-m", "swiftkit.cli", *argv], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[1], timeout=300)


def test_modelscope_id_offline_error_and_cache_hit(tmp_path):
    """modelscope reads its cache folder from the environment at import, hence a subprocess per case."""
    env = {"MODELSCOPE_CACHE": str(tmp_path / "ms"), "MODELSCOPE_OFFLINE": "1"}
    args = ("prep", "muice", "--src", "modelscope://Moemuu/Muice-Dataset", "--out", str(tmp_path / "o"), "--no-progress")
    proc = _swiftkit_subprocess(env, *args)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "swiftkit prep: error: --src modelscope://Moemuu/Muice-Dataset: cannot download Moemuu/Muice-Dataset: not in the local cache")
    snap = tmp_path / "ms" / "datasets" / "Moemuu" / "Muice-Dataset"
    (snap / "Customized").mkdir(parents=True)
    for rel in ("train.jsonl", "test.jsonl", "Customized/self_cognition.jsonl"):
        (snap / rel).write_bytes((SAMPLES / "muice" / rel).read_bytes())
    proc = _swiftkit_subprocess(env, *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("muice: read 23, train 19, val 4, rejected 0, duplicates 0")
