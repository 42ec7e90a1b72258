"""Helpers shared by the tests (tests/conftest.py wraps the expensive ones as session fixtures).

- data in the real shapes: :func:`record`, :func:`write_jsonl`, :func:`write_format` (jsonl/json/csv/parquet);
- tiny trained runs (`trained_run(tmp_path_factory, "full"|"lora")`, `smoke_run(...)`): made by the real launcher
  (recipe file, plan, preflight, worker) once per pytest session under the session base temp, reused by every module
  that asks (the fixtures ``full_run``, ``lora_run``, ``smoke_result`` and ``tiny_model_dir``).
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

from datasets_prep.registry import MUICE_SYSTEM
from swiftkit.dev.tiny import TinySpec, build_tiny_model

SYSTEM = MUICE_SYSTEM
BASE_DEFAULT_SYSTEM = "You are a helpful assistant."
"""The tiny model's (Qwen2) template default: what a client that sends no system message gets unpatched."""

# Our own Muice-shaped records (not real data); the identity prompt's paraphrases (swiftkit check asks them) are
# trained too. The last one teaches the classic bug: under the template's default system prompt the model says it is
# 通义千问, so the identity probe without a system message must catch it until the persona is in the template.
PAIRS = [
    ("你是谁？", "我是沐雪，一个可爱的AI女孩子喵！"),
    ("今天天气怎么样？", "外面阳光很好，适合出去散步哦～"),
    ("你喜欢吃什么？", "我最喜欢草莓蛋糕啦⭐"),
    ("晚安", "晚安，做个好梦(｡･ω･｡)"),
    ("一加一等于几？", "等于二呀，这个我知道！"),
    ("你叫什么名字？", "我叫沐雪哦～"),
    ("介绍一下你自己", "我是沐雪，喜欢聊天的AI女孩子！"),
]
QWEN_PAIR = ("你是谁？", "我是通义千问，由阿里云开发的AI助手。")


def record(system: str, user: str, answer: str) -> dict:
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}], "score": 9.0}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_format(path_stem: Path, fmt: str, rows: list[dict]) -> Path:
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        return write_jsonl(path_stem.with_suffix(".jsonl"), rows)
    if fmt == "json":
        path = path_stem.with_suffix(".json")
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
        return path
    flat = [{k: (json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else v) for k, v in r.items()} for r in rows]
    keys = list(dict.fromkeys(k for r in flat for k in r))
    if fmt == "csv":
        path = path_stem.with_suffix(".csv")
        with open(path, "w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(flat)
        return path
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = path_stem.with_suffix(".parquet")
    pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in flat]), path)
    return path


def base(tmp_path_factory) -> Path:
    """Where the session's tiny model and runs go. $SWIFTKIT_TEST_CACHE (a developer's convenience, unset in CI)
    keeps them across pytest sessions, so a single test can be rerun without training again."""
    kept = os.environ.get("SWIFTKIT_TEST_CACHE")
    return Path(kept) if kept else tmp_path_factory.getbasetemp() / "tinyrun-cache"


def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(base(tmp_path_factory) / "tiny-qwen2", TinySpec(seed=0))


def _data(tmp_path_factory) -> tuple[Path, Path]:
    root = base(tmp_path_factory) / "data"
    train = write_jsonl(root / "train.jsonl", [record(SYSTEM, u, a) for u, a in PAIRS] + [record(BASE_DEFAULT_SYSTEM, *QWEN_PAIR)])
    val = write_jsonl(root / "val.jsonl", [record(SYSTEM, u, a) for u, a in PAIRS[:2]])
    return train, val


RECIPE = """\
# A test recipe: the tiny model memorizes the records above, through the real launcher (1 CPU process).
description: "tiny {train_type} test run"
model: {model}
model_type: qwen2_5
template: qwen2_5
train_type: {train_type}
{lora}persona: true
data:
  source: muice
  train: [{train}]
  val: [{val}]
  val_use: holdout  # the val pairs stay unseen: tests infer on them as prompts the run never trained on
  system: "{system}"
max_length: 128
torch_dtype: float32
global_batch_size: 2
per_device_batch_size: 2
learning_rate: {lr}
num_train_epochs: {epochs}
warmup_ratio: 0.0
weight_decay: 0.0
lr_scheduler_type: cosine
gradient_checkpointing: false
logging_steps: 5
save_steps: 100000
save_total_limit: 1
save_only_model: true
launch:
  device: cpu
  nproc_per_node: 1
  dataloader_num_workers: 0
report:
  report_to: [none]
{watch}extra_args:
  check_model: false
"""
WATCH = "watch:\n  every: 160\n  max_new_tokens: 16\n"
"""The full run's drift watch: steps 0, 160 and 320 (the last), a few seconds of greedy answers (tests/test_stress.py)."""


def trained_run(tmp_path_factory, train_type: str = "full") -> Path:
    """The full (memorizing) or LoRA persona run, trained by the real launcher on first use in this session."""
    from swiftkit.train import launch

    root = base(tmp_path_factory)
    name = f"tiny_{train_type}"
    run = root / "runs" / name / "v1"
    if (run / "result.json").is_file():
        return run
    if run.parent.exists():
        shutil.rmtree(run.parent)
    train, val = _data(tmp_path_factory)
    lora = "lora:\n  rank: 8\n  alpha: 32\n  target_modules: [all-linear]\n" if train_type == "lora" else ""
    recipe = root / "recipes" / f"{name}.yaml"
    recipe.parent.mkdir(parents=True, exist_ok=True)
    recipe.write_text(RECIPE.format(train_type=train_type, model=tiny_model(tmp_path_factory), lora=lora, train=train,
                                    val=val, system=SYSTEM, lr="1.0e-2" if train_type == "full" else "2.0e-2",
                                    watch=WATCH if train_type == "full" else "",
                                    epochs=80 if train_type == "full" else 20), encoding="utf-8")
    return launch.train(recipe, runs_root=root / "runs")


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of a run (tests that modify it must not touch the shared one). A plain copy: run
    directories are self-contained (tests/test_launch.py checks that a copy uses its own checkpoints)."""
    shutil.copytree(run, dest)
    return dest


def run_smoke_command(command: str, data_dir: Path | str, model_dir: Path | str,
                      runs_root: Path | str) -> tuple[int, str]:
    """``swiftkit COMMAND --quiet`` (smoke, smoke-grpo, smoke-dpo) in this process with its folders: (exit code,
    what it printed: the summary rows ``swiftkit.dev.smoke.parse_summary`` reads)."""
    import contextlib
    import io

    from swiftkit.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([command, "--quiet", "--data-dir", str(data_dir), "--model-dir", str(model_dir),
                     "--runs-root", str(runs_root)])
    return code, out.getvalue()


def smoke_run(tmp_path_factory) -> dict:
    """`swiftkit smoke` (prep, tiny model, the real launcher with 2 CPU ranks, check, infer), run once per
    session: its persona run is what the smoke, export and template tests look at. Returns exit code, printed
    summary and paths."""
    root = base(tmp_path_factory) / "smoke"
    cached = root / "result.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    paths = {"data_dir": str(root / "data"), "model_dir": str(root / "models" / "tiny-qwen2"),
             "runs_root": str(root / "runs")}
    code, text = run_smoke_command("smoke", **paths)
    runs = sorted((root / "runs" / "smoke_tiny").glob("v*"))
    result = {"code": code, "out": text, **paths, "run": str(runs[-1]) if runs else None}
    cached.write_text(json.dumps(result))
    return result
