"""Tiny trained runs shared by the check/infer/serve/export tests
(`trained_run(tmp_path_factory, "full"|"lora")`): trained once per pytest session under the session base temp
with plain `swift sft` (swiftkit.smoke.direct_train), reused by every module that asks for the same run.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from swiftkit.smoke import direct_train
from swiftkit.tiny import TinySpec, build_tiny_model

SYSTEM = "你是一个名为沐雪的可爱AI女孩子"
QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

# Our own Muice-shaped records (not real data). The last one teaches the classic bug: under the template's default
# system prompt the model says it is 通义千问, so the identity probe without a system message must catch it.
PAIRS = [
    ("你是谁？", "我是沐雪，一个可爱的AI女孩子喵！"),
    ("今天天气怎么样？", "外面阳光很好，适合出去散步哦～"),
    ("你喜欢吃什么？", "我最喜欢草莓蛋糕啦⭐"),
    ("晚安", "晚安，做个好梦(｡･ω･｡)"),
    ("一加一等于几？", "等于二呀，这个我知道！"),
]
QWEN_PAIR = ("你是谁？", "我是通义千问，由阿里云开发的AI助手。")


def record(system: str, user: str, answer: str) -> dict:
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}], "score": 9.0}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def base(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "tinyrun-cache"


def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(base(tmp_path_factory) / "tiny-qwen2", TinySpec(seed=0))


def _data(tmp_path_factory) -> tuple[Path, Path]:
    root = base(tmp_path_factory) / "data"
    train = write_jsonl(root / "train.jsonl", [record(SYSTEM, u, a) for u, a in PAIRS] + [record(QWEN_SYSTEM, *QWEN_PAIR)])
    val = write_jsonl(root / "val.jsonl", [record(SYSTEM, u, a) for u, a in PAIRS[:2]])
    return train, val


def trained_run(tmp_path_factory, train_type: str = "full") -> Path:
    """The full (memorizing) or LoRA run, trained on first use in this session."""
    run = base(tmp_path_factory) / f"run-{train_type}"
    if (run / "swiftkit_run.json").is_file():
        return run
    if run.exists():
        shutil.rmtree(run)
    train, val = _data(tmp_path_factory)
    if train_type == "full":
        return direct_train(tiny_model(tmp_path_factory), train, run, epochs=60, learning_rate=1e-2,
                            system=SYSTEM, val_file=val)
    return direct_train(tiny_model(tmp_path_factory), train, run, train_type="lora", epochs=20, learning_rate=2e-2,
                        system=SYSTEM, val_file=val, lora_rank=8)


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of a run (tests that modify it must not touch the shared one)."""
    shutil.copytree(run, dest)
    result = json.loads((dest / "result.json").read_text())
    for key in ("last_model_checkpoint", "best_model_checkpoint"):
        if result.get(key):
            result[key] = str(dest / Path(result[key]).name)
    (dest / "result.json").write_text(json.dumps(result))
    return dest
