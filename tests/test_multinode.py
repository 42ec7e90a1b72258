"""Several nodes for real: two `swiftkit train` nodes on this one machine, in two network namespaces joined by a veth
pair where the sandbox allows it (root with `ip netns`), else both on loopback. The mode is printed (pytest -s) and
recorded in the test's id."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import PAIRS, SYSTEM, record, write_jsonl

pytestmark = pytest.mark.slow

RECIPE = """\
description: "two-node test: the tiny model on 2 nodes x 1 CPU process"
model: {model}
model_type: qwen2_5
template: qwen2_5
train_type: full
persona: true
data:
  source: muice
  train: [{train}]
  val: []
  system: "{system}"
max_length: 128
torch_dtype: float32
global_batch_size: 2
per_device_batch_size: 1
learning_rate: 5.0e-3
num_train_epochs: {epochs}
warmup_ratio: 0.0
weight_decay: 0.0
lr_scheduler_type: constant
gradient_checkpointing: false
logging_steps: 1
save_steps: 100000
save_total_limit: 1
save_only_model: true
seed: 42
launch:
  device: cpu
  nproc_per_node: 1
  dataloader_num_workers: 0
report:
  report_to: [none]
extra_args:
  check_model: false
"""


@dataclass
class Network:
    """Where the two nodes run: ``prefix[i]`` starts a command on node i; ``master`` is node 0's address."""

    mode: str
    prefix: tuple[list[str], list[str]]
    master: str
    unreachable: str
    interfaces: tuple[str, str]


def _netns_possible() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"sk-probe-{uuid.uuid4().hex[:6]}"
    ok = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ok


