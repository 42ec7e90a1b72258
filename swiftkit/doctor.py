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
import platform
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def collect() -> dict[str, Any]:
    """The doctor report as data (imports torch and transformers.activations to answer)."""
    from swiftkit import shims
    from swiftkit.devices import visible_gpus
    from swiftkit.dialect import dialect_for
    from swiftkit.errors import SwiftkitError
    from swiftkit.versions import check_versions, installed

    report: dict[str, Any] = {"python": platform.python_version()}
    try:
        import torch

        report["torch"] = torch.__version__
        report["cuda"] = torch.version.cuda
        report["cuda_available"] = bool(torch.cuda.is_available())
        report["gpu_count"] = visible_gpus()
    except ImportError:
        report.update(torch=None, cuda=None, cuda_available=False, gpu_count=0)
    report["packages"] = [
        {"name": c.name, "installed": c.installed, "supported": c.supported, "ok": c.ok, "verdict": c.verdict}
        for c in check_versions()
    ]
    try:
        report["dialect"] = dialect_for(installed("ms-swift")).name
    except SwiftkitError as exc:
        report["dialect"] = f"unsupported: {exc}"
    report["shims"] = [
        {"name": name, "applies": needed, "description": shims.SHIMS[name].description}
        for name, needed in shims.status().items()
    ]
    report["ok"] = all(p["ok"] for p in report["packages"])
    return report


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
    print("shims (applied in every training process by swiftkit.worker):")
    for s in report["shims"]:
        print(f"  {s['name']:<16} {'applies here' if s['applies'] else 'not needed here'}  {s['description']}")
    return 0 if report["ok"] else 1
