"""The run directory: the one contract between training (launch) and what comes after (infer, serve, export, check).

Layout of ``runs/<recipe>/v<N>/`` (ms-swift writes into the same folder: ``--output_dir <run> --add_version false``)::

    swiftkit_run.json     RunInfo below: what was trained, from what, with which argument list
    recipe.yaml           the resolved recipe
    versions.json         the installed stack (python, torch, ms-swift, transformers, ...)
    data/<name>.manifest.json   the prep manifest of every dataset file trained on (data.mix files included)
    result.json           written by rank 0 after training: last/best checkpoint, log history
    checkpoint-<step>/    ms-swift checkpoints (full weights or a LoRA adapter); ``.swiftkit-complete`` inside marks
                          one whose save finished (swiftkit.run.checkpoint): only complete ones are ever used
    logging.jsonl, args.json    ms-swift's own
    samples/step-<N>.jsonl    written during training by a recipe's ``watch:`` (swiftkit.train.watch): the identity
                          questions and a few val prompts answered by the weights at step N; `swiftkit eval` charts them
    check_report.json     written by `swiftkit check`
    infer/<name>.jsonl    written by `swiftkit infer`
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from datasets_prep.atomic import write_json
from swiftkit.core.errors import SwiftkitError
from swiftkit.core.jsonl import read_jsonl
from swiftkit.run import checkpoint

RUN_INFO = "swiftkit_run.json"
RESULT = "result.json"
SAMPLES_DIR = "samples"
_SAMPLES = re.compile(r"^step-(\d+)\.jsonl$")


def samples_path(run_dir: str | Path, step: int) -> Path:
    """Where the watch writes the answers of step ``step``."""
    return Path(run_dir) / SAMPLES_DIR / f"step-{step}.jsonl"


def read_samples(run_dir: str | Path) -> dict[int, list[dict]]:
    """step -> the watch's answer rows of that step, steps ascending; {} when the run has no samples/."""
    folder = Path(run_dir) / SAMPLES_DIR
    found = sorted((int(m.group(1)), f) for f in folder.iterdir() if (m := _SAMPLES.match(f.name))) \
        if folder.is_dir() else []
    return {step: [r for r in read_jsonl(f) if isinstance(r, dict)] for step, f in found}


@dataclass
class RunInfo:
    """What a training run was; written by the launcher before any process starts."""

    recipe: str
    """Recipe name (e.g. ``muice_full``)."""
    model: str
    """Base model: a local folder or a hub id."""
    model_type: str | None
    """ms-swift ``--model_type`` (e.g. ``qwen2_5``), None to let ms-swift infer it."""
    template: str | None
    """ms-swift ``--template`` (e.g. ``qwen2_5``)."""
    train_type: Literal["full", "lora", "qlora"]
    """How the weights were trained; lora/qlora checkpoints are adapters."""
    max_length: int
    """Token budget per sample used in training."""
    train_files: list[str]
    """Dataset files trained on (prep outputs)."""
    val_files: list[str] = field(default_factory=list)
    """Validation files (prep outputs)."""
    system: str | None = None
    """The system prompt the data was prepared with (None: each record carries its own)."""
    lora_rank: int | None = None
    """LoRA rank (vLLM's ``max_lora_rank`` must be at least this)."""
    persona: bool = False
    """True when the recipe trains a persona: `swiftkit check` then runs the identity probe."""
    trust_remote_code: bool = False
    method: str = "sft"
    """Training method (swiftkit.train.methods): sft, ..."""
    argv: list[str] = field(default_factory=list)
    """The exact ``swift <method command> ...`` argument list that ran."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment the launcher set (secrets never included)."""
    data_mix: list[dict[str, Any]] = field(default_factory=list)
    """A recipe's data.mix as trained: every --dataset entry with its exact rows, share and how ms-swift drew them
    (swiftkit.train.mixing); empty when nothing was mixed."""

    @property
    def hub(self) -> str:
        """The hub the base model came from: "hf" when the plan set ``USE_HF`` (a recipe with ``hub: hf``), else
        ms-swift's default, "modelscope"."""
        return "hf" if self.env.get("USE_HF", "") not in ("", "0") else "modelscope"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunInfo":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def write_run_info(run_dir: str | Path, info: RunInfo) -> Path:
    path = Path(run_dir) / RUN_INFO
    write_json(path, info.to_json())
    return path


def read_run_info(run_dir: str | Path) -> RunInfo:
    path = Path(run_dir) / RUN_INFO
    if not path.is_file():
        raise SwiftkitError(f"{run_dir}: not a swiftkit run directory (no {RUN_INFO})")
    try:
        return RunInfo.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError) as exc:
        raise SwiftkitError(f"{path}: unreadable run info ({exc})") from exc


