"""Checkpoints are complete or ignored (issue 19): the completeness rule, resume's choice, check's verdict, a save
that fails on a full disk, and kill -9 during a save followed by ``--resume`` with the learning rate it had.

The two training tests run the real launcher and worker on the tiny model (tests/helpers.py), briefly: the kill
test with 2 CPU processes (DDP over gloo, optimizer state saved: the ``cpu:0`` resume path), the disk test with one.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swiftkit.cli import main as cli_main
from swiftkit.core.errors import SwiftkitError
from swiftkit.run import checkpoint
from swiftkit.run.rundir import (
    RunInfo,
    newest_complete,
    resolve_checkpoint,
    write_run_info,
)
from swiftkit.train.saving import PAUSE_ENV, PAUSED
from tests import helpers

ROOT = Path(__file__).resolve().parents[1]


# --- the completeness rule (no training) -----------------------------------------------------------------------

def _safetensors(path: Path, floats: int = 4) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [floats], "data_offsets": [0, 4 * floats]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * (4 * floats))


def _fake_checkpoint(folder: Path, *, optimizer: bool = False) -> Path:
    """A checkpoint-shaped folder: weights, config, tokenizer JSON, a torch file and trainer_state.json last."""
    import torch

    folder.mkdir(parents=True)
    _safetensors(folder / "model.safetensors")
    (folder / "config.json").write_text('{"model_type": "qwen2"}')
    (folder / "tokenizer_config.json").write_text('{"chat_template": "x"}')
    torch.save({"step": 1}, folder / "training_args.bin")
    if optimizer:
        torch.save({"state": {}}, folder / "optimizer.pt")
        torch.save({"last_epoch": 2}, folder / "scheduler.pt")
    (folder / "trainer_state.json").write_text('{"global_step": 2}')
    return folder


def _truncate(path: Path, by: int = 3) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size - by)


def test_a_marked_checkpoint_is_complete_until_a_file_is_cut_or_missing(tmp_path):
    ckpt = _fake_checkpoint(tmp_path / "checkpoint-2")
    checkpoint.mark_complete(ckpt)
    assert checkpoint.problems(ckpt) == []
    # swiftkit rewrites the template files atomically later (persona, check --fix): another size is fine
    (ckpt / "tokenizer_config.json").write_text('{"chat_template": "a longer persona template"}')
    assert checkpoint.problems(ckpt) == []
    _truncate(ckpt / "model.safetensors")
    assert checkpoint.problems(ckpt) == [f"model.safetensors is {ckpt.joinpath('model.safetensors').stat().st_size} "
                                         f"bytes, saved as {ckpt.joinpath('model.safetensors').stat().st_size + 3}"]
    _fake_checkpoint(tmp_path / "b")
    checkpoint.mark_complete(tmp_path / "b")
    (tmp_path / "b" / "training_args.bin").unlink()
    assert checkpoint.problems(tmp_path / "b") == ["training_args.bin missing"]
    (tmp_path / "b" / "tokenizer_config.json").write_text('{"chat_template": ')  # a rewritten file must still parse
    assert any("tokenizer_config.json is cut short" in p for p in checkpoint.problems(tmp_path / "b"))


def test_an_unmarked_checkpoint_from_before_the_marker_counts_when_its_files_verify(tmp_path):
    """The rule for older runs: trainer_state.json (written last by transformers), weights, and every file whole."""
    ckpt = _fake_checkpoint(tmp_path / "checkpoint-2")
    assert checkpoint.problems(ckpt) == []
    whole = (ckpt / "model.safetensors").stat().st_size
    _truncate(ckpt / "model.safetensors")
    assert checkpoint.problems(ckpt) == [f"model.safetensors is cut short or padded ({whole - 3} bytes, its header "
                                         f"says {whole})"]
    other = _fake_checkpoint(tmp_path / "checkpoint-4")
    _truncate(other / "training_args.bin", by=30)
    assert checkpoint.problems(other) == ["training_args.bin is cut short or corrupt (no readable torch archive)"]
    third = _fake_checkpoint(tmp_path / "checkpoint-6")
    (third / "trainer_state.json").unlink()
    assert checkpoint.problems(third) == [f"no trainer_state.json (the save did not finish) and no {checkpoint.MARKER}"]


def _run_with(tmp_path: Path, steps: dict[int, str]) -> Path:
    """A run directory with checkpoints: 'ok' (complete), 'cut' (weights truncated), 'weights' (no optimizer)."""
    run = tmp_path / "runs" / "smoke_tiny" / "v1"
    run.mkdir(parents=True)
    write_run_info(run, RunInfo(recipe="smoke_tiny", model="models/tiny-qwen2", model_type="qwen2_5",
                                template="qwen2_5", train_type="full", max_length=256, train_files=[]))
    for step, kind in steps.items():
        ckpt = _fake_checkpoint(run / f"checkpoint-{step}", optimizer=kind != "weights")
        checkpoint.mark_complete(ckpt)
        if kind == "cut":
            _truncate(ckpt / "model.safetensors")
    return run


def test_last_best_and_named_checkpoints_are_complete_ones(tmp_path):
    run = _run_with(tmp_path, {2: "ok", 4: "ok", 6: "cut"})
    (run / "result.json").write_text(json.dumps({"last_model_checkpoint": "checkpoint-6",
                                                 "best_model_checkpoint": "checkpoint-6"}))
    assert resolve_checkpoint(run) == run / "checkpoint-4"
    assert resolve_checkpoint(run, "best") == run / "checkpoint-4"
    newest, skipped = newest_complete(run)
    assert newest == run / "checkpoint-4" and [p.name for p, _ in skipped] == ["checkpoint-6"]
    with pytest.raises(SwiftkitError, match=r"checkpoint .*checkpoint-6 is incomplete \(model.safetensors is "):
        resolve_checkpoint(run, str(run / "checkpoint-6"))
    assert resolve_checkpoint(run, str(run / "checkpoint-6"), require_complete=False) == run / "checkpoint-6"
    only_cut = _run_with(tmp_path / "o", {2: "cut"})
    with pytest.raises(SwiftkitError, match=r"no complete checkpoint: checkpoint-2 \(model.safetensors is "):
        resolve_checkpoint(only_cut)


def test_resume_takes_the_newest_complete_checkpoint_and_says_what_it_restores(tmp_path, monkeypatch, capsys):
    from swiftkit.train import launch

    monkeypatch.chdir(ROOT)  # the repository's recipes/smoke_tiny.yaml
    run = _run_with(tmp_path, {2: "ok", 4: "cut"})
    planned = launch.plan_run("smoke_tiny", resume=str(run))
    assert planned.resume_checkpoint == run / "checkpoint-2"
    assert planned.resume_note.startswith("resuming from checkpoint-2: optimizer, learning-rate schedule and RNG state "
                                          "restored; skipped checkpoint-4 (model.safetensors is ")
    argv = planned.plan.argv
    assert argv[argv.index("--resume_from_checkpoint") + 1] == str(run / "checkpoint-2")
    with pytest.raises(SwiftkitError, match=r"--resume .*checkpoint-4: incomplete checkpoint \(model.safetensors .*; "
                                            r"the newest complete one is .*checkpoint-2"):
        launch.plan_run("smoke_tiny", resume=str(run / "checkpoint-4"))

    assert cli_main(["train", "smoke_tiny", "--resume", str(run), "--dry-run"]) in (0, 1)  # preflight: no model here
    assert f"# {planned.resume_note}" in capsys.readouterr().out.splitlines()

    weights = _run_with(tmp_path / "w", {2: "weights"})
    note = launch.plan_run("smoke_tiny", resume=str(weights)).resume_note
    assert note == ("resuming from checkpoint-2: weights only (saved with save_only_model): the optimizer starts "
                    "empty and the learning-rate schedule starts again from its first step")
    none = _run_with(tmp_path / "n", {2: "cut"})
    with pytest.raises(SwiftkitError, match=r"no complete checkpoint to continue from: checkpoint-2 \("):
        launch.plan_run("smoke_tiny", resume=str(none))


def _verdicts(out: str) -> list[str]:
    """`swiftkit check`'s result lines (ms-swift logs to stdout as well)."""
    return [line for line in out.splitlines() if line[:4] in ("PASS", "FAIL", "SKIP")]


