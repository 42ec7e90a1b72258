"""Run directories are data: ms-swift imports no code a checkpoint's args.json names, unless the user says so.

``swift infer``, ``swift deploy`` and ``swift export`` reload ``args.json`` from the checkpoint they are given and
take from it, among others, ``external_plugins`` and ``custom_register_path`` — Python files that ms-swift then
imports. A run directory someone shared could so run code on ``swiftkit infer`` / ``serve`` / ``eval`` / ``export``.
:func:`guard_checkpoint_args` wraps ms-swift's ``BaseArguments.load_args_from_ckpt`` so those keys keep the values
the command line gave (none), and says in one line what it ignored; ``--trust-run-code`` (which sets
:data:`TRUST_ENV`) lets them through. swiftkit's children of ms-swift call it before ms-swift parses its arguments
(:mod:`swiftkit.stack.swift_child`, :mod:`swiftkit.deploy.deploy_child`).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, Optional

from swiftkit.core.proc import NOTICE

CODE_KEYS: tuple[str, ...] = ("external_plugins", "custom_register_path")
"""args.json keys whose values are Python files ms-swift imports."""

TRUST_ENV = "SWIFTKIT_TRUST_RUN_CODE"
"""Set to 1 (by ``--trust-run-code``) to let a checkpoint's args.json import its plugins."""


def trusted(environ: Optional[dict[str, str]] = None) -> bool:
    return (os.environ if environ is None else environ).get(TRUST_ENV) == "1"


def restore_code_keys(args: Any, before: dict[str, Any], source: str, *, trust: bool,
                      say: Callable[[str], None]) -> list[str]:
    """After ms-swift loaded ``source`` (an args.json) into ``args``: put back the code keys as they were before,
    unless ``trust``; returns the keys that were ignored, and says so in one line."""
    ignored = []
    for key in CODE_KEYS:
        loaded = getattr(args, key, None)
        if loaded != before.get(key) and loaded:
            if trust:
                say(f"{NOTICE}importing {key}={loaded} named by {source} (--trust-run-code)")
                continue
            setattr(args, key, before.get(key))
            ignored.append(f"{key}={loaded}")
    if ignored:
        say(f"{NOTICE}ignored {', '.join(ignored)} from {source}: a run directory runs no code; pass "
            "--trust-run-code to import it")
    return ignored


def guard_checkpoint_args() -> bool:
    """Wrap ms-swift's ``load_args_from_ckpt`` (3.x: ``swift.llm.argument.base_args.BaseArguments``). Idempotent;
    returns True once the guard is in place. Raises RuntimeError when ms-swift lacks the method it wraps: a guard
    that silently does not apply would be worse than none."""
    from swiftkit.core.errors import SwiftkitError
    from swiftkit.stack.dialect import swift_api

    try:
        BaseArguments = swift_api("BaseArguments")
    except SwiftkitError as exc:
        raise RuntimeError(f"swiftkit's run-code guard cannot find ms-swift's BaseArguments ({exc})") from exc
    original = getattr(BaseArguments, "load_args_from_ckpt", None)
    if original is None:
        raise RuntimeError("swiftkit's run-code guard: ms-swift's BaseArguments has no load_args_from_ckpt")
    if getattr(original, "_swiftkit_guarded", False):
        return True

    def load_args_from_ckpt(self: Any) -> None:
        before = {key: getattr(self, key, None) for key in CODE_KEYS}
        original(self)
        restore_code_keys(self, before, os.path.join(str(self.ckpt_dir), "args.json"), trust=trusted(),
                          say=lambda line: print(line, file=sys.stderr, flush=True))

    load_args_from_ckpt._swiftkit_guarded = True  # type: ignore[attr-defined]
    BaseArguments.load_args_from_ckpt = load_args_from_ckpt
    return True
