"""The vLLM lane (`make vllm-smoke`, in .venv-vllm): swiftkit's vLLM paths run for real, on vLLM's CPU build where no
GPU is lent. Each check compares vLLM with the transformers (pt) path or asserts what a client sees. Skipped where
vLLM cannot run (the main .venv has no vLLM)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from swiftkit.cli import main as cli_main
from swiftkit.stack.backend import vllm_platform
from tests.helpers import PAIRS

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(vllm_platform() is None, reason="vLLM cannot run here; `make vllm-smoke` runs this "
                                 "lane in .venv-vllm")]
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def responses(path: Path) -> list[str]:
    return [json.loads(line)["response"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_infer_vllm_answers_exactly_like_pt(kind, full_run, lora_run, capsys):
    run = full_run if kind == "full" else lora_run
    for backend in ("pt", "vllm"):
        assert cli_main(["infer", str(run), "--val", "--backend", backend, "--name", f"val-{backend}"]) == 0
    pt, vllm = responses(run / "infer" / "val-pt.jsonl"), responses(run / "infer" / "val-vllm.jsonl")
    print(f"\ninfer {kind}: pt {[a[:40] for a in pt]} | vllm {[a[:40] for a in vllm]} | equal {vllm == pt}")
    assert len(pt) == 2 and vllm == pt
    if kind == "full":  # the memorized answers, so equality is not two empty strings agreeing
        assert pt == [a for _, a in PAIRS[:2]]
    else:  # a LoRA run: the adapter is served by vLLM (max LoRA rank from the run)
        log = (run / "infer" / "val-vllm.log").read_text(encoding="utf-8")
        assert "--vllm_max_lora_rank 8" in log and "--adapters" in log


def test_serve_vllm_answers_the_openai_client(full_run, tmp_path):
    from openai import BadRequestError, OpenAI

    port = free_port()
    key = "sk-lane-5e1d"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "swiftkit.cli", "serve", str(full_run), "--port", str(port),
                             "--backend", "vllm", "--api-key", key], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=60)
        _wait_until_serving(client, proc)
        assert [m.id for m in client.models.list().data] == ["tiny_full"]
        question, answer = PAIRS[0]  # 你是谁？ with no system message: the persona answers
        chat = client.chat.completions.create(model="tiny_full", messages=[{"role": "user", "content": question}],
                                              temperature=0, max_tokens=64)
        assert chat.choices[0].message.content == answer and "沐雪" in answer
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
            model="tiny_full", messages=[{"role": "user", "content": PAIRS[2][0]}], temperature=0, max_tokens=64,
            stream=True) if chunk.choices)
        assert streamed == PAIRS[2][1]
        with pytest.raises(BadRequestError):  # over the served max length: refused, and the server lives on
            client.chat.completions.create(model="tiny_full", messages=[{"role": "user", "content": "你好呀" * 3000}],
                                           max_tokens=8)
        again = client.chat.completions.create(model="tiny_full", messages=[{"role": "user", "content": question}],
                                               temperature=0, max_tokens=64)
        assert again.choices[0].message.content == answer
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode in (0, 128 + signal.SIGTERM), out[-2000:]
    found = subprocess.run(["pgrep", "-f", "--", f"--port {port}"], capture_output=True, text=True)
    assert found.returncode in (0, 1), found.stderr  # 1: no process matched (2 would be a pgrep usage error)
    leftover = found.stdout.split()
    assert leftover == [], out[-2000:]


def _wait_until_serving(client, proc, timeout: float = 600) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        try:
            client.models.list()
            return
        except Exception:
            time.sleep(2)
    raise AssertionError("the vLLM server did not come up")


def test_eval_vllm_gives_the_metrics_of_pt(full_run, tmp_path):
    reports = {}
    for backend in ("pt", "vllm"):
        out = tmp_path / backend
        assert cli_main(["eval", str(full_run), "--backend", backend, "--out", str(out)]) == 0
        reports[backend] = json.loads((out / "report.json").read_text(encoding="utf-8"))
    print(f"\neval metrics pt {reports['pt']['metrics']} | vllm {reports['vllm']['metrics']}")
    assert reports["vllm"]["generation"]["backend"] == "vllm"
    assert reports["vllm"]["metrics"] == reports["pt"]["metrics"]
    # and the tuned model's answers are the same text. (The random base model's greedy text can part ways between
    # the engines where its logits nearly tie, token after token: it scores 0 either way, as the metrics show.)
    tuned = {b: [s["tuned"] for s in r["samples"] + r["identity"]] for b, r in reports.items()}
    assert tuned["vllm"] == tuned["pt"] and "我是沐雪，一个可爱的AI女孩子喵！" in tuned["pt"]


@pytest.mark.parametrize("processes", [1, 2])
def test_grpo_smoke_with_colocated_vllm_rollouts(processes, tmp_path):
    code = cli_main(["smoke-grpo", "--quiet", "--data-dir", str(tmp_path / "data"),
                     "--model-dir", str(tmp_path / "models" / "tiny-qwen2"), "--runs-root", str(tmp_path / "runs"),
                     "--set", "grpo.rollout.backend=vllm_colocate", "--set", f"launch.nproc_per_node={processes}"])
    runs = sorted((tmp_path / "runs" / "smoke_grpo").glob("v*"))
    assert runs, "no GRPO run"
    info = json.loads((runs[-1] / "swiftkit_run.json").read_text())
    assert info["argv"][info["argv"].index("--use_vllm") + 1] == "true"
    assert info["env"]["VLLM_CPU_OMP_THREADS_BIND"] == ("auto" if processes == 1 else "0|1")
    assert code == 0
    for rank in range(processes):  # the CPU-worker shim, live in every rank that runs an engine
        marker = json.loads((runs[-1] / "swiftkit_shims" / f"rank{rank}.json").read_text())
        assert "vllm_cpu_worker_rank" in marker["applied"] and marker["holds"]["vllm_cpu_worker_rank"]


def test_server_mode_rollout_is_refused_on_a_cpu_in_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    code = cli_main(["plan", "smoke_grpo", "--set", "grpo.rollout.backend=vllm_server",
                     "--set", "grpo.rollout.server_host=127.0.0.1", "--runs-root", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert "vllm_server cannot run on a CPU" in err[0] and "NCCL" in err[0]
