"""The server's guards without a model: the ASGI front door, the key's sources, the child's settings, the
ms-swift shape check and dying with the parent. tests/test_serve.py proves them against the real server."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from swiftkit.cli.commands import serve as serve_cmd
from swiftkit.core.errors import SwiftkitError
from swiftkit.deploy import deploy_child, serve
from swiftkit.deploy.serve_guard import GuardSettings, ServeGuard


class App:
    """A stand-in deploy app: records whether it ran and the body it got; streams or answers JSON."""

    def __init__(self, stream_fails: bool = False) -> None:
        self.called = False
        self.body = b""
        self.stream_fails = stream_fails

    async def __call__(self, scope, receive, send):
        self.called = True
        message = await receive()
        self.body = message.get("body", b"")
        if self.stream_fails:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream; charset=utf-8")]})
            await send({"type": "http.response.body", "body": b'data: {"choices": []}\n\n', "more_body": True})
            raise ValueError("engine broke mid-stream")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}", "more_body": False})


def call(guard: ServeGuard, *, path: str = "/v1/chat/completions", headers: dict[str, str] | None = None,
         chunks: list[bytes] | None = None, stall: bool = False) -> tuple[int, bytes, int]:
    """(status, response body, receive() calls) of one request through ``guard``."""
    chunks = list(chunks or [b"{}"])
    sent: list[dict] = []
    reads = 0

    async def receive():
        nonlocal reads
        reads += 1
        if stall and reads > 1:
            await asyncio.sleep(5)  # 25 times the timeout under test: without it, the app gets the body
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path,
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]}
    asyncio.run(guard(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"), reads


def test_a_missing_or_wrong_key_gets_401_before_the_body_is_read():
    app = App()
    guard = ServeGuard(app, api_key="sk-right")
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": "sk-right"}):
        status, body, reads = call(guard, headers=headers, path="/v1/models")
        assert (status, reads, app.called) == (401, 0, False)
        assert json.loads(body)["error"]["code"] == "invalid_api_key"
    assert call(guard, headers={"Authorization": "Bearer sk-right"})[0] == 200 and app.called
    assert call(ServeGuard(App(), api_key="sk-right"), path="/health")[0] == 200  # liveness needs no key
    assert call(ServeGuard(App()), path="/v1/models")[0] == 200  # no key set: open


def test_an_oversized_body_gets_413_naming_the_limit_unread_or_as_soon_as_it_passes_it():
    app = App()
    guard = ServeGuard(app, settings=GuardSettings(max_request_bytes=1000))
    status, body, reads = call(guard, headers={"Content-Length": "10000000"}, chunks=[b"x" * 100])
    assert (status, reads, app.called) == (413, 0, False)  # refused from its Content-Length, nothing read
    assert "10000000 bytes is over the server's limit of 1000 bytes" in json.loads(body)["error"]["message"]
    status, body, reads = call(guard, chunks=[b"x" * 600] * 20)  # no Content-Length (chunked)
    assert (status, reads, app.called) == (413, 2, False)  # stopped at the chunk that passed the limit
    assert "limit of 1000 bytes" in json.loads(body)["message"]
    assert call(guard, headers={"Content-Length": "many"})[0] == 400
    status, _, _ = call(guard, chunks=[b'{"a":', b" 1}"])
    assert status == 200 and app.body == b'{"a": 1}'  # a body within the limit reaches the app whole


def test_a_body_that_does_not_arrive_in_time_gets_408():
    app = App()
    guard = ServeGuard(app, settings=GuardSettings(idle_timeout_s=0.2))
    status, body, _ = call(guard, chunks=[b"{", b"}"], stall=True)
    assert status == 408 and not app.called and "0.2 s" in json.loads(body)["error"]["message"]


def test_a_stream_that_fails_after_it_started_ends_with_an_openai_error_event():
    status, body, _ = call(ServeGuard(App(stream_fails=True)))
    assert status == 200
    events = [json.loads(line[len("data: "):]) for line in body.decode().split("\n\n") if line.startswith("data: ")]
    assert events[-1]["error"]["message"] == "ValueError: engine broke mid-stream"
    with pytest.raises(ValueError):  # a failure before anything was sent stays the framework's 500
        class Early(App):
            async def __call__(self, scope, receive, send):
                raise ValueError("early")
        call(ServeGuard(Early()))


def test_the_key_file_must_be_private(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("  sk-in-file \n")
    key_file.chmod(0o644)
    with pytest.raises(SwiftkitError, match=r"key: readable by other users \(mode 644\); run `chmod 600"):
        serve.read_key_file(key_file)
    key_file.chmod(0o600)
    assert serve.read_key_file(key_file) == "sk-in-file"
    with pytest.raises(SwiftkitError, match="no-such: No such file"):
        serve.read_key_file(tmp_path / "no-such")
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "empty").chmod(0o600)
    with pytest.raises(SwiftkitError, match="empty"):
        serve.read_key_file(tmp_path / "empty")


def test_the_key_comes_from_the_file_the_environment_or_a_warned_flag(tmp_path, monkeypatch, capsys):
    key_file = tmp_path / "key"
    key_file.write_text("sk-file")
    key_file.chmod(0o600)
    monkeypatch.setenv(serve.API_KEY_ENV, "sk-env")

    def key(**kw):
        return serve_cmd.api_key(argparse.Namespace(**{"api_key": None, "api_key_file": None, **kw}))

    assert key() == "sk-env" and key(api_key_file=str(key_file)) == "sk-file"
    assert capsys.readouterr().err == ""
    assert key(api_key="sk-flag") == "sk-flag"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "visible to every user of this machine in `ps`" in err[0]
    with pytest.raises(SwiftkitError, match="not both"):
        key(api_key="a", api_key_file=str(key_file))
    monkeypatch.delenv(serve.API_KEY_ENV)
    assert key() is None


def test_the_childs_own_settings_travel_apart_from_ms_swifts_arguments():
    settings = GuardSettings(max_request_bytes=1234, idle_timeout_s=2.5)
    argv = ["--model", "m"] + deploy_child.own_args(settings, 4242) + ["--port", "1"]
    assert deploy_child.split_own_args(argv) == (settings, 4242, ["--model", "m", "--port", "1"])
    with pytest.raises(SwiftkitError, match="bad --swiftkit"):
        deploy_child.split_own_args([deploy_child.MAX_BYTES_FLAG, "lots"])


def test_an_ms_swift_deploy_of_another_shape_stops_the_server_at_start(monkeypatch):
    class Deploy:
        def run(self):
            import uvicorn  # noqa: F401 - serves some other way (a uvicorn.Server, say)

    fake = types.ModuleType("fake_deploy")
    fake.SwiftDeploy = Deploy
    monkeypatch.setattr(deploy_child, "_deploy_module", lambda: fake)
    with pytest.raises(SwiftkitError, match=r"changed shape \(SwiftDeploy.run no longer calls uvicorn.run; no uvicorn"):
        deploy_child.guard_deploy(GuardSettings(), None)
    assert not hasattr(Deploy, "_swiftkit_guarded")


ORPHAN = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import sys, time\\n"
    "from swiftkit.deploy.deploy_child import die_with_parent\\n"
    "die_with_parent(int(sys.argv[1]))\\n"
    "print('armed', flush=True)\\n"
    "time.sleep(600)", str(os.getpid())], stdout=subprocess.PIPE, text=True)
assert child.stdout.readline() == "armed\\n"
print(child.pid, flush=True)
time.sleep(600)
"""


def test_the_server_process_dies_when_its_parent_is_killed():
    """SIGKILL of the parent (no chance to stop its child): the child, armed by die_with_parent, ends too."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN], stdout=subprocess.PIPE, text=True, env=env)
    child_pid = None
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        parent.kill()
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _running(child_pid):
            time.sleep(0.2)
        assert not _running(child_pid)
    finally:
        if parent.poll() is None:
            parent.kill()
        if child_pid and _running(child_pid):
            os.kill(child_pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False
