"""The installed stack as data (:func:`collect`): Python, torch/CUDA/GPUs, packages against the supported ranges,
the ms-swift dialect, which compatibility shims apply. `swiftkit doctor` (swiftkit/cli/commands/doctor.py) prints it.
"""
from __future__ import annotations

import platform
from typing import Any, Optional

from swiftkit.core.errors import SwiftkitError
from swiftkit.stack import versions
from swiftkit.stack.dialect import SUPPORTED_RANGE, dialect_for, patches


def collect() -> dict[str, Any]:
    """The doctor report as data (imports torch and transformers.activations to answer)."""
    from swiftkit.core.devices import visible_gpus
    from swiftkit.stack import shims

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
        dialect = dialect_for(versions.installed("ms-swift"))
        report["dialect"] = dialect.name
        report["patches"] = [{"name": n, "live": live, "description": d} for n, live, d in patches(dialect)]
    except SwiftkitError as exc:
        report["dialect"] = f"unsupported: {exc}"
        report["patches"] = []
    report["shims"] = [
        {"name": name, "applies": needed, "description": shims.SHIMS[name].description}
        for name, needed in shims.status().items()
    ]
    report["ok"] = all(p["ok"] for p in report["packages"])
    return report


def check_versions() -> list[versions.VersionCheck]:
    """Each supported distribution against its range; an absent optional one is fine."""
    checks = []
    for name, spec in versions.supported_for(versions.installed("ms-swift")).items():
        version = versions.installed(name)
        if name == "ms-swift":  # the dialect table decides (3.12.x, or 4.x translated), as preflight does
            spec, ok = _ms_swift(version)
        else:
            ok = versions.in_range(version, spec) if version else name in versions.OPTIONAL
        checks.append(versions.VersionCheck(name, version, spec, ok, name in versions.OPTIONAL))
    return checks


def _ms_swift(version: Optional[str]) -> tuple[str, bool]:
    """ms-swift's range as the dialect table decides it (3.12.x, or 4.x translated), as preflight does."""
    try:
        dialect = dialect_for(version)
        return f"{versions.supported_for(version)['ms-swift']} ({dialect.name} dialect)", True
    except SwiftkitError:
        return f"{SUPPORTED_RANGE}, or 4.x", False
