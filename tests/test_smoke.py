"""The smoke run end to end (the CI proof that a fine-tune learns and answers), and that its learning assertions
fail on an untrained model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from swiftkit.dev import smoke
from swiftkit.run.rundir import train_losses


def test_loss_criterion():
    assert smoke.learning_verdict([12.0, 6.0, 1.0], [("q", "a", "a")]).ok
    flat = smoke.learning_verdict([12.0, 11.5, 11.0], [("q", "a", "a")])
    assert not flat.ok and "final train loss 11.0000 is not below 0.2 x the first" in flat.problems[0]
    assert not smoke.learning_verdict([3.0], [("q", "a", "a")]).ok
    assert not smoke.learning_verdict([12.0, 1.0], []).ok
    wrong = smoke.learning_verdict([12.0, 1.0], [("q", "a", "b"), ("q2", "c", "c")])
    assert not wrong.ok and (wrong.exact, wrong.probed) == (1, 2)


@pytest.fixture(scope="module")
def smoke_paths(smoke_result) -> dict:
    return {k: Path(smoke_result[k]) for k in ("data_dir", "model_dir", "runs_root")}


@pytest.mark.slow
def test_smoke_end_to_end(smoke_result, smoke_paths):
    out = smoke_result["out"]
    print(out)
    assert smoke_result["code"] == 0, out
    rows = smoke.parse_summary(out)
    assert rows["smoke"] == "PASS" and rows["learning"] == "PASS" and rows["persona"] == "PASS", out
    assert rows["greedy == trained answer"] == "3/3"
    assert rows["no system == run system"].startswith("3/3")
    run = Path(smoke_result["run"])
    report = json.loads((run / "check_report.json").read_text())
    assert report["ok"] is True
    checks = {c["name"]: c for c in report["checks"]}
    assert [checks[n]["status"] for n in ("eos", "stop_label", "template", "identity")] == ["PASS"] * 4
    assert set(checks["identity"]["data"]["answers"]) == {"run system", "no system", "base default system"}
    rows_infer = [json.loads(l) for l in (run / "infer" / "smoke.jsonl").read_text().splitlines()]
    assert len(rows_infer) == 3 and all(r["response"] == r["labels"] for r in rows_infer)
    losses = train_losses(run)
    assert len(losses) > 100 and losses[-1] <= losses[0] * smoke.LOSS_RATIO
    # `make bench` reads the same ms-swift log for the train throughput figure
    from benchmarks.train_bench import parse_logging

    samples_per_s, mean_tokens, size, epochs, runtime = parse_logging(run / "logging.jsonl")
    train_rows = (smoke_paths["data_dir"] / "muice" / "train.jsonl").read_text().splitlines()
    assert size == len(train_rows) and samples_per_s > 0 and 10 < mean_tokens < 256 and runtime > 0


@pytest.mark.slow
def test_launcher_writes_the_persona_into_the_saved_template(smoke_result):
    """The checkpoint a client loads renders the persona for a conversation without a system message, through
    transformers and through tokenizer_config.json's copy rendered by plain Jinja2 (what the GGUF converter reads)."""
    import jinja2
    from transformers import AutoTokenizer

    from swiftkit.run.rundir import read_run_info, resolve_checkpoint

    run = Path(smoke_result["run"])
    ckpt = resolve_checkpoint(run)
    system = read_run_info(run).system
    user = [{"role": "user", "content": "你是谁？"}]
    text = AutoTokenizer.from_pretrained(ckpt).apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    assert text == f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n你是谁？<|im_end|>\n<|im_start|>assistant\n"
    config = json.loads((ckpt / "tokenizer_config.json").read_text())
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    assert env.from_string(config["chat_template"]).render(messages=user, add_generation_prompt=True) == text
    assert (ckpt / "chat_template.jinja").read_text() == config["chat_template"]
    explicit = [{"role": "system", "content": "你是助手"}, *user]
    assert system not in AutoTokenizer.from_pretrained(ckpt).apply_chat_template(explicit, tokenize=False)


@pytest.mark.slow
def test_learning_assertions_fail_on_the_untrained_model(smoke_paths):
    """The same assertion, fed the untrained tiny model's greedy answers to the same trained prompts, fails."""
    from swiftkit.dev.tiny import build_tiny_model
    from swiftkit.run.probe import ProbeModel, template_answers

    train = smoke_paths["data_dir"] / "muice" / "train.jsonl"
    if not train.is_file():  # run alone: prep the samples the same way smoke does
        from datasets_prep.pipeline import prep

        prep("muice", "datasets_prep/samples/muice", smoke_paths["data_dir"] / "muice")
    model = build_tiny_model(smoke_paths["model_dir"])
    records = smoke.probe_records(train, 3)
    conversations = [r["messages"][:-1] for r in records]
    answers = template_answers(ProbeModel(str(model), str(model)), conversations, max_new_tokens=32)
    triples = [(c[-1]["content"], r["messages"][-1]["content"], a) for c, r, a in zip(conversations, records, answers)]
    # Even paired with the trained run's good loss curve (when the smoke test ran first), the untrained model's
    # answers alone make the verdict fail.
    runs = sorted((smoke_paths["runs_root"] / "smoke_tiny").glob("v*"))
    losses = train_losses(runs[-1]) if runs else []
    verdict = smoke.learning_verdict(losses, triples)
    assert not verdict.ok
    assert verdict.exact == 0 and verdict.probed == 3
    answer_problems = [p for p in verdict.problems if "greedy answer" in p]
    assert len(answer_problems) == 3


def test_persona_verdict_needs_the_persona_answer_without_a_system():
    def report(bare: str) -> dict:
        return {"checks": [{"name": "identity", "data": {"answers": {
            "run system": {"你是谁？": "我是沐雪", "你叫什么名字？": "沐雪"},
            "no system": {"你是谁？": bare, "你叫什么名字？": "沐雪"}}}}]}

    assert smoke.persona_verdict(report("我是沐雪")) == (2, 2, [])
    same, probed, problems = smoke.persona_verdict(report("沐雪，Qwen呢"))  # the unpatched template's noise
    assert (same, probed) == (1, 2) and "no-system probe '你是谁？'" in problems[0]
    assert smoke.persona_verdict({"checks": []})[2]  # nothing probed is a failure, not a pass
