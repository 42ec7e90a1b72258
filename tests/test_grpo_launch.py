"""GRPO through the launcher: the worker's entry point, init_from, and the preflight checks that fail in seconds
instead of after the model has loaded (batch rules, packages, the `solution` column, each reward tried once)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from swiftkit.cli import main as cli_main
from swiftkit.run.checkpoint import mark_complete
from swiftkit.train import launch
from swiftkit.train.grpo.preflight import batch_checks
from swiftkit.train.plan import Cluster, Plan, plan
from swiftkit.train.recipes import load_recipe

ACTIONS_SYSTEM = ("回答用户的问题，根据需要可在下列动作中选择一个或多个执行，注意动作执行和问题回答的先后顺序。\n\n"
                  "可选动作: \n- 拿起-雨伞\n- 挥手-再见\n- 打开-台灯\n")
ACTIONS = [("要下雨了", "带上伞吧。\n<&拿起-雨伞&>\n路上小心。"), ("我走啦", "<&挥手-再见&>\n拜拜，明天见！"),
           ("好暗啊", "我来开灯。\n<&打开-台灯&>\n这样亮多了。"), ("讲个笑话", "从前有只小熊，它一直在发呆。")]
MEDICAL_SYSTEM = "你是一个医学专家，你需要根据用户的问题，给出带有思考的回答。"
MEDICAL = [("嗓子疼怎么办？", "<think>\n多为咽炎，注意补水休息。\n</think>\n\n多喝温水、少说话，持续三天以上请就医。"),
           ("脚踝扭了怎么办？", "<think>\n急性期先冷敷制动。\n</think>\n\n先冰敷并抬高患肢，48小时后再热敷。")]


def _rows(system: str, pairs: list[tuple[str, str]], *, solution: bool = True) -> str:
    rows = []
    for i, (q, a) in enumerate(pairs):
        row = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": q},
                            {"role": "assistant", "content": a}], "score": 8.0 + i % 3}
        if solution:
            row["solution"] = a
        rows.append(json.dumps(row, ensure_ascii=False))
    return "\n".join(rows) + "\n"


def _write(root: Path, *, solution: bool = True) -> None:
    for source, system, pairs in (("actions", ACTIONS_SYSTEM, ACTIONS), ("medical_r1", MEDICAL_SYSTEM, MEDICAL)):
        folder = root / "data" / source
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "train.jsonl").write_text(_rows(system, pairs, solution=solution), encoding="utf-8")


def _fake_run(root: Path, name: str, *, adapter: bool = False) -> Path:
    """A finished run directory as the launcher leaves it (RunInfo, one checkpoint); weights are not needed here."""
    run = root / "runs" / name / "v1"
    ckpt = run / "checkpoint-3"
    ckpt.mkdir(parents=True)
    (run / "swiftkit_run.json").write_text(json.dumps({"recipe": name}))
    (ckpt / ("adapter_config.json" if adapter else "config.json")).write_text("{}")
    mark_complete(ckpt)  # a finished save, as the worker marks it
    return ckpt


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    _write(tmp_path)
    model = tmp_path / "models" / "tiny-qwen2"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": 2048}))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _checks(workspace: Path, recipe: str = "smoke_grpo", overrides: tuple[str, ...] = ()) -> dict[str, tuple[bool, str]]:
    prep = launch.prepare(recipe, overrides=list(overrides))
    return {c.name: (c.ok, c.message) for c in prep.preflight.checks}


def test_worker_runs_rlhf_main_for_grpo():
    from swiftkit.train import worker

    assert worker.entry_point("grpo").__name__ == "rlhf_main"
    assert worker.entry_point("sft").__name__ == "sft_main"


def test_init_from_must_name_a_trained_run(workspace):
    checks = _checks(workspace)
    assert checks["init_from"][0] is False and "no run directory or checkpoint there" in checks["init_from"][1]
    ckpt = _fake_run(workspace, "smoke_grpo_sft")
    prep = launch.prepare("smoke_grpo")
    assert prep.init_checkpoint == ckpt.resolve()
    checks = {c.name: c for c in prep.preflight.checks}
    assert checks["init_from"].ok and "(full weights)" in checks["init_from"].message
    argv = prep.plan.argv
    assert argv[argv.index("--model") + 1] == str(ckpt.resolve())  # full weights: the checkpoint is the model
    assert prep.preflight.ok, prep.preflight.lines()


def test_a_lora_adapter_cannot_start_full_training(workspace):
    _fake_run(workspace, "smoke_grpo_sft", adapter=True)
    ok, message = _checks(workspace)["init_from"]
    assert not ok and "is a LoRA adapter: merge it first" in message


def test_every_reward_is_tried_on_reference_answers(workspace):
    _fake_run(workspace, "smoke_grpo_sft")
    checks = _checks(workspace)
    for name in ("swiftkit_action", "swiftkit_think", "swiftkit_reference", "swiftkit_repetition"):
        ok, message = checks[f"reward {name}"]
        assert ok, message
    # the reference answer is the best action and the right form: the trial shows it scoring the maximum
    assert "reference answers score [1.0, 1.0, 1.0, 1.0]" in checks["reward swiftkit_action"][1]
    assert "(2/6 records)" in checks["reward swiftkit_think"][1]  # only the medical records have <think>


def test_a_broken_reward_fails_preflight(workspace, monkeypatch):
    from swiftkit.train.grpo import rewards

    _fake_run(workspace, "smoke_grpo_sft")

    def broken(self, completions, **kwargs):
        raise KeyError("solution_text")

    def short(self, completions, **kwargs):
        return [0.5]

    monkeypatch.setattr(rewards.REWARDS["swiftkit_think"], "__call__", broken)
    monkeypatch.setattr(rewards.REWARDS["swiftkit_reference"], "__call__", short)
    checks = _checks(workspace)
    assert checks["reward swiftkit_think"] == (False, "raised KeyError: 'solution_text'")
    assert checks["reward swiftkit_reference"] == (False, "returned list of length 1 for 6 completions")
    with pytest.raises(Exception, match="reward swiftkit_think: raised KeyError"):
        launch.train("smoke_grpo")


def test_data_without_solution_is_refused(workspace):
    _write(workspace, solution=False)
    _fake_run(workspace, "smoke_grpo_sft")
    ok, message = _checks(workspace)["data solution"]
    assert not ok and "6/6 sampled records of train.jsonl lack `solution`" in message and "make prep" in message


def test_missing_msgspec_and_old_trl_fail(workspace, monkeypatch):
    import swiftkit.train.grpo.preflight as pg

    versions = {"msgspec": None, "trl": "0.19.1"}
    monkeypatch.setattr(pg, "installed", lambda dist: versions.get(dist, "1.0"))
    _fake_run(workspace, "smoke_grpo_sft")
    checks = _checks(workspace)
    assert checks["msgspec"] == (False, "ms-swift's GRPO imports msgspec; install swiftkit's dependencies (make install)")
    assert checks["trl"] == (False, "0.19.1 (GRPO needs >=0.20,<0.25)")


def test_batch_rules_count_completions():
    g = load_recipe("smoke_grpo").grpo
    good = plan(load_recipe("smoke_grpo"), Cluster(2))
    assert all(c.ok for c in batch_checks(g, good, Cluster(2)))
    bad = Plan(env={}, argv=["swift", "rlhf", "--eval_strategy", "steps", "--per_device_eval_batch_size", "1"],
               global_batch_size=6, per_device_batch_size=3, gradient_accumulation_steps=1, world_size=2,
               output_dir="o", method="grpo")
    step, evaluation = batch_checks(g, bad, Cluster(2))
    assert not step.ok and "6 completions per step, num_generations 4" in step.message
    assert not evaluation.ok and "2 completions per eval batch" in evaluation.message


def test_grpo_plan_cli_imports_no_torch(tmp_path):
    code = (
        "import sys, json\n"
        "from swiftkit.cli import main\n"
        "rc = main(['plan', 'actions_grpo', '--gpus', '8', '--json', '--runs-root', sys.argv[1]])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'swift', 'transformers', 'deepspeed'))\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         check=True).stdout
    *plan_lines, last = out.strip().splitlines()
    assert json.loads(last) == {"rc": 0, "heavy": []}
    argv = json.loads("\n".join(plan_lines))["argv"]
    assert argv[:4] == ["swift", "rlhf", "--rlhf_type", "grpo"]


def test_plan_says_where_grpo_starts(workspace, capsys):
    assert cli_main(["plan", "smoke_grpo"]) == 0
    out = capsys.readouterr().out
    assert "# global batch 8 completions = 2 process(es) x per-device 2 x accumulation 2 = 2 prompts x 4 " \
           "generations per step" in out
    assert "no checkpoint there yet (train that run first)" in out
    ckpt = _fake_run(workspace, "smoke_grpo_sft")
    assert cli_main(["plan", "smoke_grpo"]) == 0
    assert f"# starts from {ckpt.resolve()}" in capsys.readouterr().out
