"""The smoke run end to end (the CI proof that a fine-tune learns and answers), and that its learning assertions
fail on an untrained model."""
from __future__ import annotations

import json

import pytest

from swiftkit import smoke


def test_loss_criterion():
    assert smoke.learning_verdict([12.0, 6.0, 1.0], [("q", "a", "a")]).ok
    flat = smoke.learning_verdict([12.0, 11.5, 11.0], [("q", "a", "a")])
    assert not flat.ok and "final train loss 11.0000 is not below 0.2 x the first" in flat.problems[0]
    assert not smoke.learning_verdict([3.0], [("q", "a", "a")]).ok
    assert not smoke.learning_verdict([12.0, 1.0], []).ok
    wrong = smoke.learning_verdict([12.0, 1.0], [("q", "a", "b"), ("q2", "c", "c")])
    assert not wrong.ok and (wrong.exact, wrong.probed) == (1, 2)


@pytest.fixture(scope="module")
def smoke_paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    return {"data_dir": root / "data", "model_dir": root / "models" / "tiny-qwen2", "runs_root": root / "runs"}


@pytest.mark.slow
def test_smoke_end_to_end(smoke_paths, capsys):
    code = smoke.main(["--quiet", "--data-dir", str(smoke_paths["data_dir"]),
                       "--model-dir", str(smoke_paths["model_dir"]), "--runs-root", str(smoke_paths["runs_root"])])
    out = capsys.readouterr().out
    print(out)
    assert code == 0, out
    assert "smoke                     PASS" in out or out.rstrip().splitlines()[-1].startswith("smoke took")
    run = next((smoke_paths["runs_root"] / "smoke_tiny").glob("v*"))
    report = json.loads((run / "check_report.json").read_text())
    assert report["ok"] is True
    rows = [json.loads(l) for l in (run / "infer" / "smoke.jsonl").read_text().splitlines()]
    assert rows and all(r["response"] == r["labels"] for r in rows)
    losses = smoke.train_losses(run)
    assert losses[-1] <= losses[0] * smoke.LOSS_RATIO
    # `make bench` reads the same ms-swift log for the train throughput figure
    from benchmarks.train_bench import parse_logging

    samples_per_s, mean_tokens, size, epochs, runtime = parse_logging(run / "logging.jsonl")
    train_rows = (smoke_paths["data_dir"] / "muice" / "train.jsonl").read_text().splitlines()
    assert size == len(train_rows) and samples_per_s > 0 and 10 < mean_tokens < 256 and runtime > 0


@pytest.mark.slow
def test_learning_assertions_fail_on_the_untrained_model(smoke_paths):
    """The same assertion, fed the untrained tiny model's greedy answers to the same trained prompts, fails."""
    from swiftkit.infer import greedy_answers
    from swiftkit.infer_args import ModelSpec
    from swiftkit.tiny import build_tiny_model

    train = smoke_paths["data_dir"] / "muice" / "train.jsonl"
    if not train.is_file():  # run alone: prep the samples the same way smoke does
        from datasets_prep.pipeline import prep

        prep("muice", "datasets_prep/samples/muice", smoke_paths["data_dir"] / "muice")
    model = build_tiny_model(smoke_paths["model_dir"])
    records = smoke.probe_records(train, 3)
    conversations = [r["messages"][:-1] for r in records]
    answers = greedy_answers(ModelSpec(model=str(model), model_type="qwen2_5", template="qwen2_5"), conversations,
                             max_new_tokens=32)
    triples = [(c[-1]["content"], r["messages"][-1]["content"], a) for c, r, a in zip(conversations, records, answers)]
    # Even paired with the trained run's good loss curve (when the smoke test ran first), the untrained model's
    # answers alone make the verdict fail.
    runs = sorted((smoke_paths["runs_root"] / "smoke_tiny").glob("v*"))
    losses = smoke.train_losses(runs[-1]) if runs else []
    verdict = smoke.learning_verdict(losses, triples)
    assert not verdict.ok
    assert verdict.exact == 0 and verdict.probed == 3
    answer_problems = [p for p in verdict.problems if "greedy answer" in p]
    assert len(answer_problems) == 3
