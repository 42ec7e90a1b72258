"""swiftkit serve: real HTTP on CPU against `swift deploy` serving the tiny trained run."""
from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import serve_bench
from swiftkit.cli import main as cli_main
from swiftkit.deploy import serve
from swiftkit.deploy.serve_guard import GuardSettings
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


KEY = "sk-test-7f3a9c"
IDLE_S = 5.0
"""The shared server's idle timeout: short, so the idle test is quick; requests send their head at once."""


@pytest.fixture(scope="module")
def server(full_run, tmp_path_factory):
    """One server on the tiny full run for the tests of this module (with a key and a short idle timeout)."""
    log_path = tmp_path_factory.mktemp("serve") / "deploy.log"
    with open(log_path, "w") as log:
        srv = serve.start_server(full_run, port=free_port(), api_key=KEY, log=log,
                                 guard=GuardSettings(idle_timeout_s=IDLE_S))
        try:
            srv.wait_ready(timeout=300)
            srv.log_path = log_path
            yield srv
        finally:
            srv.stop()
    assert srv.process.poll() is not None
    assert KEY not in log_path.read_text()


@pytest.mark.slow
def test_serve_chat_with_api_key_over_http(server, full_run):
    assert server.host == "127.0.0.1"
    # no system message: the server's default system is the run's persona prompt
    prompt, answer = PAIRS[2]
    status, body = server.chat([{"role": "user", "content": prompt}], api_key=KEY)
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == answer
    assert body["choices"][0]["finish_reason"] == "stop"
    status, models = server.request("/v1/models", api_key=KEY)
    assert status == 200 and [m["id"] for m in models["data"]] == ["tiny_full"]  # the recipe name
    # no key or a wrong one: HTTP 401 on every /v1 path (the openai client raises AuthenticationError)
    for bad in (None, "sk-wrong", KEY + "x"):
        for path, payload in (("/v1/models", None),
                              ("/v1/chat/completions", {"model": "tiny_full", "messages": [{"role": "user",
                                                                                            "content": prompt}]})):
            status, body = server.request(path, payload, api_key=bad)
            assert status == 401 and "API key" in body["error"]["message"], (path, bad, status, body)
    assert server.request("/health")[0] == 200  # liveness needs no key
    # the port is really taken while serving
    assert serve.port_in_use("127.0.0.1", server.port)
    # the key is on no command line of any process the server started (`ps` shows those to every user)
    group = _group_cmdlines(server.process.pid)
    assert group and not any(KEY in line for line in group), group
    # a prompt over the served max length (the model's 2048 tokens): HTTP 400 with the limit, and the server lives
    status, body = server.chat([{"role": "user", "content": "沐雪今天很开心。" * 700}], api_key=KEY)
    assert status == 400 and "larger than the max_length(2048)" in body.get("message", ""), (status, body)
    status, body = server.chat([{"role": "user", "content": prompt}], api_key=KEY)
    assert status == 200 and body["choices"][0]["message"]["content"] == answer
    text = server.log_path.read_text()
    lines = text.splitlines()
    assert "api_key" not in lines[0] and "swiftkit.deploy.deploy_child" in lines[0]
    assert "api_key='***'" in text  # ms-swift logs its arguments (key added in memory): masked on the way through
    assert KEY not in text


@pytest.mark.slow
def test_a_burst_of_good_and_bad_requests_is_answered_fairly(server):
    """40 concurrent requests: every good one answered (plain and streamed), every bad one refused with its
    status (over-long 400 streamed or not, malformed 400, wrong key 401, oversized 413), no innocent request
    failed by a bad one in its batch; the server answers normally afterwards."""
    target = serve_bench.Target(server.base_url, server.model_name, KEY, GuardSettings().max_request_bytes)
    outcomes, _ = serve_bench.burst(target)
    assert len(outcomes) == sum(serve_bench.MIX.values()) == 40
    assert serve_bench.failures(outcomes) == []
    prompt, answer = PAIRS[0]
    status, body = server.chat([{"role": "user", "content": prompt}], api_key=KEY)
    assert status == 200 and body["choices"][0]["message"]["content"] == answer


@pytest.mark.slow
def test_idle_and_dripping_connections_are_closed(server):
    """uvicorn times out nothing before a request's head: a silent connection, or one dripping header lines,
    held a server slot forever. Both are closed after the idle timeout (waited for generously)."""
    silent = socket.create_connection(("127.0.0.1", server.port))
    dripping = socket.create_connection(("127.0.0.1", server.port))
    try:
        dripping.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        silent.settimeout(IDLE_S * 12)
        assert silent.recv(1) == b""  # closed by the server (a timeout here raises instead)
        deadline = time.monotonic() + IDLE_S * 12
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                dripping.sendall(b"X-Slow: 1\r\n")
                dripping.settimeout(1)
                closed = dripping.recv(1) == b""
            except socket.timeout:
                continue
            except OSError:  # reset: closed
                closed = True
        assert closed
    finally:
        silent.close()
        dripping.close()
    assert server.request("/v1/models", api_key=KEY)[0] == 200


@pytest.mark.slow
def test_the_conversation_log_is_private(server, full_run):
    status, _ = server.chat([{"role": "user", "content": PAIRS[1][0]}], api_key=KEY)
    assert status == 200
    log = Path(full_run) / serve.CONVERSATIONS  # served conversations: in the run, not in the checkpoint
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not log.stat().st_size:
        time.sleep(0.2)
    assert PAIRS[1][0] in log.read_text(encoding="utf-8")
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700


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


@pytest.mark.slow
def test_swiftkit_serve_says_serving_when_it_answers_and_dies_with_a_sigkill(full_run, tmp_path):
    """`swiftkit serve --api-key-file`: the key is on no command line, "serving" is printed only once the server
    answers, and SIGKILL of `swiftkit serve` (no chance to stop its child) still ends the server."""
    key = "sk-file-5d1e"
    key_file = tmp_path / "serve.key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != serve.API_KEY_ENV}
    cli = subprocess.Popen([sys.executable, "-m", "swiftkit.cli", "serve", str(full_run), "--port", str(port),
                            "--api-key-file", str(key_file)], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    children: list[Path] = []
    try:
        assert cli.stdout is not None
        seen = []
        for line in cli.stdout:  # ends at EOF if it dies; the line is printed once /v1/models answered
            seen.append(line)
            if line.startswith("serving model"):
                break
        assert seen and seen[-1].startswith("serving model 'tiny_full' on http://127.0.0.1"), seen[-5:]
        server = serve.Server(cli, "127.0.0.1", port, "tiny_full", key)
        assert server.request("/v1/models", api_key=key, timeout=30)[0] == 200  # answering when it said so
        children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == cli.pid]
        assert children, "swiftkit serve started no server process"
        lines = [cli.pid] + [int(c.name) for c in children]
        assert not any(key in (Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")) for pid in lines)
        cli.kill()
        cli.wait(timeout=30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(_alive(c) for c in children):
            time.sleep(0.5)
        assert not any(_alive(c) for c in children), "the server outlived a SIGKILLed swiftkit serve"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        if cli.poll() is None:
            cli.kill()
        for child in children:  # never leave a server behind, whatever failed
            if _alive(child):
                os.kill(int(child.name), signal.SIGKILL)


def _alive(proc: Path) -> bool:
    """A process that still runs (a zombie has an empty cmdline)."""
    try:
        return bool((proc / "cmdline").read_bytes())
    except OSError:
        return False
