"""`swiftkit plan muice_full` wall time beside `swift sft --help`, as a ratio measured in one run.

Both are timed as fresh processes (what a user waits for). The plan must stay under half a second: it imports
neither torch nor ms-swift, while `swift sft --help` pays for both. Run alone: `python -m benchmarks.plan_bench`.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

PLAN_RUNS = 7
HELP_RUNS = 3
BUDGET_S = 0.5


def _median_wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run() -> dict[str, float]:
    bin_dir = Path(sys.executable).parent
    swiftkit = [str(bin_dir / "swiftkit")] if (bin_dir / "swiftkit").exists() else [sys.executable, "-m", "swiftkit.cli"]
    swift = [str(bin_dir / "swift")] if (bin_dir / "swift").exists() else [sys.executable, "-m", "swift.cli.main"]
    plan_s = _median_wall([*swiftkit, "plan", "muice_full"], PLAN_RUNS)
    help_s = _median_wall([*swift, "sft", "--help"], HELP_RUNS)
    verdict = "ok" if plan_s < BUDGET_S else f"OVER the {BUDGET_S} s budget"
    print(f"plan: `swiftkit plan muice_full` median {plan_s * 1000:.0f} ms ({PLAN_RUNS} runs, {verdict}); "
          f"`swift sft --help` median {help_s:.2f} s ({HELP_RUNS} runs); ratio {help_s / plan_s:.1f}x faster",
          flush=True)
    return {"plan_s": plan_s, "swift_help_s": help_s, "ratio": help_s / plan_s}


if __name__ == "__main__":
    result = run()
    sys.exit(0 if result["plan_s"] < BUDGET_S else 1)