def test_check_fails_a_cut_checkpoint_in_one_line_and_loads_nothing(tmp_path, capsys):
    run = _run_with(tmp_path, {2: "ok", 4: "cut"})
    before = sorted((p.name, p.stat().st_size) for p in (run / "checkpoint-4").iterdir())
    for extra in (["--fix", "--no-probe"], []):  # with the probe too: no model load, no traceback
        assert cli_main(["check", str(run), "--checkpoint", str(run / "checkpoint-4"), *extra]) == 1
        lines = _verdicts(capsys.readouterr().out)
        assert lines[0].startswith("FAIL  checkpoint  checkpoint-4 is incomplete: model.safetensors is "), lines
        assert [line.split()[:2] for line in lines[1:5]] == [["SKIP", n] for n in ("eos", "stop_label", "template",
                                                                                   "identity")]
    assert sorted((p.name, p.stat().st_size) for p in (run / "checkpoint-4").iterdir()) == before
    report = json.loads((run / "check_report.json").read_text())
    assert report["ok"] is False and report["checks"][0]["data"]["marked"] is True


def test_a_failed_save_names_the_os_error():
    from swiftkit.train.saving import os_error_text

    full = OSError(28, os.strerror(28), "/r/v1/checkpoint-4/optimizer.pt")
    assert os_error_text(full) == "No space left on device (optimizer.pt)"
    try:
        try:
            raise full
        except OSError as inner:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed") from inner
    except RuntimeError as outer:
        assert os_error_text(outer) == "No space left on device (optimizer.pt)"
    rust = Exception('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space" })')
    assert os_error_text(rust) == "No space left on device"
    safetensors = Exception("Error while serializing: I/O error: No space left on device (os error 28)")
    assert os_error_text(safetensors) == "No space left on device"


