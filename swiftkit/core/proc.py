"""Run a child process with its output teed, secrets masked, to a log file in the run directory and to a callback.

Shared by training (launch), inference and export: one place decides how child output is logged.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from swiftkit.core.errors import SwiftkitError
from swiftkit.core.secrets import SECRET_ENV, quote

NOTICE = "swiftkit notice: "
"""A child's line that starts so is meant for the user: :func:`run_logged` also prints it to stderr (e.g. a plugin a
checkpoint's args.json named and swiftkit ignored)."""


def secret_forms(value: str) -> list[str]:
    """The ways a secret can appear in output: as is, in a Python repr (ms-swift logs its arguments that way), in
    JSON, shell-quoted; longest first so a form that contains another is replaced whole."""
    forms = {value, repr(value)[1:-1], json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
             shlex.quote(value)}
    return sorted((f for f in forms if f), key=len, reverse=True)


def mask_value(text: str, value: str) -> str:
    """``text`` with every form of ``value`` replaced by ``***``."""
    for form in secret_forms(value):
        text = text.replace(form, "***")
    return text


def mask_secrets(text: str, environ: Optional[dict[str, str]] = None) -> str:
    """Replace the value of every secret environment variable found in ``text`` by ``***``."""
    env = os.environ if environ is None else environ
    for key in SECRET_ENV:
        value = env.get(key)
        if value and len(value) >= 4:
            text = mask_value(text, value)
    return text


def run_logged(cmd: Sequence[str], log_path: Path, *, env: dict[str, str],
               on_output: Optional[Callable[[str], None]] = None, append: bool = False) -> tuple[int, str]:
    """Run ``cmd`` with exactly ``env``; return (exit status, last non-empty output line).

    The log (``$ command`` first, ``exit status N`` last) is written line by line as the child prints, so it can be
    followed with ``tail -f`` and survives a failure or an interrupt; ``append`` continues an existing log (a resumed
    run). ``on_output`` sees each line as it comes. Secret values from ``env`` never reach either.

    The child runs in its own process group. Ctrl-C or SIGTERM (:class:`swiftkit.core.errors.Terminated`) stops that
    whole group (torchrun and every rank) before the interrupt goes on, so nothing is left running.
    """
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "a" if append else "w", encoding="utf-8", buffering=1)
    except OSError as exc:
        raise SwiftkitError(f"{log_path}: cannot write the log ({exc.strerror})") from exc
    last = ""
    with log:
        log.write(mask_secrets("$ " + quote(cmd), env) + "\n")  # shell-quoted, secret flags (--api_key) redacted
        proc = subprocess.Popen(list(cmd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                encoding="utf-8", errors="replace", bufsize=1, start_new_session=True)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                line = mask_secrets(line, env)
                log.write(line)
                if line.strip():
                    last = line.strip()
                if line.startswith(NOTICE):
                    print(line.rstrip("\n"), file=sys.stderr, flush=True)
                if on_output is not None:
                    on_output(line.rstrip("\n"))
            code = proc.wait()
        except BaseException:
            stop_group(proc)
            log.write(f"stopped: the process group of {proc.pid} was terminated\n")
            raise
        log.write(f"exit status {code}\n")
    return code, last


def stop_group(proc: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM to ``proc``'s process group, SIGKILL after ``grace`` seconds; quiet when it is already gone."""
    import signal

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_child(module: str, args: Sequence[str], log_path: Path, *, on_output: Optional[Callable[[str], None]] = None,
              env: Optional[dict[str, str]] = None) -> None:
    """Run ``python -m <module> args`` (this interpreter) logged to ``log_path``; one-line SwiftkitError naming the
    log when it fails."""
    cmd = python_module_command(module, args)
    code, last = run_logged(cmd, log_path, env={**os.environ, **(env or {})}, on_output=on_output)
    if code != 0:
        raise SwiftkitError(f"{module} failed (exit {code}): {last[:200]}; full log {log_path}")


def python_module_command(module: str, args: Sequence[str], python: str = sys.executable) -> list[str]:
    """``python -m module args``: what ``swift <x>`` runs (``swift.cli.<x>``), without its extra re-exec."""
    return [python, "-m", module, *args]
