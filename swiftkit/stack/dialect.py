"""The ms-swift command-line dialect: one table of what changed between major releases, consulted in one place.

swiftkit writes every argument list in the 3.x dialect (3.12.x is the supported release) and translates it when
another supported major is installed. ms-swift rejects unknown flags (``remaining_argv``), so an argument list in
the wrong dialect fails at startup; translating here, or refusing with one line, is what keeps that from happening.

Differences 3.x -> 4.x (checked by hand against an installed ms-swift 4.6.0):

- ``--train_type`` became ``--tuner_type`` (the old name was removed in 4.1);
- ``--custom_register_path`` became ``--external_plugins``;
- model type ``qwen2_5`` became ``qwen2``; ``--infer_backend pt`` became ``transformers``;
- the entry points (``sft_main``, ``rlhf_main``) are imported from ``swift`` instead of ``swift.llm``.

Checked once by hand against an installed ms-swift 4.6.0 (with transformers 4.56.2): every recipe's 1-GPU argument
list, QLoRA variants included, translated by :data:`SWIFT4`, names only ``SftArguments`` fields and parses with no
leftover; untranslated, ``--train_type`` is unknown there. CI installs 3.12.6 only, so the tests check the table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from swiftkit.core.errors import SwiftkitError
from swiftkit.stack.versions import SUPPORTED, installed

SUPPORTED_RANGE = SUPPORTED["ms-swift"]
"""The ms-swift release swiftkit is written and tested against (stated once, in :data:`swiftkit.stack.versions.SUPPORTED`)."""


@dataclass(frozen=True)
class Dialect:
    """How one ms-swift major spells the 3.x argument list."""

    name: str
    flag_renames: Mapping[str, str] = field(default_factory=dict)
    value_renames: Mapping[tuple[str, str], str] = field(default_factory=dict)
    main_module: str = "swift.llm"
    """Where the methods' entry points (``sft_main``, ``rlhf_main``) are imported from."""

    def translate(self, argv: Sequence[str]) -> list[str]:
        """Translate a 3.x ``swift sft`` argument list (flags as ``--name value...``) to this dialect."""
        out: list[str] = []
        current: str | None = None
        for token in argv:
            if token.startswith("--"):
                current = token[2:]
                out.append("--" + self.flag_renames.get(current, current))
            else:
                out.append(self.value_renames.get((current, token), token) if current else token)
        return out


SWIFT3 = Dialect(name="3.x")
SWIFT4 = Dialect(
    name="4.x",
    flag_renames={"train_type": "tuner_type", "custom_register_path": "external_plugins"},
    value_renames={("model_type", "qwen2_5"): "qwen2", ("infer_backend", "pt"): "transformers"},
    main_module="swift",
)


def flag_value(argv: Sequence[str], name: str) -> str | None:
    """The value after ``--name`` in an ms-swift argument list (its first value for a list flag); None when absent."""
    flag = f"--{name}"
    for i, token in enumerate(argv[:-1]):
        if token == flag:
            return argv[i + 1]
    return None


def installed_entry(name: str):
    """A function (``sft_main``, ``rlhf_main``, ``deploy_main``) of the installed ms-swift's main module, wherever
    its major release keeps them."""
    import importlib

    return getattr(importlib.import_module(dialect_for(installed("ms-swift")).main_module), name)


def dialect_for(version: str | None) -> Dialect:
    """The dialect of an installed ms-swift version; one-line SwiftkitError when it is missing or unsupported."""
    if not version:
        raise SwiftkitError(f"ms-swift is not installed; swiftkit supports ms-swift {SUPPORTED_RANGE}")
    parts = version.split(".")
    try:
        major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise SwiftkitError(f"ms-swift {version}: unreadable version; swiftkit supports ms-swift {SUPPORTED_RANGE}")
    if major == 3 and minor >= 12:
        return SWIFT3
    if major == 4:
        return SWIFT4
    raise SwiftkitError(
        f"ms-swift {version} is installed; swiftkit supports ms-swift {SUPPORTED_RANGE} (4.x is translated)"
    )