def test_the_cpu_indexed_map_location_shim_restores_on_the_cpu():
    """transformers resumes a several-process optimizer with map_location=args.device, cpu:<rank> on CPU."""
    code = ("import io, torch\nfrom swiftkit.stack import shims\nshim = shims.SHIMS['cpu_indexed_map_location']\n"
            "buf = io.BytesIO(); torch.save({'m': torch.ones(2)}, buf)\n"
            "def load():\n    buf.seek(0); return torch.load(buf, map_location=torch.device('cpu', 1), weights_only=True)\n"
            "assert shim.needed()\ntry:\n    load(); raise SystemExit('loaded without the shim')\n"
            "except RuntimeError as exc:\n    assert 'tagged with cpu:1' in str(exc)\n"
            "shim.patch()\nassert not shim.needed() and load()['m'].tolist() == [1.0, 1.0]\nprint('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


# --- real training ---------------------------------------------------------------------------------------------

def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != PAUSE_ENV}
    return {**env, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **extra}


def _recipe(tmp_path_factory, path: Path, *, nproc: int, epochs: int, persona: bool = True) -> Path:
    """tests/helpers.RECIPE, saving every 2 steps (optimizer included), logging every step."""
    train, _ = helpers._data(tmp_path_factory)
    text = helpers.RECIPE.format(train_type="full", model=helpers.tiny_model(tmp_path_factory), lora="", train=train,
                                 val="", system=helpers.SYSTEM, lr="1.0e-2", epochs=epochs, watch="")  # no evaluation
    for old, new in [("save_steps: 100000", "save_steps: 2"), ("save_only_model: true", "save_only_model: false"),
                     ("logging_steps: 5", "logging_steps: 1"), ("nproc_per_node: 1", f"nproc_per_node: {nproc}"),
                     ("per_device_batch_size: 2", f"per_device_batch_size: {2 // nproc}")]:
        assert old in text
        text = text.replace(old, new)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _swiftkit(*args: str, **popen: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "swiftkit.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **popen)  # type: ignore[call-overload]


def _lr_by_step(entries: list[dict]) -> dict[int, float]:
    out = {}
    for entry in entries:
        step = entry.get("step") or int(str(entry.get("global_step/max_steps", "0/0")).split("/")[0])
        if "learning_rate" in entry and "loss" in entry:
            out[int(step)] = float(entry["learning_rate"])
    return out


def _logged(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "logging.jsonl").read_text().splitlines() if line.strip()]


