"""The installed stack as data (:func:`collect`): Python, torch/CUDA/GPUs, packages against the supported ranges,
the ms-swift dialect, which compatibility shims apply. `swiftkit doctor` (swiftkit/cmd_doctor.py) prints it.
"""
from __future__ import annotations

import platform
from typing import Any


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
