"""The smoke's margin across seeds, thread counts and process counts (`make smoke-sweep`; each run takes one smoke's
time, which README.md states).

CPU float results differ between CPU types, so one passing smoke proves little: this runs the whole smoke
(prep, tiny model, training through the launcher, check, infer) once per configuration and prints one row each:
the final train loss, greedy == trained answers, no-system identity answers == run-system ones, the verdict.
Exit 0 only when every run passes.

  python scripts/smoke_sweep.py                          # the default grid (6 runs: 4 seeds, 1/2 threads, 1/2 processes)
  python scripts/smoke_sweep.py --grid 42:2:1 7:1:2      # seed:processes:OMP_NUM_THREADS
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_GRID = ["42:2:1", "42:2:2", "1:2:1", "2:2:1", "3:1:1", "42:1:2"]


def one_run(root: Path, seed: int, nproc: int, threads: int) -> dict[str, str]:
    tag = f"s{seed}-p{nproc}-t{threads}"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "swiftkit.cli", "smoke", "--quiet", "--data-dir", str(root / "data"),
           "--model-dir", str(root / "models" / "tiny-qwen2"), "--runs-root", str(root / "runs" / tag),
           "--set", f"seed={seed}", "--set", f"launch.nproc_per_node={nproc}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    from swiftkit.dev.smoke import parse_summary

    rows = parse_summary(proc.stdout)
    (root / f"{tag}.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    return {"config": tag, "exit": str(proc.returncode), "final loss": rows.get("final train loss", "-"),
            "greedy": rows.get("greedy == trained answer", "-"),
            "no system": (rows.get("no system == run system") or "-").split()[0],
            "identity": (rows.get("check identity") or "-").split()[0],
            "smoke": rows.get("smoke", "FAIL"), "wall s": f"{time.perf_counter() - start:.0f}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", nargs="+", default=DEFAULT_GRID, metavar="SEED:PROCS:THREADS")
    parser.add_argument("--keep", help="folder for runs and logs (default: a temporary folder, removed)")
    args = parser.parse_args(argv)
    root = Path(args.keep or tempfile.mkdtemp(prefix="smoke-sweep-"))
    results = []
    for item in args.grid:
        seed, nproc, threads = (int(x) for x in item.split(":"))
        results.append(one_run(root, seed, nproc, threads))
        row = results[-1]
        print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    keys = list(results[0])
    widths = {k: max(len(k), *(len(r[k]) for r in results)) for k in keys}
    print("\n" + "  ".join(k.ljust(widths[k]) for k in keys))
    for r in results:
        print("  ".join(r[k].ljust(widths[k]) for k in keys))
    passed = sum(r["smoke"] == "PASS" for r in results)
    print(f"{passed}/{len(results)} runs pass (logs in {root})")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