def test_kill_9_during_a_save_then_resume_continues_from_the_last_complete_checkpoint(tmp_path_factory, capsys):
    """2 CPU processes, 8 steps, a save every 2 (optimizer included). The save of checkpoint-4 stops after the
    weights (the documented test hook) and the training processes are SIGKILLed there: no clock is raced."""
    root = tmp_path_factory.mktemp("kill9")
    recipe = _recipe(tmp_path_factory, root / "recipes" / "tiny_kill.yaml", nproc=2, epochs=2)
    runs = root / "runs"
    run = runs / "tiny_kill" / "v1"
    first = _swiftkit("train", str(recipe), "--runs-root", str(runs), env=_env(**{PAUSE_ENV: "4"}))
    paused = [run / "checkpoint-4" / f"{PAUSED}-{rank}" for rank in (0, 1)]
    deadline = time.monotonic() + 600
    while not all(p.is_file() for p in paused):  # waits for the event; the deadline only guards a broken run
        assert first.poll() is None, first.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the save of checkpoint-4 never started"
        time.sleep(0.5)
    ranks = [json.loads(p.read_text()) for p in paused]
    assert ranks[0]["ppid"] == ranks[1]["ppid"]  # torchrun: killed first, so it cannot react to its ranks' deaths
    for pid in (ranks[0]["ppid"], ranks[0]["pid"], ranks[1]["pid"]):
        os.kill(pid, signal.SIGKILL)
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 1, out[-3000:]
    assert "exit status -9" in out

    # what the kill left: checkpoint-2 complete (marker, persona template), checkpoint-4 half-saved and untouched
    assert checkpoint.is_marked(run / "checkpoint-2") and checkpoint.problems(run / "checkpoint-2") == []
    assert "swiftkit:persona" in (run / "checkpoint-2" / "chat_template.jinja").read_text()
    half = run / "checkpoint-4"
    assert (half / "model.safetensors").is_file() and not checkpoint.is_marked(half)
    assert checkpoint.problems(half) != []
    assert "swiftkit:persona" not in (half / "chat_template.jinja").read_text()  # the persona step left it alone
    killed_lr = _lr_by_step(_logged(run))
    assert sorted(killed_lr)[:4] == [1, 2, 3, 4], killed_lr

    # check: the default takes checkpoint-2 and names the half one; the half one named explicitly FAILs in one line
    assert cli_main(["check", str(run), "--fix", "--no-probe"]) == 0
    assert _verdicts(capsys.readouterr().out)[0].startswith(
        "PASS  checkpoint  checkpoint-2 complete (marked complete by swiftkit); newer incomplete skipped: checkpoint-4 (")
    before = sorted((p.name, p.stat().st_size) for p in half.iterdir())
    for extra in (["--fix", "--no-probe"], []):  # the probe too: nothing is loaded from a half checkpoint
        assert cli_main(["check", str(run), "--checkpoint", str(half), *extra]) == 1
        lines = _verdicts(capsys.readouterr().out)
        assert lines[0].startswith("FAIL  checkpoint  checkpoint-4 is incomplete: "), lines
        assert [line.split()[0] for line in lines[1:5]] == ["SKIP"] * 4
    assert sorted((p.name, p.stat().st_size) for p in half.iterdir()) == before  # --fix wrote nothing into it

    # resume: the newest complete checkpoint, optimizer + schedule + RNG restored on CPU, the same learning rate
    second = _swiftkit("train", str(recipe), "--resume", str(run), env=_env())
    out, _ = second.communicate(timeout=600)
    assert second.returncode == 0, out[-4000:]
    said = [line for line in out.splitlines() if line.startswith("swiftkit: resuming")]
    assert len(said) == 1 and said[0].startswith(
        "swiftkit: resuming from checkpoint-2: optimizer, learning-rate schedule and RNG state restored; skipped "
        "checkpoint-4 ("), said
    state = json.loads((run / "checkpoint-8" / "trainer_state.json").read_text())
    resumed_lr = _lr_by_step(state["log_history"])
    assert sorted(resumed_lr) == list(range(1, 9)), resumed_lr
    for step in (3, 4):  # the steps after checkpoint-2: the schedule went on where it was (logging.jsonl rounds)
        assert resumed_lr[step] == pytest.approx(killed_lr[step], rel=1e-6), (step, resumed_lr, killed_lr)
    assert resumed_lr[3] < resumed_lr[2] < resumed_lr[1]  # cosine decay went on; a restarted schedule repeats lr[1]
    assert _lr_by_step(_logged(run))[8] == pytest.approx(resumed_lr[8])
    # save_total_limit 1: older checkpoints were rotated away only once a newer one was complete
    assert [p.name for p in run.glob("checkpoint-*")] == ["checkpoint-8"]
    assert checkpoint.is_marked(run / "checkpoint-8") and checkpoint.problems(run / "checkpoint-8") == []


def _file_size_limit(limit: int):
    def preexec() -> None:
        os.setsid()
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return preexec


def test_a_save_that_hits_a_full_disk_is_one_line_and_leaves_no_half_checkpoint(tmp_path_factory):
    """A real write error from the kernel in the real save path: the training processes may write no file over
    30 MiB (RLIMIT_FSIZE; Python ignores SIGXFSZ, so the write fails with EFBIG as a full disk fails with ENOSPC), and
    the tiny model's weights are 39 MB, so the first checkpoint's save fails part way."""
    from swiftkit.train import launch

    root = tmp_path_factory.mktemp("full")
    recipe = _recipe(tmp_path_factory, root / "recipes" / "tiny_full.yaml", nproc=1, epochs=1)
    runs = root / "runs"
    run = runs / "tiny_full" / "v1"
    proc = _swiftkit("train", str(recipe), "--runs-root", str(runs), env=_env(),
                     preexec_fn=_file_size_limit(30 * 2**20))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1, out[-3000:]
    assert "Traceback" not in out and "Traceback" not in (run / "train.log").read_text(), out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("swiftkit train: error:")]
    assert len(errors) == 1 and errors[0].startswith(
        "swiftkit train: error: training stopped: checkpoint-2 not saved: File too large ("), errors
    assert "the incomplete folder was removed; no complete checkpoint yet; see " in errors[0]
    assert not (run / "checkpoint-2").exists()
    assert "persona template written" not in out
    with pytest.raises(SwiftkitError, match="no complete checkpoint to continue from"):
        launch.plan_run(recipe, resume=str(run))
