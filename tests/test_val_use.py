"""No silent data waste: the rows prep held out are evaluated, trained on, or kept unseen for `swiftkit eval` — and
preflight says which, in rows. A recipe that does not evaluate never passes --val_dataset (ms-swift would load the
files for nothing and the rows would be lost without a word)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from swiftkit.train import launch
from swiftkit.train.plan import Cluster, plan
from swiftkit.train.preflight import count_rows, val_use_check
from swiftkit.train.recipes import RecipeError, list_recipes, load_recipe


def _flag(argv: list[str], name: str) -> list[str]:
    """The values after ``--name`` (empty when absent)."""
    if name not in argv:
        return []
    rest = argv[argv.index(name) + 1:]
    return rest[:next((i for i, t in enumerate(rest) if t.startswith("--")), len(rest))]


@pytest.mark.parametrize("name", [p.stem for p in list_recipes()])
def test_val_files_go_only_where_the_recipe_uses_them(name: str):
    """--val_dataset only when the run evaluates; otherwise the val files are trained on or left out entirely."""
    rec = load_recipe(name)
    argv = plan(rec, Cluster(nproc_per_node=rec.launch.nproc_per_node)).argv
    evaluates = _flag(argv, "--eval_strategy") != ["no"]
    assert bool(_flag(argv, "--val_dataset")) == evaluates, f"{name}: --val_dataset without evaluation"
    trained = _flag(argv, "--dataset")
    for f in rec.data.val:
        assert (f in trained) == (rec.val_role == "train")
        assert (f in _flag(argv, "--val_dataset")) == (rec.val_role == "eval")
    assert rec.held_out_files == ([] if rec.val_role in ("train", "none") else rec.data.val)


def test_auto_trains_on_val_when_the_recipe_does_not_evaluate():
    rec = load_recipe("actions_lora", ["data.val_use=auto"])
    assert rec.eval_steps is None and rec.val_role == "train"
    argv = plan(rec, Cluster()).argv
    assert _flag(argv, "--dataset") == ["data/actions/train.jsonl", "data/actions/val.jsonl"]
    assert "--val_dataset" not in argv and _flag(argv, "--eval_strategy") == ["no"]
    assert rec.held_out_files == []  # the run records no val files: eval must not score trained rows as unseen
    evaluating = load_recipe("actions_lora", ["data.val_use=auto", "eval_steps=5"])
    assert evaluating.val_role == "eval"
    assert _flag(plan(evaluating, Cluster()).argv, "--val_dataset") == ["data/actions/val.jsonl"]


def test_val_use_must_agree_with_eval_steps():
    with pytest.raises(RecipeError, match=r"data\.val_use: val_use train leaves nothing to evaluate on, but "
                                          r"eval_steps is 10: use val_use holdout"):
        load_recipe("muice_full", ["data.val_use=train"])
    held = load_recipe("actions_lora", ["eval_steps=5"])  # held out and evaluated: still never trained on
    assert held.data.val_use == "holdout" and held.val_role == "eval"
    assert _flag(plan(held, Cluster()).argv, "--val_dataset") == ["data/actions/val.jsonl"]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """Seed 001's size: 45 train rows and 5 val rows, a model folder with only its config."""
    folder = tmp_path / "data" / "muice"
    folder.mkdir(parents=True)
    row = {"messages": [{"role": "system", "content": "你是一个名为沐雪的可爱AI女孩子"},
                        {"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好呀"}]}
    line = json.dumps(row, ensure_ascii=False)
    (folder / "train.jsonl").write_text((line + "\n") * 45, encoding="utf-8")
    (folder / "val.jsonl").write_text((line + "\n") * 4 + line + "\n\n", encoding="utf-8")  # a blank line is no row
    model = tmp_path / "models" / "tiny-qwen2"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": 2048}))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _val_lines(prep: launch.Prepared) -> list[str]:
    return [c.line() for c in prep.preflight.checks if c.name == "data.val" and " rows " in c.message]


def test_preflight_says_in_rows_what_the_val_split_costs(workspace):
    trained = launch.prepare("smoke_tiny", overrides=["data.val_use=train"])
    assert _val_lines(trained) == [
        "ok   data.val: 5 of 50 rows (10 %) trained on with the train files: the recipe does not evaluate (no "
        "held-out rows: `swiftkit eval` needs --prompts; `--set data.val_use=holdout` keeps them unseen)"]
    assert _flag(trained.plan.argv, "--dataset") == [str(workspace / "data/muice/train.jsonl"),
                                                     str(workspace / "data/muice/val.jsonl")]
    held = launch.prepare("smoke_tiny")  # the shipped smoke keeps them for the infer/eval tests
    assert _val_lines(held) == [
        "ok   data.val: 5 of 50 rows (10 %) held out for `swiftkit eval` / `infer --val`, not trained on and not "
        "evaluated during training (`--set data.val_use=train` trains on them)"]
    assert "--val_dataset" not in held.plan.argv
    evaluated = launch.prepare("smoke_tiny", overrides=["eval_steps=7"])
    assert _val_lines(evaluated) == [
        "ok   data.val: 5 of 50 rows (10 %) evaluated every 7 steps, not trained on (`--set data.val_use=train` "
        "with no eval_steps trains on them)"]


def test_the_run_records_trained_val_rows_as_training_data(workspace):
    """`swiftkit eval` and `infer --val` read RunInfo.val_files as unseen prompts: rows trained on are not among them."""
    from swiftkit.run.rundir import read_run_info

    prep = launch.prepare("smoke_tiny", overrides=["data.val_use=train"])
    launch.record_run(prep)
    info = read_run_info(prep.run_dir)
    assert info.val_files == [] and info.train_files[-1].endswith("val.jsonl")
    prep = launch.prepare("smoke_tiny", run_dir=str(workspace / "runs" / "held"))
    launch.record_run(prep)
    assert [Path(f).name for f in read_run_info(prep.run_dir).val_files] == ["val.jsonl"]


def test_count_rows_and_sampled_entries(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    assert count_rows([str(f)]) == 2
    assert count_rows([str(f), f"{f}#7"]) == 9
    assert count_rows([str(tmp_path / "missing.jsonl")]) is None
    assert val_use_check(load_recipe("muice_full", ["data.val=[]", "eval_steps=null"])) is None
