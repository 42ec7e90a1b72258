"""Report the installed stack: Python, torch, CUDA and GPUs, ms-swift and friends against the supported ranges,
the ms-swift dialect in use, and which compatibility shims apply here.

Exit status 1 when a required package is missing or outside its supported range (useful in CI).

example:
  swiftkit doctor
  swiftkit doctor --json
"""
from __future__ import annotations

import argparse
import json

from swiftkit.stack.doctor import collect


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    report = collect()
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0 if report["ok"] else 1
    print(f"python        {report['python']}")
    print(f"torch         {report['torch']}  (CUDA {report['cuda'] or 'none'}, "
          f"{'available' if report['cuda_available'] else 'not available'}, {report['gpu_count']} GPU(s))")
    for p in report["packages"]:
        print(f"{p['name']:<13} {p['installed'] or '-':<12} supported {p['supported']:<14} {p['verdict']}")
    print(f"ms-swift dialect: {report['dialect']}")
    print("patches into ms-swift (by dialect):")
    for p in report["patches"]:
        print(f"  {p['name']:<22} {'live' if p['live'] else 'not needed'}  {p['description']}")
    print("shims (applied in every training process by swiftkit.train.worker):")
    for s in report["shims"]:
        print(f"  {s['name']:<16} {'applies here' if s['applies'] else 'not needed here'}  {s['description']}")
    return 0 if report["ok"] else 1
