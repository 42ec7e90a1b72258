"""Serve a trained run over an OpenAI-compatible HTTP API with `swift deploy`: :func:`start_server` returns a
:class:`Server` (wait_ready, chat, stop). Loopback by default, a key required off loopback, the key read from the
environment or a private file (:func:`read_key_file`) and passed only through the child's environment, masked in
its output. The child (:mod:`swiftkit.deploy.deploy_child`) guards the server (request size and idle limits,
:mod:`swiftkit.deploy.serve_guard`) and dies with the process that started it; the conversation log is private.
`swiftkit serve` (swiftkit/cli/commands/serve.py) is its command.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional

from swiftkit.core.errors import SwiftkitError
from swiftkit.core.proc import mask_value, python_module_command, stop_group
from swiftkit.core.secrets import quote
from swiftkit.deploy.deploy_child import KEY_ENV, own_args
from swiftkit.deploy.infer_args import Backend, GenerationOptions, deploy_args
from swiftkit.deploy.serve_guard import GuardSettings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
LOOPBACK = ("127.0.0.1", "localhost", "::1")
CONVERSATIONS = "serve/conversations.jsonl"
"""Where ms-swift logs served requests and answers, inside the run directory (not in the checkpoint); private to
the user (folder 0700, file 0600: :func:`private_log`)."""
API_KEY_ENV = "SWIFTKIT_API_KEY"
"""Where `swiftkit serve` reads the key from when no --api-key-file is given."""


def read_key_file(path: str | Path) -> str:
    """The API key in ``path`` (its first line, surrounding whitespace stripped). The file must be private: one
    readable by group or others is refused, as ssh refuses such a private key."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SwiftkitError(f"--api-key-file {path}: {getattr(exc, 'strerror', None) or exc}")
    if mode & 0o077:
        raise SwiftkitError(f"--api-key-file {path}: readable by other users (mode {mode & 0o777:o}); "
                            f"run `chmod 600 {path}`")
    key = (text.strip().splitlines() or [""])[0].strip()
    if not key:
        raise SwiftkitError(f"--api-key-file {path}: the file is empty")
    return key