def read_result(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RESULT
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


_CKPT = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoint folders, oldest step first."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).iterdir() if p.is_dir() and (m := _CKPT.match(p.name))]
    return [p for _, p in sorted(found)]


def newest_complete(run_dir: str | Path) -> tuple[Optional[Path], list[tuple[Path, str]]]:
    """The newest complete checkpoint of ``run_dir`` (:mod:`swiftkit.run.checkpoint`), or None, and the newer
    checkpoints passed over with why each is incomplete (newest first)."""
    run = Path(run_dir)
    skipped: list[tuple[Path, str]] = []
    for ckpt in reversed(list_checkpoints(run) if run.is_dir() else []):
        found = checkpoint.problems(ckpt)
        if not found:
            return ckpt, skipped
        skipped.append((ckpt, found[0]))
    return None, skipped


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """The complete checkpoint folders of ``run_dir``, oldest step first (the persona step writes only these)."""
    return [ckpt for ckpt in list_checkpoints(run_dir) if checkpoint.is_complete(ckpt)]


def skipped_text(skipped: list[tuple[Path, str]]) -> str:
    """``checkpoint-4 (model.safetensors is cut short ...), ...`` for a one-line message."""
    return ", ".join(f"{path.name} ({why})" for path, why in skipped)


def resolve_checkpoint(run_dir: str | Path, which: str = "last", *, require_complete: bool = True) -> Path:
    """``best`` / ``last`` (from result.json, else the highest step), always inside ``run_dir``, or an explicit
    path. Only a complete checkpoint (:mod:`swiftkit.run.checkpoint`) is returned: ``last``/``best`` pass over
    incomplete ones to the newest complete, and an explicit ``checkpoint-N`` folder that is incomplete is refused with
    one line. ``require_complete=False`` returns an explicit folder as it is (``check`` reports it itself)."""
    run = Path(run_dir)
    if which not in ("best", "last"):
        path = Path(which)
        if not path.is_dir():
            raise SwiftkitError(f"checkpoint {which}: no such folder")
        if require_complete and _CKPT.match(path.name) and (found := checkpoint.problems(path)):
            raise SwiftkitError(f"checkpoint {which} is incomplete ({found[0]}); a save that did not finish is "
                                "never used")
        return path
    recorded = read_result(run).get(f"{which}_model_checkpoint")
    if recorded:
        # relative to the run (new runs); an absolute path from an older run counts by its folder name, so a copied
        # or moved run directory never reaches back into the original
        own = run / (recorded if not Path(recorded).is_absolute() else Path(recorded).name)
        if own.is_dir() and checkpoint.is_complete(own):
            return own
    if not (list_checkpoints(run) if run.is_dir() else []):
        raise SwiftkitError(f"{run}: no checkpoint-* folder (did training finish?)")
    newest, skipped = newest_complete(run)
    if newest is None:
        raise SwiftkitError(f"{run}: no complete checkpoint: {skipped_text(skipped)}")
    return newest


def next_run_dir(root: str | Path, recipe: str) -> Path:
    """``<root>/<recipe>/v<N>`` with N one past the highest existing version (v1 first)."""
    base = Path(root) / recipe
    versions = [int(p.name[1:]) for p in base.glob("v*") if p.name[1:].isdigit()] if base.is_dir() else []
    return base / f"v{max(versions, default=0) + 1}"


def is_adapter(checkpoint: str | Path) -> bool:
    """A LoRA adapter checkpoint (adapter_config.json) rather than full weights."""
    return (Path(checkpoint) / "adapter_config.json").is_file()


def resolve_init(target: str | Path) -> Path:
    """The checkpoint a recipe's ``init_from`` names: a checkpoint folder as it is, a run directory's last
    checkpoint, or the last checkpoint of the newest ``v<N>`` in a recipe's runs folder."""
    path = Path(target).expanduser()
    if (path / RUN_INFO).is_file():
        return resolve_checkpoint(path, "last")
    if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
        return resolve_checkpoint(path.parent, str(path)) if _CKPT.match(path.name) else path
    versions = sorted((int(p.name[1:]), p) for p in path.glob("v*") if p.name[1:].isdigit() and (p / RUN_INFO).is_file()) \
        if path.is_dir() else []
    if versions:
        return resolve_checkpoint(versions[-1][1], "last")
    raise SwiftkitError(f"init_from {target}: no run directory or checkpoint there (train the run it names first)")


def log_history(run_dir: str | Path) -> list[dict]:
    """The run's logged entries in step order: result.json's log_history, else ms-swift's logging.jsonl."""
    run = Path(run_dir)
    history = read_result(run).get("log_history") or []
    if not history and (run / "logging.jsonl").is_file():
        history = read_jsonl(run / "logging.jsonl")
    return [h for h in history if isinstance(h, dict)]


def train_losses(run_dir: str | Path) -> list[float]:
    """The logged train losses in step order (:func:`log_history`)."""
    return [float(h["loss"]) for h in log_history(run_dir) if "loss" in h and "train_loss" not in h]


_ZERO_SHARD = re.compile(r"^(?:bf16_)?zero_pp_rank_(\d+)_mp_rank_(\d+)_?optim_states\.pt$")


def saved_world_size(checkpoint: str | Path) -> int | None:
    """How many data-parallel processes saved a DeepSpeed checkpoint, from its file names (no torch): the ranks of
    ``global_stepN/zero_pp_rank_R_mp_rank_MM_optim_states.pt`` (DeepSpeed's engine names them so), N from ``latest``.
    None when the checkpoint holds no DeepSpeed optimizer state (weights only, or not DeepSpeed)."""
    ckpt = Path(checkpoint)
    try:
        tag = (ckpt / "latest").read_text(encoding="utf-8").strip()
        names = [p.name for p in (ckpt / tag).iterdir()]
    except OSError:
        return None
    ranks = {match.group(1) for match in map(_ZERO_SHARD.match, names) if match}
    return len(ranks) or None


LOG_NAME = "train.log"
"""The training log of a run (node 0's, when several nodes share the run directory)."""
NODE_LOG = re.compile(r"^train\.node[1-9][0-9]*\.log$")
"""The logs nodes k > 0 write into a shared run directory (:func:`node_log_name`)."""


def node_log_name(node_rank: int) -> str:
    """Node 0 writes ``train.log``; node k > 0 its own ``train.node<k>.log`` in the same run directory."""
    return LOG_NAME if node_rank == 0 else f"train.node{node_rank}.log"
