"""swiftkit serve: real HTTP on CPU against `swift deploy` serving the tiny trained run."""
from __future__ import annotations

import socket

import pytest

from swiftkit import serve
from swiftkit.cli import main as cli_main
from tests.tinyruns import PAIRS, trained_run


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
def test_serve_chat_with_api_key_over_http(tmp_path_factory, tmp_path):
    run = trained_run(tmp_path_factory, "full")
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
        finally:
            code = server.stop()
    assert server.process.poll() is not None and code is not None
    with pytest.raises(ConnectionRefusedError):  # nothing listens any more (closed connections may linger)
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    text = log_path.read_text()
    assert "--api_key '***'" in text.splitlines()[0]  # the command line is logged redacted
    assert "api_key='***'" in text  # ms-swift logs its arguments: masked on the way through
    assert key not in text
