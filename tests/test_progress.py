"""The training progress line: each bar shows its own phase's first and last loss (the GRPO smoke's bar once showed
the SFT warm-up's first loss, "11.9267 -> 0.0002")."""
from __future__ import annotations

import io

from swiftkit.train.progress import TrainProgress


def log(step: int, total: int, loss: float) -> str:
    """A line as ms-swift's rank 0 prints it."""
    return f"{{'loss': '{loss}', 'grad_norm': '1.0', 'global_step/max_steps': '{step}/{total}', 'epoch': '1.0'}}"


def finals(text: str) -> list[str]:
    """The last rendering of each closed bar, in order."""
    return [line.rsplit("\r", 1)[-1].strip() for line in text.split("\n") if line.strip()]


def bars(text: str) -> dict[str, str]:
    """The last rendering of each bar, by its description."""
    return {f.split(":", 1)[0]: f for f in finals(text)}


def test_each_phase_shows_its_own_first_and_last_loss():
    out = io.StringIO()
    progress = TrainProgress("smoke-grpo train", file=out)
    progress.phase("smoke-grpo sft warm-up")
    for step, loss in [(1, 11.9267), (2, 3.5), (3, 0.0002)]:
        progress(log(step, 3, loss))
    progress.phase("smoke-grpo grpo")
    for step, loss in [(1, 0.0125), (2, 0.0071)]:
        progress(log(step, 2, loss))
    progress.close()
    shown = bars(out.getvalue())
    assert "loss 11.9267 -> 0.0002" in shown["smoke-grpo sft warm-up"]
    assert "loss 0.0125 -> 0.0071" in shown["smoke-grpo grpo"], shown
    assert "11.9267" not in shown["smoke-grpo grpo"]


def test_a_step_counter_that_starts_again_is_a_new_bar():
    out = io.StringIO()
    progress = TrainProgress("train", file=out)
    for step, loss in [(1, 9.0), (4, 1.0)]:
        progress(log(step, 4, loss))
    for step, loss in [(1, 0.5), (2, 0.25)]:  # a second training under the same callback, no phase() between
        progress(log(step, 2, loss))
    progress.close()
    first, second = finals(out.getvalue())
    assert "4/4" in first and "loss 9.0000 -> 1.0000" in first
    assert "2/2" in second and "loss 0.5000 -> 0.2500" in second, second
    assert progress.first_loss is None and progress.bar is None  # closed: nothing carried into the next phase


def test_the_grpo_smoke_wiring_names_each_phase(capsys):
    """`swiftkit smoke-grpo`'s on_step/on_output pair, as the pipeline calls it: one bar per training step."""
    import argparse

    from swiftkit.cli.commands.smoke import with_progress

    def pipeline(on_step, on_output):
        on_step("sft warm-up")
        for step, loss in [(1, 11.9267), (2, 0.0002)]:
            on_output(log(step, 2, loss))
        on_step("grpo")
        for step, loss in [(1, 0.0125), (2, 0.0071), (3, 0.0042)]:
            on_output(log(step, 3, loss))

    with_progress(argparse.Namespace(quiet=False, verbose=False), "smoke-grpo", pipeline)
    captured = capsys.readouterr()
    assert captured.out == "== smoke-grpo: sft warm-up\n== smoke-grpo: grpo\n"
    shown = bars(captured.err)
    assert "loss 11.9267 -> 0.0002" in shown["smoke-grpo sft warm-up"]
    assert "loss 0.0125 -> 0.0042" in shown["smoke-grpo grpo"], shown