@pytest.fixture(scope="module")
def network():
    if not _netns_possible():
        print("\nmulti-node test mode: loopback (no network namespaces here)")
        yield Network("loopback", ([], []), "127.0.0.1", "127.0.0.1", ("lo", "lo"))
        return
    tag = uuid.uuid4().hex[:6]
    ns, veth = (f"sk{tag}a", f"sk{tag}b"), (f"v{tag}a", f"v{tag}b")
    addr = ("10.231.7.1", "10.231.7.2")
    commands = [["ip", "netns", "add", ns[0]], ["ip", "netns", "add", ns[1]],
                ["ip", "link", "add", veth[0], "type", "veth", "peer", "name", veth[1]]]
    for i in (0, 1):
        commands += [["ip", "link", "set", veth[i], "netns", ns[i]],
                     ["ip", "-n", ns[i], "addr", "add", f"{addr[i]}/24", "dev", veth[i]],
                     ["ip", "-n", ns[i], "link", "set", veth[i], "up"],
                     ["ip", "-n", ns[i], "link", "set", "lo", "up"]]
    try:
        for cmd in commands:
            subprocess.run(cmd, check=True, capture_output=True)
        print(f"\nmulti-node test mode: network namespaces {ns[0]} ({addr[0]}) and {ns[1]} ({addr[1]}) over a veth pair")
        yield Network("netns", (["ip", "netns", "exec", ns[0]], ["ip", "netns", "exec", ns[1]]), addr[0],
                      "10.231.7.9", veth)
    finally:
        for name in ns:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_model_dir) -> Path:
    root = tmp_path_factory.mktemp("multinode")
    train = write_jsonl(root / "data" / "train.jsonl",
                        [record(SYSTEM, u, a) for u, a in PAIRS] + [record(SYSTEM, "再见", "拜拜，下次见喵～")])
    for name, epochs in (("two_nodes", 3), ("two_nodes_long", 400)):
        (root / f"{name}.yaml").write_text(RECIPE.format(model=tiny_model_dir, train=train, system=SYSTEM,
                                                         epochs=epochs), encoding="utf-8")
    return root


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_node(net: Network, rank: int, workspace: Path, recipe: str, run_dir: Path, port: int,
               master: str | None = None, join_timeout: int = 180) -> subprocess.Popen:
    cmd = [*net.prefix[rank], sys.executable, "-m", "swiftkit.cli", "train", str(workspace / f"{recipe}.yaml"),
           "--nnodes", "2", "--node-rank", str(rank), "--master-addr", master or net.master, "--master-port", str(port),
           "--gpus", "1", "--run-dir", str(run_dir), "--join-timeout", str(join_timeout)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    env.pop("GLOO_SOCKET_IFNAME", None)
    return subprocess.Popen(cmd, cwd=workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def test_two_nodes_train_one_run_directory(network, workspace):
    """Node 1 first (node 0 first: the invariance test below)."""
    first = 1
    run = workspace / "runs" / "shared"
    port = free_port()
    procs = {first: start_node(network, first, workspace, "two_nodes", run, port)}
    time.sleep(3)
    procs[1 - first] = start_node(network, 1 - first, workspace, "two_nodes", run, port)
    results = {rank: finish(p) for rank, p in procs.items()}
    for rank, (code, out) in results.items():
        assert code == 0, f"node {rank} ({network.mode}):\n{out[-3000:]}"

    # one run directory, written by node 0; each node's log apart; shim evidence from both global ranks
    result = json.loads((run / "result.json").read_text())
    assert (run / result["last_model_checkpoint"]).is_dir()
    assert json.loads((run / "swiftkit_run.json").read_text())["recipe"] == "two_nodes"
    assert (run / "train.log").is_file() and (run / "train.node1.log").is_file()
    assert sorted(p.name for p in (run / "swiftkit_shims").iterdir()) == ["rank0.json", "rank1.json"]
    assert "rank: 0, local_rank: 0, world_size: 2" in (run / "train.log").read_text()
    assert "rank: 1, local_rank: 0, world_size: 2" in (run / "train.node1.log").read_text()
    assert sorted(p.name for p in run.glob("recipe*.yaml")) == ["recipe.yaml"]
    # the persona template is written once, by node 0
    assert "persona template written into" in results[0][1]
    assert "persona template written into" not in results[1][1]
    # gloo's interface chosen from the master address, said by each node
    for rank in (0, 1):
        assert f"gloo on {network.interfaces[rank]} (the route to {network.master})" in results[rank][1]
    losses = [h["loss"] for h in result["log_history"] if "loss" in h and "train_loss" not in h]
    assert len(losses) == 12  # 8 records / global batch 2 x 3 epochs: both nodes' ranks formed each step

    # the run checks like a one-node run
    from swiftkit.cli import main

    assert main(["check", str(run), "--no-probe"]) == 0


def test_a_node_that_cannot_reach_the_master_fails_in_bounded_time(network, workspace):
    run = workspace / "runs" / "lonely"
    start = time.monotonic()
    code, out = finish(start_node(network, 1, workspace, "two_nodes", run, free_port(), master=network.unreachable,
                                  join_timeout=8), timeout=120)
    elapsed = time.monotonic() - start
    assert code == 1, out
    errors = [line for line in out.splitlines() if line.startswith("swiftkit train: error:")]
    assert len(errors) == 1 and "did not answer within 8 s" in errors[0], out[-2000:]
    assert elapsed < 240, elapsed  # start-up (imports, preflight) + 8 s, not torchrun's 900 s and retries


def test_node_0_alone_gives_up_when_the_others_never_join(network, workspace):
    run = workspace / "runs" / "alone"
    code, out = finish(start_node(network, 0, workspace, "two_nodes", run, free_port(), join_timeout=15), timeout=240)
    assert code == 1, out
    errors = [line for line in out.splitlines() if line.startswith("swiftkit train: error:")]
    assert len(errors) == 1 and "did not all join within 15 s" in errors[0], out[-2000:]


def test_sigterm_on_one_node_stops_both(network, workspace):
    run = workspace / "runs" / "stopped"
    port = free_port()
    procs = [start_node(network, rank, workspace, "two_nodes_long", run, port) for rank in (0, 1)]
    deadline = time.monotonic() + 300
    while not any("'loss'" in line for line in _read(run / "train.log")):  # training has started on both nodes
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "training never started"
        time.sleep(1)
    os.kill(procs[0].pid, signal.SIGTERM)
    stopped = time.monotonic()
    codes = [finish(p, timeout=240)[0] for p in procs]
    assert codes[0] == 128 + signal.SIGTERM
    assert codes[1] != 0  # node 1 lost its peer and stopped on its own
    assert time.monotonic() - stopped < 200
    assert not (run / "result.json").exists()
    leftover = subprocess.run(["pgrep", "-f", str(run)], capture_output=True, text=True).stdout.split()
    assert leftover == []


def _read(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


# --- batch invariance: the same recipe on three topologies trains the same ------------------------------------------

INVARIANCE_TOLERANCE = 1e-5
"""Largest relative difference allowed between the topologies' per-step losses, and between their final weights (as
one vector: ||a - b|| / ||b||). Measured on a 2-core CPU: 1 node x 2 and 2 nodes x 1 bit-identical; accumulation 2
differs by 1.0e-7 in the losses and 7.1e-7 in the weights (float summation order); README "Batch invariance"."""


def _losses(run: Path) -> list[float]:
    history = json.loads((run / "result.json").read_text())["log_history"]
    return [h["loss"] for h in history if "loss" in h and "train_loss" not in h]


def _weights(run: Path):
    from safetensors.torch import load_file

    ckpt = run / json.loads((run / "result.json").read_text())["last_model_checkpoint"]
    return load_file(str(next(ckpt.glob("*.safetensors"))))


def test_batch_invariance_across_topologies(network, workspace, capsys):
    (workspace / "invariance.yaml").write_text(
        (workspace / "two_nodes.yaml").read_text(encoding="utf-8")
        .replace("global_batch_size: 2\nper_device_batch_size: 1", "global_batch_size: 4\nper_device_batch_size: 2")
        .replace("num_train_epochs: 3", "num_train_epochs: 4"), encoding="utf-8")
    runs = {name: workspace / "runs" / "invariance" / name for name in ("1x2", "2x1", "1x1_accum2")}
    from swiftkit.cli import main

    for name, gpus in (("1x2", "2"), ("1x1_accum2", "1")):
        assert main(["train", str(workspace / "invariance.yaml"), "--gpus", gpus, "--run-dir", str(runs[name])]) == 0
    port = free_port()
    procs = [start_node(network, 0, workspace, "invariance", runs["2x1"], port)]  # node 0 first this time
    time.sleep(3)
    procs.append(start_node(network, 1, workspace, "invariance", runs["2x1"], port))
    for rank, proc in enumerate(procs):
        code, out = finish(proc)
        assert code == 0, f"node {rank}:\n{out[-3000:]}"
    plans = {name: json.loads((run / "swiftkit_run.json").read_text())["argv"] for name, run in runs.items()}
    accum = {name: argv[argv.index("--gradient_accumulation_steps") + 1] for name, argv in plans.items()}
    assert accum == {"1x2": "1", "2x1": "1", "1x1_accum2": "2"}

    losses = {name: _losses(run) for name, run in runs.items()}
    steps = len(losses["1x2"])
    assert steps == 8 and all(len(v) == steps for v in losses.values())
    rows = [f"{'step':>4} " + " ".join(f"{name:>14}" for name in losses)]
    worst = 0.0
    for i in range(steps):
        ref = losses["1x2"][i]
        worst = max(worst, *(abs(v[i] - ref) / max(abs(ref), 1e-12) for v in losses.values()))
        rows.append(f"{i + 1:>4} " + " ".join(f"{v[i]:>14.8f}" for v in losses.values()))
    weights = {name: _weights(run) for name, run in runs.items()}
    ref = weights["1x2"]
    norm = sum(float(v.double().pow(2).sum()) for v in ref.values()) ** 0.5
    weight_diff = max(sum(float((w[k] - ref[k]).double().pow(2).sum()) for k in ref) ** 0.5 / norm
                      for w in weights.values())
    report = "\n".join(rows) + f"\nlargest relative loss difference {worst:.2e}, weights {weight_diff:.2e} ({network.mode})"
    print("\n" + report)
    assert losses["1x2"][-1] < losses["1x2"][0]  # it trains
    assert worst <= INVARIANCE_TOLERANCE, report
    assert weight_diff <= INVARIANCE_TOLERANCE, report
