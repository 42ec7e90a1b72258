"""The ms-swift 4.x lane (`make test-swift4`, in .venv-swift4): swiftkit's own paths run on ms-swift 4.x, through the
one seam (swiftkit.stack.dialect). Skipped where the installed ms-swift is 3.x (the main .venv)."""
from __future__ import annotations

import json

import pytest

from swiftkit.cli import main as cli_main
from swiftkit.stack.dialect import SWIFT4, installed_dialect


def _on_4x() -> bool:
    try:
        return installed_dialect() is SWIFT4
    except Exception:  # noqa: BLE001 - no ms-swift at all: not this lane
        return False


pytestmark = [pytest.mark.slow, pytest.mark.skipif(not _on_4x(), reason="ms-swift 4.x is not installed here; "
                                                   "`make test-swift4` runs this lane in .venv-swift4")]


def test_doctor_names_the_4x_dialect(capsys):
    cli_main(["doctor"])
    assert "(4.x dialect)" in capsys.readouterr().out


def test_the_smoke_passes_on_4x(smoke_result):
    """`swiftkit smoke` on 4.x: prep, tiny model, training on 2 processes, check (eos, stop label, template, the
    persona rows), greedy infer of every probed prompt."""
    out = smoke_result["out"]
    print("\n" + "\n".join(line for line in out.splitlines() if "loss" in line or "PASS" in line or "identity" in line))
    assert smoke_result["code"] == 0, out[-3000:]


def test_eval_preview_and_export_on_the_4x_smoke_run(smoke_result, tmp_path, capsys):
    from pathlib import Path

    run = Path(smoke_result["run"])
    assert cli_main(["eval", str(run), "--backend", "pt"]) == 0
    out = capsys.readouterr().out
    print("\n" + out[-1200:])
    report = json.loads((run / "eval" / "report.json").read_text(encoding="utf-8"))
    assert report["counts"], report.keys()
    assert "identity (no system)" in out
    assert cli_main(["preview", "smoke_tiny", "--set", f"model={smoke_result['model_dir']}", "--set",
                     f"data.train=[{smoke_result['data_dir']}/muice/train.jsonl]", "--n", "1", "--ids"]) == 0
    assert "-100" in capsys.readouterr().out
    assert cli_main(["export", str(run), "--gguf", "--quant", "q8_0"]) == 0
    out = capsys.readouterr().out
    assert "gguf: tokenizer.chat_template defaults to the persona" in out


def test_serve_on_4x_answers_the_openai_client(smoke_result, tmp_path):
    """`swiftkit serve` on 4.x: the persona answers with no system message, a wrong key is 401 (the guard)."""
    import os
    import socket
    import subprocess
    import sys
    import time

    from openai import AuthenticationError, OpenAI

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key = "sk-lane4-7c2e"
    proc = subprocess.Popen([sys.executable, "-m", "swiftkit.cli", "serve", smoke_result["run"], "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "SWIFTKIT_API_KEY": key})
    try:
        deadline = time.monotonic() + 600
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("serving"):
                break
            assert time.monotonic() < deadline and proc.poll() is None, line
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key)
        answer = client.chat.completions.create(model="smoke_tiny", messages=[{"role": "user", "content": "你是谁？"}],
                                                max_tokens=32, temperature=0).choices[0].message.content
        print(f"\n4.x serve: {answer}")
        assert "沐雪" in answer
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong").models.list()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=60)
