"""Installed stack versions via importlib.metadata (no heavy imports), checked against the supported ranges.

The ranges are the ones that fit together (pyproject.toml pins the same): ms-swift 3.12.x declares
transformers<4.58, trl>=0.15,<0.25 (its GRPO needs >=0.20), peft>=0.11,<0.19; its own full install caps
deepspeed<0.18 and vllm<0.11.1. :data:`SUPPORTED` states ms-swift's range once; which majors are accepted (3.12.x,
and 4.x translated) is the dialect table's decision (swiftkit.stack.dialect).
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib import metadata
from typing import Optional

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

SUPPORTED: dict[str, str] = {
    "ms-swift": ">=3.12,<3.13",  # the release swiftkit is written against; 4.x is translated (swiftkit.stack.dialect)
    "transformers": ">=4.45,<4.58",
    "torch": ">=2.4",
    "trl": ">=0.20,<0.25",
    "peft": ">=0.11,<0.19",
    "deepspeed": ">=0.14,<0.18",
    "datasets": ">=3.0,<4.0",
    "vllm": ">=0.8,<0.11.1",
    "bitsandbytes": ">=0.43",
}
"""Distribution name -> supported specifier, with ms-swift 3.12.x (the main venv's stack)."""

SUPPORTED_4X: dict[str, str] = {
    **SUPPORTED,
    "ms-swift": ">=4.0,<5",  # tested: 4.6.0 (`make test-swift4`)
    "trl": ">=0.26,<1.0",  # 4.6.0's GRPO trainer imports need it
    "peft": ">=0.11,<0.21",
    "datasets": ">=4.0,<4.8.5",  # 4.6.0's own requirement; 3.12.x needs <4.0, hence a venv per major
}
"""The ranges beside an ms-swift 4.x (its declared requirements, with transformers kept at swiftkit's pin)."""


def supported_for(ms_swift: Optional[str]) -> dict[str, str]:
    """The supported ranges that go with the installed ms-swift (3.x: :data:`SUPPORTED`; 4.x: :data:`SUPPORTED_4X`)."""
    return SUPPORTED_4X if ms_swift and ms_swift.split(".")[0] == "4" else SUPPORTED

OPTIONAL = {"deepspeed", "vllm", "bitsandbytes"}
"""Packages a CPU install may lack (vLLM needs CUDA; DeepSpeed only matters with several GPUs; bitsandbytes is the
`qlora` extra, for lora.qlora on a CUDA GPU)."""

REPORTED = ["ms-swift", "transformers", "torch", "trl", "peft", "deepspeed", "vllm", "datasets", "modelscope",
            "swanlab", "accelerate", "bitsandbytes", "swiftkit"]


def installed(dist: str) -> Optional[str]:
    """The installed version of a distribution, or None."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def stack_versions() -> dict[str, Optional[str]]:
    """Python and every reported distribution -> version (None when absent); what a run directory records."""
    out: dict[str, Optional[str]] = {"python": platform.python_version()}
    out.update({name: installed(name) for name in REPORTED})
    return out


@dataclass(frozen=True)
class VersionCheck:
    name: str
    installed: Optional[str]
    supported: str
    ok: bool
    optional: bool

    @property
    def verdict(self) -> str:
        if self.installed is None:
            return "absent (optional)" if self.optional else "MISSING"
        return "ok" if self.ok else "OUTSIDE SUPPORTED RANGE"


def in_range(version: str, spec: str) -> bool:
    try:
        return Version(version) in SpecifierSet(spec)
    except InvalidVersion:
        return False