def private_log(path: Path) -> Path:
    """Create ``path`` (and its folder) readable by the user alone, and tighten them if they exist: ms-swift
    appends to the file, keeping its mode."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        os.chmod(path, 0o600)
    except OSError as exc:
        raise SwiftkitError(f"{path}: cannot create the private conversation log: {exc.strerror or exc}")
    return path


def require_key_off_loopback(host: str, api_key: Optional[str]) -> None:
    """A server reachable from other machines must ask for a key."""
    if host not in LOOPBACK and not api_key:
        raise SwiftkitError(f"--host {host} serves beyond this machine: give an API key "
                            f"(${API_KEY_ENV} or --api-key-file), or keep the default 127.0.0.1")


def port_in_use(host: str, port: int) -> bool:
    """True when ``port`` cannot be bound on ``host`` or on all interfaces (ms-swift's own test binds '')."""
    for addr in dict.fromkeys([host, ""]):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((addr, port))
            except OSError:
                return True
    return False


def port_busy_reason(host: str, port: int) -> str:
    """One line for a port that :func:`port_in_use` refused: a live listener, or connections still closing."""
    target = "127.0.0.1" if host in ("", "0.0.0.0") else host
    try:
        with socket.create_connection((target, port), timeout=1):
            return f"port {port} on {host} is already in use; pick another with --port"
    except OSError:
        return (f"port {port} on {host} is still held by closing connections (TIME_WAIT) and ms-swift would "
                "silently move to another port; retry in a minute or pick another with --port")


@dataclass
class Server:
    process: subprocess.Popen
    host: str
    port: int
    model_name: str
    api_key: Optional[str] = None
    pump: Optional[threading.Thread] = None
    """Copies the server's output (key masked); joined by stop()."""

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def request(self, path: str, payload: Optional[dict] = None, *, api_key: Optional[str] = None,
                timeout: float = 120) -> tuple[int, dict]:
        """(status, JSON body) of a GET (no payload) or POST to the server."""
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method="POST" if data else "GET")
        req.add_header("Content-Type", "application/json")
        if api_key:
            req.add_header("Authorization", f"Bearer {api_key}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body or b"{}")
            except json.JSONDecodeError:
                return exc.code, {"raw": body.decode(errors="replace")}

    def chat(self, messages: list[dict], *, api_key: Optional[str] = None, max_tokens: int = 64) -> tuple[int, dict]:
        return self.request("/v1/chat/completions", {"model": self.model_name, "messages": messages,
                                                     "max_tokens": max_tokens, "temperature": 0},
                            api_key=api_key)

    def wait_ready(self, timeout: Optional[float] = 300) -> None:
        """Poll /v1/models (with the key) until the server answers; SwiftkitError if the process dies or time runs
        out (``timeout=None``: wait as long as the process lives, as a large model may load for many minutes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SwiftkitError(f"swift deploy exited with status {self.process.returncode} before serving")
            try:
                status, _ = self.request("/v1/models", api_key=self.api_key, timeout=5)
                if status == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(1)
        raise SwiftkitError(f"swift deploy did not answer on {self.base_url} within {timeout:.0f} s")

    def stop(self, grace: float = 15) -> int:
        """Stop the server's whole process group (SIGTERM, then SIGKILL after ``grace`` seconds), also the
        processes it started when the leader is already gone."""
        stop_group(self.process, grace)
        if self.pump is not None:
            self.pump.join(timeout=10)
        return self.process.returncode


def deploy_command(run_dir: str | Path, *, host: str, port: int, checkpoint: str = "last",
                   backend: Optional[Backend] = None, served_model_name: Optional[str] = None,
                   max_new_tokens: int = 512, guard: GuardSettings = GuardSettings()) -> tuple[list[str], str]:
    """The ``python -m swiftkit.deploy.deploy_child ...`` command for a run (swiftkit's guard settings, this process
    as the parent the server dies with, ms-swift's deploy arguments; never the key), and the model name clients
    must send."""
    from swiftkit.core.devices import visible_gpus
    from swiftkit.deploy.infer import model_spec_for, vllm_options
    from swiftkit.run.rundir import read_run_info
    from swiftkit.stack.backend import default_backend, require_backend

    info = read_run_info(run_dir)
    backend = backend or default_backend()
    require_backend(backend)
    spec = model_spec_for(run_dir, checkpoint)
    name = served_model_name or info.recipe
    gen = GenerationOptions(max_new_tokens=max_new_tokens)
    vllm = vllm_options(info, gpu_memory_utilization=0.9, max_model_len=None, max_new_tokens=max_new_tokens,
                        gpus=visible_gpus() if backend == "vllm" else 0)
    args = deploy_args(spec, host=host, port=port, served_model_name=name, backend=backend, vllm=vllm,
                       generation=gen)
    args += ["--result_path", str(Path(run_dir).resolve() / CONVERSATIONS)]
    return python_module_command("swiftkit.deploy.deploy_child", own_args(guard, os.getpid()) + args), name


def _pump(stream: IO[str], sink: IO[str], secret: Optional[str]) -> None:
    """Copy the server's output to ``sink`` line by line with the API key masked (ms-swift logs its args)."""
    try:
        for line in stream:
            sink.write(mask_value(line, secret) if secret else line)
            sink.flush()
    except ValueError:  # the sink was closed under us: nothing left to copy to
        pass


def _spawn(cmd: list[str], sink: IO[str], api_key: Optional[str]) -> tuple[subprocess.Popen, threading.Thread]:
    """Start ``cmd`` in its own process group (so :meth:`Server.stop` ends every child), output masked; the key
    goes through the child's environment, never its arguments."""
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    if api_key:
        env[KEY_ENV] = api_key
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8",
                            errors="replace", start_new_session=True, env=env)
    assert proc.stdout is not None
    pump = threading.Thread(target=_pump, args=(proc.stdout, sink, api_key), daemon=True)
    pump.start()
    return proc, pump


def start_server(run_dir: str | Path, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 api_key: Optional[str] = None, checkpoint: str = "last", backend: Optional[Backend] = None,
                 served_model_name: Optional[str] = None, log: Optional[IO[str]] = None,
                 guard: GuardSettings = GuardSettings()) -> Server:
    """Start `swift deploy`; output (key masked) goes to ``log`` or stdout. Does not wait: see wait_ready(). The
    server dies with this process (the thread calling this must live as long: Linux ties the parent-death signal
    to it)."""
    require_key_off_loopback(host, api_key)
    if guard.max_request_bytes < 1 or guard.idle_timeout_s <= 0:
        raise SwiftkitError("--max-request-bytes and --idle-timeout must be positive")
    if port_in_use(host, port):
        raise SwiftkitError(port_busy_reason(host, port))
    cmd, name = deploy_command(run_dir, host=host, port=port, checkpoint=checkpoint, backend=backend,
                               served_model_name=served_model_name, guard=guard)
    private_log(Path(run_dir).resolve() / CONVERSATIONS)
    sink = log if log is not None else sys.stdout
    sink.write("$ " + quote(cmd) + "\n")
    sink.flush()
    proc, pump = _spawn(cmd, sink, api_key)
    return Server(proc, host, port, name, api_key, pump)
