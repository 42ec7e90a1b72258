"""swiftkit serve: real HTTP on CPU against `swift deploy` serving the tiny trained run."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swiftkit.cli import main as cli_main
from swiftkit.deploy import serve
from tests.helpers import PAIRS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_taken_port_fails_with_one_line(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert serve.port_in_use("127.0.0.1", port)
        assert cli_main(["serve", str(tmp_path), "--port", str(port)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"port {port} on 127.0.0.1 is already in use" in err[0]
    assert not serve.port_in_use("127.0.0.1", port)


@pytest.mark.slow
def test_serve_chat_with_api_key_over_http(full_run, tmp_path):
    run = full_run
    key = "sk-test-7f3a9c"
    log_path = tmp_path / "deploy.log"
    with open(log_path, "w") as log:
        server = serve.start_server(run, port=free_port(), api_key=key, log=log)
        try:
            server.wait_ready(timeout=300)
            assert server.host == "127.0.0.1"
            # no system message: the server's default system is the run's persona prompt
            prompt, answer = PAIRS[2]
            status, body = server.chat([{"role": "user", "content": prompt}], api_key=key)
            assert status == 200, body
            status, models = server.request("/v1/models", api_key=key)
            assert status == 200 and [m["id"] for m in models["data"]] == ["tiny_full"]  # the recipe name
            assert body["choices"][0]["message"]["content"] == answer
            assert body["choices"][0]["finish_reason"] == "stop"
            # ms-swift refuses a request without the key, or with a wrong one (HTTP 400 "API key error")
            for bad in (None, "sk-wrong"):
                status, body = server.chat([{"role": "user", "content": prompt}], api_key=bad)
                assert status in (400, 401, 403) and "API key" in body.get("message", ""), (status, body)
            # the port is really taken while serving
            assert serve.port_in_use("127.0.0.1", server.port)
            # the key is on no command line of any process the server started (`ps` shows those to every user)
            group = _group_cmdlines(server.process.pid)
            assert group and not any(key in line for line in group), group
            # a prompt over the served max length (the model's 2048 tokens): HTTP 400 with the limit, and the server
            # lives (ms-swift's pt worker thread used to die on it, leaving every later request hanging)
            status, body = server.chat([{"role": "user", "content": "沐雪今天很开心。" * 700}], api_key=key)
            assert status == 400 and "larger than the max_length(2048)" in body.get("message", ""), (status, body)
            status, body = server.chat([{"role": "user", "content": prompt}], api_key=key)
            assert status == 200 and body["choices"][0]["message"]["content"] == answer
            status, body = server.chat([{"role": "user", "content": "你好呀" * 2000}], api_key=key)  # and again
            assert status == 400
        finally:
            code = server.stop()
    assert server.process.poll() is not None and code is not None
    with pytest.raises(ConnectionRefusedError):  # nothing listens any more (closed connections may linger)
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    text = log_path.read_text()
    assert "api_key" not in text.splitlines()[0] and "swiftkit.deploy.deploy_child" in text.splitlines()[0]
    assert "api_key='***'" in text  # ms-swift logs its arguments (key added in memory): masked on the way through
    assert key not in text
    assert (Path(run) / serve.CONVERSATIONS).is_file()  # served conversations: in the run, not in the checkpoint


def _group_cmdlines(pgid: int) -> list[str]:
    """The command lines of every live process in process group ``pgid`` (what `ps` shows)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) == pgid:
                out.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, ProcessLookupError):
            continue
    return out


def test_a_key_with_quotes_and_backslashes_is_masked_in_every_form():
    """ms-swift logs its arguments as a repr, where a key with ' or \\ shows escaped; every form is masked."""
    import json
    import shlex

    from swiftkit.core.proc import mask_value

    key = 'k\'e\\y"9'
    text = f"args: api_key={key!r}, raw {key}, json {json.dumps(key)}, shell {shlex.quote(key)}"
    assert mask_value(text, key) == "args: api_key='***', raw ***, json \"***\", shell ***"


def test_serving_beyond_loopback_requires_a_key(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SWIFTKIT_API_KEY", raising=False)
    assert cli_main(["serve", str(tmp_path), "--host", "0.0.0.0", "--port", str(free_port())]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--host 0.0.0.0 serves beyond this machine: give an API key" in err[0]


@pytest.mark.slow
def test_sigterm_to_swiftkit_serve_leaves_no_process(full_run, tmp_path):
    run = full_run
    port = free_port()
    env = {**os.environ, "SWIFTKIT_API_KEY": "sk-term-1"}
    cli = subprocess.Popen([sys.executable, "-m", "swiftkit.cli", "serve", str(run), "--port", str(port)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        server = serve.Server(cli, "127.0.0.1", port, "tiny_full", "sk-term-1")
        server.wait_ready(timeout=300)
        children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == cli.pid]
        assert children, "swiftkit serve started no server process"
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=60) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any((c / "cmdline").exists() for c in children):
            time.sleep(0.5)
        assert not any((c / "cmdline").exists() and (c / "cmdline").read_bytes() for c in children)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        if cli.poll() is None:
            cli.kill()


def _parent(proc: Path) -> int:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1
