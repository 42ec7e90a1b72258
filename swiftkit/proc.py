"""Run a child process with its output teed, secrets masked, to a log file in the run directory and to a callback.

Shared by training (launch), inference and export: one place decides how child output is logged.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable, Optional, Sequence

from swiftkit.atomic import atomic_open
from swiftkit.errors import SwiftkitError
from swiftkit.infer_args import python_module_command, quote
from swiftkit.plan import SECRET_ENV


def mask_secrets(text: str, environ: Optional[dict[str, str]] = None) -> str:
    """Replace the value of every secret environment variable found in ``text`` by ``***``."""
    env = os.environ if environ is None else environ
    for key in SECRET_ENV:
        value = env.get(key)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def run_logged(cmd: Sequence[str], log_path: Path, *, env: dict[str, str],
               on_output: Optional[Callable[[str], None]] = None) -> tuple[int, str]:
    """Run ``cmd`` with exactly ``env``; return (exit status, last non-empty output line).

    The log (``$ command`` first, ``exit status N`` last) is written atomically, so it appears whole when the
    process ends; ``on_output`` sees each line as it comes. Secret values from ``env`` never reach either.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    last = ""
    with atomic_open(log_path) as log:
        log.write(mask_secrets("$ " + quote(cmd), env) + "\n")  # shell-quoted, secret flags (--api_key) redacted
        proc = subprocess.Popen(list(cmd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                encoding="utf-8", errors="replace", bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            line = mask_secrets(line, env)
            log.write(line)
            if line.strip():
                last = line.strip()
            if on_output is not None:
                on_output(line.rstrip("\n"))
        code = proc.wait()
        log.write(f"exit status {code}\n")
    return code, last


def run_child(module: str, args: Sequence[str], log_path: Path, *, on_output: Optional[Callable[[str], None]] = None,
              env: Optional[dict[str, str]] = None) -> None:
    """Run ``python -m <module> args`` (this interpreter) logged to ``log_path``; one-line SwiftkitError naming the
    log when it fails."""
    cmd = python_module_command(module, args)
    code, last = run_logged(cmd, log_path, env={**os.environ, **(env or {})}, on_output=on_output)
    if code != 0:
        raise SwiftkitError(f"{module} failed (exit {code}): {last[:200]}; full log {log_path}")
