"""General data mixed in at a ratio (recipe ``data.mix``): the plan's exact ``FILE#N`` counts, what ms-swift's own
loader then gives, the plan's printed shares, the run directory's record, and the recipe rules."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from datasets_prep.options import PrepOptions
from datasets_prep.pipeline import prep
from datasets_prep.samples_dir import SAMPLES_DIR
from swiftkit.cli import main as cli_main
from swiftkit.core.errors import SwiftkitError
from swiftkit.run.rundir import read_run_info
from swiftkit.train import launch
from swiftkit.train.mixing import MS_SWIFT_DATA_SEED, mix_counts
from swiftkit.train.recipes import RecipeError, load_recipe
from tests.helpers import SYSTEM, record, write_jsonl

BASE_ROWS = 70
MIX = "data.mix=[{file: data/general/train.jsonl, share: 0.3}]"


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """70 persona rows, the bundled general-chat sample through prep (17 train rows), a model folder with a config."""
    write_jsonl(tmp_path / "data" / "muice" / "train.jsonl",
                [record(SYSTEM, f"问题{i}", f"沐雪的回答{i}") for i in range(BASE_ROWS)])
    (tmp_path / "data" / "muice" / "manifest.json").write_text(json.dumps({"source": "muice", "train": BASE_ROWS}))
    prep("general", SAMPLES_DIR / "general", tmp_path / "data" / "general", PrepOptions(token_stats=False,
                                                                                      histogram=False))
    model = tmp_path / "models" / "tiny-qwen2"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": 2048}))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _overrides(*extra: str) -> list[str]:
    return ["data.train=[data/muice/train.jsonl]", "data.val=[]", MIX, *extra]


def _general_rows(workspace: Path) -> int:
    return sum(1 for line in (workspace / "data" / "general" / "train.jsonl").read_text().splitlines() if line)


def test_a_30_percent_share_plans_exact_counts(workspace, capsys):
    assert _general_rows(workspace) == 17  # fewer than the 30 wanted: one whole copy plus 13 drawn
    planned = launch.plan_run("smoke_tiny", overrides=_overrides())
    argv = planned.plan.argv
    i = argv.index("--dataset")
    general = str(workspace / "data" / "general" / "train.jsonl")
    # 70 own rows are 70 % of 100: the general file gives 30, as ms-swift's own FILE#N
    assert argv[i + 1:i + 3] == [str(workspace / "data" / "muice" / "train.jsonl"), f"{general}#30"]
    assert argv[i + 3].startswith("--")
    mix = planned.mixture
    assert mix is not None and [p.rows for p in mix.parts] == [70, 30] and mix.total == 100
    assert mix.parts[1].repeats == (1, 13) and mix.data_seed == MS_SWIFT_DATA_SEED

    assert cli_main(["plan", "smoke_tiny", *[a for o in _overrides() for a in ("--set", o)]]) == 0
    out = capsys.readouterr().out
    assert "# data mix: 100 rows per epoch" in out and "data_seed 42" in out
    assert "70 rows   70.0%  (all 70)" in out
    assert f"{general}#30       30 rows   30.0%  (every row 1 times + 13 drawn without replacement, target 30.0%)" \
        in out


def test_counts_follow_the_share_and_the_base_rows():
    # round(s x B / (1 - S)): each file makes its share of the whole; two files share the rest
    assert mix_counts(70, [0.3]) == [30]
    assert mix_counts(23, [0.3]) == [10]  # 10 / 33 = 30.3 %: the nearest whole row
    assert mix_counts(60, [0.2, 0.2]) == [20, 20]


@pytest.mark.slow
def test_ms_swift_loads_exactly_the_planned_rows(workspace):
    """ms-swift's own loader, on the plan's --dataset values and data seed, gives the counts the plan printed."""
    from swift.llm import load_dataset

    planned = launch.plan_run("smoke_tiny", overrides=_overrides("data.mix.0.share=0.125"))
    mix = planned.mixture
    assert mix is not None and [p.rows for p in mix.parts] == [70, 10]  # 10 of 17: drawn without replacement
    dataset, _ = load_dataset(mix.datasets, split_dataset_ratio=0.0, seed=mix.data_seed, strict=False,
                              load_from_cache_file=False)
    users = [row["messages"][1]["content"] for row in dataset]
    general = [json.loads(x)["messages"][1]["content"]
               for x in (workspace / "data" / "general" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(users) == 80
    assert sum(u.startswith("问题") for u in users) == 70
    drawn = [u for u in users if u in general]
    assert len(drawn) == 10 and len(set(drawn)) == 10  # no row twice


def test_the_run_directory_records_the_mix(workspace):
    prepared = launch.prepare("smoke_tiny", overrides=_overrides(), gpu_count=0)
    launch.record_run(prepared)
    info = read_run_info(prepared.run_dir)
    general = str(workspace / "data" / "general" / "train.jsonl")
    assert [(m["entry"], m["rows"], m["share"], m["role"]) for m in info.data_mix] == [
        (str(workspace / "data" / "muice" / "train.jsonl"), 70, 0.7, "base"), (f"{general}#30", 30, 0.3, "mix")]
    assert info.data_mix[1]["target"] == 0.3 and info.data_mix[1]["available"] == 17
    assert general in info.train_files
    manifest = json.loads((prepared.run_dir / "data" / "general.manifest.json").read_text(encoding="utf-8"))
    assert manifest["source"] == "general" and manifest["train"] == 17


def test_a_run_without_a_mix_records_none(workspace):
    prepared = launch.prepare("smoke_tiny", overrides=["data.train=[data/muice/train.jsonl]", "data.val=[]"],
                              gpu_count=0)
    assert prepared.mixture is None
    launch.record_run(prepared)
    assert read_run_info(prepared.run_dir).data_mix == []


def test_recipe_rules(workspace):
    with pytest.raises(RecipeError) as err:
        load_recipe("smoke_tiny", ["data.mix=[{file: a.jsonl, share: 0.6}, {file: b.jsonl#5, share: 0.5}]"])
    text = str(err.value)
    assert "data.mix: the shares add up to 1.1" in text and "data.mix.1.file: b.jsonl#5: no #N here" in text
    with pytest.raises(RecipeError, match=r"share: Input should be less than 1"):
        load_recipe("smoke_tiny", ["data.mix=[{file: a.jsonl, share: 1}]"])
    with pytest.raises(SwiftkitError, match=r"data/none.jsonl: no such file \(run `make prep`\?\)"):
        launch.plan_run("smoke_tiny", overrides=_overrides("data.mix.0.file=data/none.jsonl"))
    with pytest.raises(SwiftkitError, match=r"data.mix.0.share: 0.001 of 70 base rows rounds to 0 rows"):
        launch.plan_run("smoke_tiny", overrides=_overrides("data.mix.0.share=0.001"))


def test_the_time_estimate_counts_the_mixed_rows(tmp_path, monkeypatch):
    """plan's steps and time per epoch (swiftkit.train.sizing) count each mix file at its share, at its own median."""
    from swiftkit.train.sizing import data_stats

    monkeypatch.chdir(tmp_path)
    for source, train, median in (("muice", 1000, 500), ("general", 17, 100)):
        (tmp_path / "data" / source).mkdir(parents=True)
        (tmp_path / "data" / source / "manifest.json").write_text(json.dumps(
            {"train": train, "token_lengths": {"median": median}}))
    stats, _ = data_stats(load_recipe("muice_full", ["data.mix=[{file: data/general/train.jsonl, share: 0.2}]"]))
    assert stats is not None and stats.records == 1250  # 1000 own rows are 80 %: 250 general rows
    assert stats.tokens_per_sample == (1000 * 500 + 250 * 100) / 1250


def test_the_stated_data_seed_is_ms_swifts_default():
    from swift.llm.argument.base_args.data_args import DataArguments

    assert DataArguments.__dataclass_fields__["data_seed"].default == MS_SWIFT_DATA_SEED
