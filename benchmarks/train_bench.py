"""Tiny-model CPU training: throughput, and what the wrapper costs against the raw `swift sft` line.

The wrapper's cost (issue 21 item 5): `swiftkit train smoke_tiny` (10 epochs, 110 steps, 2 CPU processes) against the
`swift sft` line its own plan prints (same argv, same env, its own output folder), as interleaved A/B pairs (the order
alternates per pair, so drift on a shared machine falls on both arms). Per run: wall time and the whole process
tree's CPU time (``os.wait4``: the child and every descendant it reaped), the trainer's own runtime and its
steady-state steps/s, both from ms-swift's ``logging.jsonl`` (``elapsed = train_speed(s/it) x step`` at each logged
step; steady state = steps 10..last). Ratios are swiftkit / raw for time and raw / swiftkit for steps/s, so > 1 always
means swiftkit is slower; the medians, min and max over the pairs are printed. Before the pairs, `swiftkit train
--dry-run` runs twice in a fresh SWIFTKIT_CACHE: the first asks ms-swift (cold), the second reads the kept answers
(swiftkit.stack.answers), and both CPU times are printed; the timed pairs then run warm, as every launch after the
first of a recipe on an install does.

The throughput line comes from the same swiftkit runs: ms-swift logs `train_samples_per_second` (global) and the train
set's token lengths (`train_dataset`: "mean±std, min, max, size"); train tokens/s = samples/s x mean tokens per sample.

Run one after the other, the arms meet different minutes of a shared machine: on a quiet 2-core VM the same arm's
steady rate moves by up to +-8 % from run to run, more than the 2 % the wrapper may cost. ``--side-by-side`` runs
each pair's two arms at the same time instead, one training process each (``launch.nproc_per_node=1``), each arm and
every process it starts pinned to its own CPU (``sched_setaffinity``, swapped every pair), so a slow minute is slow
for both; it measures the wrapper on one process. ``--side-by-side --ddp`` keeps the recipe's 2-process DDP run
(gloo, the same global batch) in each arm, both ranks of an arm on that arm's one CPU: the wrapper with two ranks'
output to read and shims in each rank, at half the speed of 2 CPUs.

  python -m benchmarks.train_bench [--pairs 3] [--epochs 10] [--side-by-side [--ddp]]   # alone
  python -m benchmarks.run train                               # as a `make bench` section
"""
from __future__ import annotations

import json
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

_DATASET_STATS = re.compile(r"^\s*([0-9.]+)±([0-9.]+), min=([0-9.]+), max=([0-9.]+), size=(\d+)")
STEADY_FROM = 10
"""Logged steps before this one are warm-up (first iterations, allocator growth) and left out of the steady rate."""
PAIRS = 3
AB_EPOCHS = 10


def parse_logging(path: Path) -> tuple[float, float, int, float, float]:
    """(samples/s, mean tokens per sample, train size, epochs, runtime s) from ms-swift's logging.jsonl."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    final = next((r for r in reversed(rows) if "train_samples_per_second" in r), None)
    stats = next((r["train_dataset"] for r in reversed(rows) if isinstance(r.get("train_dataset"), str)), None)
    if final is None or stats is None:
        raise ValueError(f"{path}: no train_samples_per_second / train_dataset entry (did training finish?)")
    match = _DATASET_STATS.match(stats)
    if not match:
        raise ValueError(f"{path}: field train_dataset {stats!r}: unexpected format")
    return (float(final["train_samples_per_second"]), float(match.group(1)), int(match.group(5)),
            float(final.get("epoch", 0)), float(final.get("train_runtime", 0)))


def steady_rate(path: Path, start: int = STEADY_FROM) -> tuple[float, int]:
    """(steps/s from step ``start`` to the last logged step, that last step) from ms-swift's logging.jsonl: each
    step's row has ``train_speed(s/it)`` = seconds since training began / steps, so elapsed = speed x step."""
    points = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line) if line.strip() else {}
        if "loss" in row and "train_speed(s/it)" in row and "global_step/max_steps" in row:
            step = int(str(row["global_step/max_steps"]).split("/")[0])
            points.append((step, float(row["train_speed(s/it)"]) * step))
    points = [p for p in points if p[0] >= start]
    if len(points) < 2 or points[-1][1] <= points[0][1]:
        raise ValueError(f"{path}: fewer than 2 logged steps from step {start} (did training finish?)")
    (first, t0), (last, t1) = points[0], points[-1]
    return (last - first) / (t1 - t0), last


