"""Checkpoints are complete or ignored: what every training rank does around ms-swift's checkpoint save.

:func:`install` (the worker calls it in every rank, before training) wraps transformers' ``Trainer._save_checkpoint``,
which ms-swift's trainers call for every save (``SwiftMixin._save_checkpoint`` -> ``super()``):

1. rank 0 clears a ``checkpoint-N`` folder left by an earlier attempt (a killed or failed save), so old and new files
   never mix; every rank waits for that;
2. ms-swift and transformers save (weights, tokenizer, optimizer, scheduler, RNG state, ``trainer_state.json``);
   the rotation of old checkpoints (``save_total_limit``) is held back;
3. every rank waits until every rank's files are written (each writes its own RNG state / DeepSpeed shard);
4. rank 0 writes the persona template into the checkpoint (persona runs), then the completeness marker
   (:func:`swiftkit.run.checkpoint.mark_complete`), last and atomically;
5. only then are older checkpoints rotated away, so the newest complete checkpoint is never deleted before the next
   one is complete.

A save that fails (disk full: ``OSError`` ENOSPC/EFBIG from Python, safetensors or torch's zip writer) prints one line,
``swiftkit: error: checkpoint-N not saved: <the OS error> ...``, removes the half-written folder (rank 0), and exits
the process with status 1: no traceback, and nothing half-saved that a later step could take for a checkpoint. The
launcher repeats that line as its error.

Test hook (used by tests/test_checkpoints.py, documented here so it is not a secret): with
``SWIFTKIT_TEST_PAUSE_SAVE=<step>`` in the environment, the save of ``checkpoint-<step>`` stops for good right after
the weights are written and before the optimizer state (``Trainer._save_optimizer_and_scheduler``); each rank R
first writes ``checkpoint-<step>/.swiftkit-test-paused-R`` (JSON: its pid and its parent's, torchrun's when several
processes train). A test then SIGKILLs the training at a known point of a save, without racing a clock.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional

from datasets_prep.atomic import write_json
from swiftkit.core.errors import SwiftkitError
from swiftkit.run import checkpoint

ERROR_PREFIX = "swiftkit: error: "
"""A training process's fatal one-line error; the launcher repeats the last such line as its own."""
PAUSE_ENV = "SWIFTKIT_TEST_PAUSE_SAVE"
PAUSED = ".swiftkit-test-paused"


def install() -> bool:
    """Wrap transformers' Trainer save path as the module docstring says; False when already wrapped (idempotent)."""
    from transformers.trainer import Trainer

    if getattr(Trainer._save_checkpoint, "_swiftkit_complete", False):
        return False
    save, rotate = Trainer._save_checkpoint, Trainer._rotate_checkpoints

    def _save_checkpoint(self, model, trial):  # type: ignore[no-untyped-def]
        folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        leader = bool(self.args.should_save)
        if leader and folder.exists():
            shutil.rmtree(folder)  # an earlier attempt's files (killed or failed save) never mix with this one's
        _barrier()
        self._swiftkit_rotation = []
        try:
            result = save(self, model, trial)
            _barrier()
            if leader:
                finish(folder)
        except Exception as exc:  # noqa: BLE001 - any failure of the save ends training with one line
            fail(folder, exc, leader)
        pending, self._swiftkit_rotation = self._swiftkit_rotation, None
        for args, kwargs in pending:
            rotate(self, *args, **kwargs)
        return result

    def _rotate_checkpoints(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        pending = getattr(self, "_swiftkit_rotation", None)
        if pending is not None:  # inside a save: after the marker
            pending.append((args, kwargs))
            return None
        return rotate(self, *args, **kwargs)

    _save_checkpoint._swiftkit_complete = True  # type: ignore[attr-defined]
    Trainer._save_checkpoint = _save_checkpoint
    Trainer._rotate_checkpoints = _rotate_checkpoints
    if os.environ.get(PAUSE_ENV):
        _install_pause(Trainer, int(os.environ[PAUSE_ENV]))
    return True


def _barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def finish(folder: Path) -> None:
    """Rank 0, after every rank's files are written: the persona template (persona runs), then the marker."""
    persona_into(folder)
    checkpoint.mark_complete(folder)


def persona_into(folder: Path) -> None:
    """Write the run's persona into the checkpoint's template before it is marked complete. A template problem is a
    warning (the weights are good; ``swiftkit check --fix`` writes it later); an OSError fails the save."""
    from swiftkit.run.persona import (
        ensure_tokenizer,
        run_system,
        write_persona_template,
    )
    from swiftkit.run.rundir import RUN_INFO, read_run_info

    run = folder.parent
    if not (run / RUN_INFO).is_file():
        return
    info = read_run_info(run)
    if not info.persona:
        return
    try:
        system = run_system(info)
        if not system:
            raise SwiftkitError("persona run without a system prompt")
        changed = ensure_tokenizer(folder, info.model) + write_persona_template(folder, system)
    except SwiftkitError as exc:
        print(f"swiftkit: warning: persona template not written into {folder.name}: {exc}", file=sys.stderr,
              flush=True)
        return
    if changed:
        print(f"swiftkit: persona template written into {folder.name}", file=sys.stderr, flush=True)


def os_error_text(exc: BaseException) -> str:
    """The OS error behind a failed save, in words: an OSError in the exception chain (``File too large
    (model.safetensors)``), the errno inside a safetensors error (``(os error 28)``), else the exception's first
    line (torch's zip writer reports only "file write failed")."""
    seen: set[int] = set()
    link: Optional[BaseException] = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, OSError):
            name = f" ({Path(link.filename).name})" if link.filename else ""
            return f"{link.strerror or link}{name}"
        link = link.__cause__ or link.__context__
    code = re.search(r"Os \{ code: (\d+)|\(os error (\d+)\)", str(exc))
    if code:
        return os.strerror(int(code.group(1) or code.group(2)))
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def fail(folder: Path, exc: BaseException, leader: bool) -> None:
    """One line for a failed save; rank 0 removes the half-written folder; the process exits with status 1."""
    from swiftkit.run.rundir import newest_complete

    removed = ""
    if leader:
        shutil.rmtree(folder, ignore_errors=True)
        removed = "; the incomplete folder was removed"
    last, _ = newest_complete(folder.parent)
    kept = f"the last complete checkpoint is {last.name}" if last is not None else "no complete checkpoint yet"
    print(f"{ERROR_PREFIX}{folder.name} not saved: {os_error_text(exc)} ({checkpoint.size_text(folder)}){removed}; "
          f"{kept}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    raise SystemExit(1)


def _install_pause(trainer: Any, step: int) -> None:
    """The test hook of the module docstring."""
    original = trainer._save_optimizer_and_scheduler

    def _save_optimizer_and_scheduler(self, output_dir):  # type: ignore[no-untyped-def]
        if self.state.global_step == step:
            rank = int(os.environ.get("RANK", "0"))
            write_json(Path(output_dir) / f"{PAUSED}-{rank}", {"pid": os.getpid(), "ppid": os.getppid()})
            while True:  # until killed
                time.sleep(60)
        return original(self, output_dir)

    trainer._save_optimizer_and_scheduler = _save_optimizer_and_scheduler
