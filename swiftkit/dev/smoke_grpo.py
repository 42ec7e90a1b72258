"""The GRPO smoke run's library half: :func:`smoke_grpo` runs the pipeline (prep the action and medical
samples, tiny model, SFT warm-up, GRPO on 2 CPU processes) and :func:`grpo_verdict` judges a GRPO run from its own
logs; :func:`summary` is its table. `swiftkit smoke-grpo` (swiftkit/cli/commands/smoke_grpo.py, `make smoke-grpo`) is its
command, whose help says what passes.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from datasets_prep.samples_dir import SAMPLES_DIR
from swiftkit.core.jsonl import read_jsonl

SOURCES = ("actions", "medical_r1")
REWARD_PREFIX = "rewards/"


@dataclass
class GrpoVerdict:
    steps: list[dict[str, Any]]
    """One row per logged step: step, loss, reward, reward_std and each reward's mean (NaN: not applicable)."""
    groups: int
    """Groups of completions (same step and prompt) found in completions.jsonl."""
    varied_groups: int
    """Groups whose completions got different total rewards."""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def step_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """ms-swift's per-step GRPO log (logging.jsonl), reduced to loss, total reward, its spread and each reward's
    mean (named by ms-swift after the reward class, e.g. ``rewards/ActionMatch/mean`` -> ``ActionMatch``)."""
    path = Path(run_dir) / "logging.jsonl"
    if not path.is_file():
        return []
    rows = []
    for entry in read_jsonl(path):
        if "loss" not in entry or "train_loss" in entry:
            continue
        step = str(entry.get("global_step/max_steps", "")).split("/")[0]
        row: dict[str, Any] = {"step": int(step) if step.isdigit() else len(rows) + 1, "loss": entry.get("loss"),
                               "reward": entry.get("reward"), "reward_std": entry.get("reward_std")}
        for key, value in entry.items():
            if key.startswith(REWARD_PREFIX) and key.endswith("/mean"):
                row[key[len(REWARD_PREFIX):-len("/mean")]] = value
        rows.append(row)
    return rows


def completion_groups(run_dir: str | Path) -> dict[tuple[str, str], list[float]]:
    """Total reward of every sampled completion, grouped by (step, prompt), from ms-swift's completions.jsonl
    (one JSON object of columns per logged step; one column per reward, NaN where it does not apply)."""
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    path = Path(run_dir) / "completions.jsonl"
    for table in read_jsonl(path):
        reward_columns = [k for k in table if k not in ("step", "prompt", "completion", "advantages")
                          and isinstance(table[k], list) and all(isinstance(v, (int, float)) for v in table[k])]
        for i, (step, prompt) in enumerate(zip(table["step"], table["prompt"])):
            values = [table[k][i] for k in reward_columns if _finite(table[k][i])]
            groups[(str(step), prompt)].append(round(sum(values), 6))
    return groups


def grpo_verdict(run_dir: str | Path) -> GrpoVerdict:
    """Judge a GRPO run from its own logs (see the module docstring for what passes)."""
    problems: list[str] = []
    rows = step_rows(run_dir)
    if not rows:
        problems.append("no logged GRPO step in logging.jsonl")
    for row in rows:
        means = {k: v for k, v in row.items() if k not in ("step", "loss", "reward", "reward_std")}
        if not any(_finite(v) for v in means.values()):
            problems.append(f"step {row['step']}: no reward was computed ({means or 'no rewards/*/mean logged'})")
        if not _finite(row["loss"]):
            problems.append(f"step {row['step']}: loss {row['loss']} is not finite")
    path = Path(run_dir) / "completions.jsonl"
    groups: dict[tuple[str, str], list[float]] = {}
    if not path.is_file():
        problems.append(f"{path}: missing (log_completions)")
    else:
        groups = completion_groups(run_dir)
    varied = sum(1 for values in groups.values() if len(values) > 1 and max(values) > min(values))
    if path.is_file() and not varied:
        problems.append(f"none of {len(groups)} groups of completions had a reward spread: no GRPO gradient")
    return GrpoVerdict(rows, len(groups), varied, problems)


@dataclass
class GrpoSmokeResult:
    sft_run: Path
    grpo_run: Path
    verdict: GrpoVerdict
    timings: dict[str, float]

    @property
    def ok(self) -> bool:
        return self.verdict.ok


def smoke_grpo(
    *,
    samples: str | Path = SAMPLES_DIR,
    data_dir: str | Path = "data",
    model_dir: str | Path = "models/tiny-qwen2",
    runs_root: str | Path = "runs",
    overrides: Sequence[str] = (),
    on_step: Callable[[str], None] = lambda s: None,
    on_output: Optional[Callable[[str], None]] = None,
) -> GrpoSmokeResult:
    """Run the GRPO smoke pipeline; returns the verdict (does not raise on a failed assertion)."""
    from datasets_prep.pipeline import prep
    from swiftkit.dev.smoke import StepTimer
    from swiftkit.dev.tiny import build_tiny_model
    from swiftkit.train import launch

    step = StepTimer(on_step)
    data = Path(data_dir).resolve()
    step("prep", lambda: [prep(s, Path(samples) / s, data / s) for s in SOURCES])
    step("tiny-model", lambda: build_tiny_model(model_dir))
    common = [f"model={Path(model_dir).resolve()}",
              f"data.train=[{', '.join(str(data / s / 'train.jsonl') for s in SOURCES)}]"]
    sft_run = step("sft warm-up", lambda: launch.train("smoke_grpo_sft", overrides=common, runs_root=runs_root,
                                                        on_output=on_output))
    grpo_run = step("grpo", lambda: launch.train("smoke_grpo", overrides=[*common, f"init_from={sft_run}", *overrides],
                                                 runs_root=runs_root, on_output=on_output))
    return GrpoSmokeResult(Path(sft_run), Path(grpo_run), grpo_verdict(grpo_run), step.timings)


def _fmt(value: Any) -> str:
    return f"{value:+.3f}" if _finite(value) else "  -   "


def summary(result: GrpoSmokeResult) -> str:
    """Per-step reward table, then the verdict rows (``key  value``, parsed back by smoke.parse_summary)."""
    v = result.verdict
    names = sorted({k for row in v.steps for k in row} - {"step", "loss", "reward", "reward_std"})
    head = ["step", "loss", "reward", "std", *names]
    table = [head] + [[str(row["step"]), f"{row['loss']:.2e}" if _finite(row["loss"]) else str(row["loss"]),
                       _fmt(row["reward"]), _fmt(row["reward_std"]), *(_fmt(row.get(n)) for n in names)]
                      for row in v.steps]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in table]
    rows = [("sft run", str(result.sft_run)), ("grpo run", str(result.grpo_run))]
    rows += [(f"{name} (s)", f"{secs:.1f}") for name, secs in result.timings.items()]
    rewards = [r["reward"] for r in v.steps if _finite(r["reward"])]
    rows += [
        ("grpo steps", str(len(v.steps))),
        ("mean reward first -> last", f"{rewards[0]:+.3f} -> {rewards[-1]:+.3f}" if rewards else "-"),
        ("groups with reward spread", f"{v.varied_groups}/{v.groups}"),
        ("smoke-grpo", "PASS" if result.ok else "FAIL"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(lines + [""] + [f"{k.ljust(width)}  {val}" for k, val in rows])