@dataclass
class ArmRun:
    arm: str
    wall_s: float
    cpu_s: float
    """User + system CPU of the whole process tree."""
    runtime_s: float
    """The trainer's own train_runtime."""
    steady_steps_per_s: float
    samples_per_second: float
    mean_tokens: float

    @property
    def outside_s(self) -> float:
        """Wall time outside the trainer's loop: start-up (launcher, preflight, torchrun, imports, model load) and
        teardown (final save, persona, exit)."""
        return self.wall_s - self.runtime_s


@dataclass
class _Started:
    cmd: list[str]
    out: Path
    pid: int
    start: float


def _start(cmd: list[str], env: dict[str, str], out: Path, cpu: Optional[int] = None) -> _Started:
    """Start ``cmd`` with its output in ``out``, pinned with every process it starts to ``cpu`` when given."""
    import os
    import subprocess
    import time

    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    with open(out, "w", encoding="utf-8") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT, preexec_fn=pin)
    return _Started(cmd, out, proc.pid, start)


def _finish(run: _Started) -> tuple[float, float]:
    """Wait for a started command: (wall s, CPU s of it and every descendant it reaped). Raises when it failed."""
    import os
    import time

    _, status, usage = os.wait4(run.pid, 0)
    wall = time.perf_counter() - run.start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(run.cmd[:3])} exited {code}; see {run.out}")
    return wall, usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], env: dict[str, str], out: Path) -> tuple[float, float]:
    """Run ``cmd`` with its output in ``out``; (wall s, CPU s of it and every descendant it reaped)."""
    return _finish(_start(cmd, env, out))


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _arm_run(arm: str, cmd: list[str], env: dict[str, str], run_dir: Path) -> ArmRun:
    return _arm_result(arm, run_dir, *_timed(cmd, env, run_dir.parent / f"{run_dir.name}.out"))


def _arm_result(arm: str, run_dir: Path, wall: float, cpu: float) -> ArmRun:
    log = run_dir / "logging.jsonl"
    sps, mean_tokens, _, _, runtime = parse_logging(log)
    steady, _ = steady_rate(log)
    return ArmRun(arm, wall, cpu, runtime, steady, sps, mean_tokens)


@dataclass
class Comparison:
    runs: list[ArmRun]
    cold_preflight_cpu_s: float
    warm_preflight_cpu_s: float
    side_by_side: bool = False
    processes: int = 2
    """Training processes per run: the recipe's 2 (DDP), or 1 with --side-by-side alone."""

    def arm(self, name: str) -> list[ArmRun]:
        return [r for r in self.runs if r.arm == name]

    def ratios(self, field: str, invert: bool = False) -> list[float]:
        """Per pair: swiftkit / raw of ``field`` (raw / swiftkit with ``invert``)."""
        pairs = zip(self.arm("swiftkit"), self.arm("raw"))
        return [(getattr(r, field) / getattr(s, field)) if invert else (getattr(s, field) / getattr(r, field))
                for s, r in pairs]


def _say(line: str) -> None:
    print(line, flush=True)


def _spread(values: list[float], fmt: str = ".3f") -> str:
    import statistics

    return f"median {statistics.median(values):{fmt}} (min {min(values):{fmt}}, max {max(values):{fmt}})"


def compare(pairs: int = PAIRS, epochs: int = AB_EPOCHS, workdir: Path | None = None,
            say: Callable[[str], None] = _say, side_by_side: bool = False, ddp: bool = False) -> Comparison:
    """The interleaved A/B of the module docstring, under ``workdir`` (a temp folder when None). ``side_by_side``:
    each pair's two arms run at the same time, one training process each, each arm pinned to its own CPU (swapped
    every pair), so that what slows the machine for a minute slows both arms alike; with ``ddp`` each arm keeps the
    recipe's 2 processes, on its one CPU."""
    import os

    from benchmarks.tinyrun import tiny_inputs
    from swiftkit.train.launch import plan_run

    with tempfile.TemporaryDirectory(prefix="swiftkit-train-ab-") as tmp:
        root = Path(workdir or tmp)
        overrides = [*tiny_inputs(root), f"num_train_epochs={epochs}"]
        cpus = sorted(os.sched_getaffinity(0))[:2] if side_by_side else []
        if side_by_side:
            if len(cpus) < 2:
                raise RuntimeError("--side-by-side needs 2 CPUs")
            if not ddp:
                overrides += ["launch.nproc_per_node=1", "global_batch_size=1"]
        bin_dir = Path(sys.executable).parent
        swiftkit = ([str(bin_dir / "swiftkit")] if (bin_dir / "swiftkit").exists()
                    else [sys.executable, "-m", "swiftkit.cli"])
        swift = str(bin_dir / "swift")
        env = {**os.environ, "SWIFTKIT_CACHE": str(root / "cache")}  # cold answers first, then warm
        sets = [word for o in overrides for word in ("--set", o)]

        def swiftkit_cmd(run_dir: Path, *more: str) -> list[str]:
            return [*swiftkit, "train", "smoke_tiny", *sets, "--run-dir", str(run_dir), *more]

        cold = _timed(swiftkit_cmd(root / "dry-cold", "--dry-run"), env, root / "dry-cold.out")[1]
        warm = _timed(swiftkit_cmd(root / "dry-warm", "--dry-run"), env, root / "dry-warm.out")[1]
        say(f"train: preflight (`swiftkit train --dry-run`): {cold:.1f} CPU-s cold (asks ms-swift), {warm:.1f} CPU-s "
            f"warm (kept answers)")
        runs: list[ArmRun] = []
        for i in range(pairs):
            raw_dir = root / f"raw-{i}"
            p = plan_run("smoke_tiny", overrides=overrides, run_dir=raw_dir).plan
            if p.argv[0] != "swift":
                raise RuntimeError(f"the plan's line starts {p.argv[:2]}, not `swift ...`")
            raw_env = {**env, **p.env, "MASTER_PORT": str(_free_port())}  # swiftkit picks a free port too
            arms = [("swiftkit", swiftkit_cmd(root / f"sk-{i}"), env, root / f"sk-{i}"),
                    ("raw", [swift, *p.argv[1:]], raw_env, raw_dir)]
            if side_by_side:
                started = [(name, run_dir, _start(cmd, arm_env, run_dir.parent / f"{run_dir.name}.out", cpu))
                           for (name, cmd, arm_env, run_dir), cpu in zip(arms, cpus if i % 2 == 0 else cpus[::-1])]
                done = [_arm_result(name, run_dir, *_finish(proc)) for name, run_dir, proc in started]
            else:
                done = [_arm_run(name, cmd, arm_env, run_dir)
                        for name, cmd, arm_env, run_dir in (arms if i % 2 == 0 else arms[::-1])]
            for run in done:
                runs.append(run)
                say(f"train: pair {i + 1} {run.arm:8s} wall {run.wall_s:6.1f} s, CPU {run.cpu_s:6.1f} s, trainer "
                    f"{run.runtime_s:5.1f} s, outside the loop {run.outside_s:5.1f} s, steady "
                    f"{run.steady_steps_per_s:.3f} steps/s")
        return Comparison(runs, cold, warm, side_by_side, 1 if side_by_side and not ddp else 2)


def report(c: Comparison, say: Callable[[str], None] = _say) -> None:
    """The summary lines of a comparison."""
    import statistics

    sk, raw = c.arm("swiftkit"), c.arm("raw")
    how = (f"side-by-side pinned ({c.processes} process(es) on 1 CPU per arm)" if c.side_by_side
           else "interleaved")
    say(f"train: swiftkit/raw over {len(sk)} {how} pairs: wall {_spread(c.ratios('wall_s'))}; steady "
        f"steps/s raw/swiftkit {_spread(c.ratios('steady_steps_per_s', invert=True))}; CPU "
        f"{_spread(c.ratios('cpu_s'))}; outside the loop swiftkit {statistics.median(r.outside_s for r in sk):.1f} s "
        f"vs raw {statistics.median(r.outside_s for r in raw):.1f} s (medians); targets: wall <= 1.05, "
        f"steps/s <= 1.02")
    say(f"train: smoke_tiny tiny-qwen2 cpu {c.processes} proc (swiftkit arm): "
        f"{statistics.median(r.samples_per_second for r in sk):.2f} samples/s, "
        f"{statistics.median(r.samples_per_second * r.mean_tokens for r in sk):.0f} train tokens/s "
        f"({sk[0].mean_tokens:.1f} tok/sample; ms-swift logging.jsonl)")


def run(pairs: int = PAIRS, epochs: int = AB_EPOCHS, side_by_side: bool = False, ddp: bool = False) -> Comparison:
    c = compare(pairs, epochs, side_by_side=side_by_side, ddp=ddp)
    report(c)
    return c


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="swiftkit train vs the raw swift sft line (interleaved A/B)")
    parser.add_argument("--pairs", type=int, default=PAIRS)
    parser.add_argument("--epochs", type=int, default=AB_EPOCHS)
    parser.add_argument("--side-by-side", action="store_true",
                        help="run each pair's arms at once, one process each, pinned to a CPU each (swapped per pair)")
    parser.add_argument("--ddp", action="store_true",
                        help="with --side-by-side: each arm keeps the recipe's 2 DDP processes, both on its one CPU")
    args = parser.parse_args(argv)
    if args.ddp and not args.side_by_side:
        parser.error("--ddp goes with --side-by-side (interleaved runs are always the 2-process DDP run)")
    run(args.pairs, args.epochs, args.side_by_side, args.ddp)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # one line, like the other sections
        print(f"train: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
