"""The GPU paths' decisions, without running them: the network of several nodes, the shared run directory, vLLM's
CPU settings and what vLLM's CPU build cannot do (the runs themselves: tests/test_multinode.py, tests/vllm_lane/)."""
from __future__ import annotations

import os
import socket
import types
from pathlib import Path

import pytest

from swiftkit.core import network
from swiftkit.stack import backend, shims
from swiftkit.train.plan import Cluster, plan
from swiftkit.train.preflight import network_check, shared_run_dir_check
from swiftkit.train.recipes import load_recipe


def test_the_interface_is_the_route_to_the_master():
    assert network.interface_for("127.0.0.1") == "lo"
    assert network.interface_addresses()["lo"] == "127.0.0.1"
    assert network.interface_for("no-such-host.invalid") is None


def test_waiting_for_a_port_is_bounded_and_sees_a_listener():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert network.wait_for_port("127.0.0.1", port, 1.0, poll=0.2) is not None  # bound, not listening
        s.listen()
        assert network.wait_for_port("127.0.0.1", port, 1.0, poll=0.2) is None


def test_network_check_names_a_missing_interface_and_a_master_node_0_does_not_own():
    cluster = Cluster(nproc_per_node=1, nnodes=2, node_rank=0, master_addr="127.0.0.1")
    assert network_check(cluster, {}).ok and "gloo on lo" in network_check(cluster, {}).message
    bad = network_check(cluster, {"GLOO_SOCKET_IFNAME": "nosuch0"})
    assert not bad.ok and "no interface nosuch0" in bad.message and "lo" in bad.message

def test_node_0_must_own_the_master_address(monkeypatch):
    """As on a machine whose eth9 is 10.0.0.5 with a route to 10.0.0.0/24 (faked: the test needs no network)."""
    from swiftkit.core import network as net

    monkeypatch.setattr(net, "source_address", lambda host: "10.0.0.5")
    monkeypatch.setattr(net, "interface_addresses", lambda: {"lo": "127.0.0.1", "eth9": "10.0.0.5"})
    monkeypatch.setattr(net, "interface_for", lambda host: "eth9")
    foreign = network_check(Cluster(nproc_per_node=1, nnodes=2, node_rank=0, master_addr="10.0.0.7"), {})
    assert not foreign.ok and "not an address of this machine" in foreign.message
    own = network_check(Cluster(nproc_per_node=1, nnodes=2, node_rank=0, master_addr="10.0.0.5"), {})
    assert own.ok and own.message == "gloo on eth9 (the route to master 10.0.0.5)"
    assert network_check(Cluster(nproc_per_node=1, nnodes=2, node_rank=1, master_addr="10.0.0.7"), {}).ok
    monkeypatch.setattr(net, "interface_for", lambda host: None)  # an alias: routed, but no interface owns it
    alias = network_check(Cluster(nproc_per_node=1, nnodes=2, node_rank=1, master_addr="10.0.0.7"), {})
    assert alias.ok and "set GLOO_SOCKET_IFNAME" in alias.message
    monkeypatch.setattr(net, "source_address", lambda host: None)
    unroutable = network_check(Cluster(nproc_per_node=1, nnodes=2, node_rank=1, master_addr="10.9.9.9"), {})
    assert not unroutable.ok and "no route from this machine" in unroutable.message


def test_shared_run_dir_in_either_start_order(tmp_path):
    recipe = load_recipe("smoke_tiny")
    leader = Cluster(nproc_per_node=1, nnodes=2, node_rank=0, master_addr="127.0.0.1")
    follower = Cluster(nproc_per_node=1, nnodes=2, node_rank=1, master_addr="127.0.0.1")
    run = tmp_path / "run"
    assert shared_run_dir_check(run, recipe, leader).ok and shared_run_dir_check(run, recipe, follower).ok
    run.mkdir()
    (run / "train.node1.log").write_text("node 1 started first\n")
    assert shared_run_dir_check(run, recipe, leader).ok  # only another node's log: node 0 may still start
    (run / "swiftkit_run.json").write_text('{"recipe": "smoke_tiny"}')
    assert shared_run_dir_check(run, recipe, follower).ok  # node 0 started first and is writing
    refused = shared_run_dir_check(run, recipe, leader)
    assert not refused.ok and "swiftkit_run.json" in refused.message
    (run / "swiftkit_run.json").write_text('{"recipe": "muice_full"}')
    assert "belongs to recipe 'muice_full'" in shared_run_dir_check(run, recipe, follower).message
    (run / "result.json").write_text("{}")
    assert "finished run" in shared_run_dir_check(run, recipe, follower).message


def test_multinode_torchrun_gets_a_bounded_rendezvous():
    from swiftkit.train.launch import torchrun_args

    env = {"NPROC_PER_NODE": "1", "NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "h"}
    assert torchrun_args(env, 45)[-2:] == ["--rdzv_conf", "timeout=45"]
    assert "--rdzv_conf" not in torchrun_args({"NPROC_PER_NODE": "2"}, 45)


def _cpu_colocate(extra: list[str] = ()) -> list[str]:
    return ["grpo.rollout.backend=vllm_colocate", "init_from=runs/x", *extra]


@pytest.mark.parametrize("processes, bind", [(1, "auto"), (2, "0|1")])
def test_cpu_colocate_rollouts_plan_vllms_cpu_settings(processes, bind):
    p = plan(load_recipe("smoke_grpo", _cpu_colocate()), Cluster(processes))
    assert p.env["VLLM_CPU_KVCACHE_SPACE"] == "1" and p.env["VLLM_CPU_OMP_THREADS_BIND"] == bind
    custom = plan(load_recipe("smoke_grpo", _cpu_colocate(["grpo.rollout.cpu_threads_bind=0-1",
                                                           "grpo.rollout.cpu_kvcache_space_gb=2"])), Cluster(1))
    assert custom.env["VLLM_CPU_OMP_THREADS_BIND"] == "0-1" and custom.env["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert "VLLM_CPU_KVCACHE_SPACE" not in plan(load_recipe("smoke_grpo"), Cluster(2)).env  # pt rollouts


def test_zero3_on_cpu_plans_swiftkits_config_and_gpus_keep_the_preset():
    cpu = plan(load_recipe("smoke_tiny", ["launch.deepspeed=zero3"]), Cluster(2))
    config = Path(cpu.argv[cpu.argv.index("--deepspeed") + 1])
    assert config.name == "zero3_cpu.json" and config.is_file()
    gpu = plan(load_recipe("smoke_tiny", ["launch.deepspeed=zero3", "launch.device=cuda"]), Cluster(2))
    assert gpu.argv[gpu.argv.index("--deepspeed") + 1] == "zero3"


@pytest.mark.parametrize("platform, build, device, rollout, ok, words", [
    (None, None, "cpu", [], False, "vLLM is not installed"),
    (None, "cuda", "cpu", [], False, "CUDA build and no GPU"),
    ("cpu", "cpu", "cpu", [], True, "vLLM's cpu build"),
    ("cpu", "cpu", "cpu", ["grpo.rollout.tensor_parallel_size=2"], False, "tensor_parallel_size 2"),
    ("cuda", "cuda", "cuda", ["grpo.rollout.tensor_parallel_size=2"], True, "cuda build"),
    ("cuda", "cuda", "cpu", [], False, "a cpu recipe cannot roll out on vLLM's cuda build"),
    ("cpu", "cpu", "cuda", [], False, "a cuda recipe cannot roll out on vLLM's cpu build"),
])
def test_rollout_check_asks_vllms_platform(monkeypatch, platform, build, device, rollout, ok, words):
    from swiftkit.train.grpo.preflight import rollout_check

    monkeypatch.setattr(backend, "vllm_platform", lambda: platform)
    monkeypatch.setattr(backend, "vllm_build", lambda: build)
    check = rollout_check(load_recipe("smoke_grpo", _cpu_colocate(rollout)).grpo, device)
    assert check.ok is ok and words in check.message, check.message


def test_engine_env_sets_the_kv_cache_only_for_vllms_cpu_build(monkeypatch):
    monkeypatch.setattr(backend, "vllm_platform", lambda: "cpu")
    assert backend.engine_env("vllm", {}) == {"VLLM_CPU_KVCACHE_SPACE": "1"}
    assert backend.engine_env("vllm", {"VLLM_CPU_KVCACHE_SPACE": "3"}) == {}  # the user's value wins
    assert backend.engine_env("pt", {}) == {}
    monkeypatch.setattr(backend, "vllm_platform", lambda: "cuda")
    assert backend.engine_env("vllm", {}) == {}


class _StubCpuWorker:
    """vLLM 0.11's CPUWorker.init_device, reduced to its binding choice (vllm/v1/worker/cpu_worker.py)."""

    def __init__(self, rank: int, local_rank: int) -> None:
        self.rank, self.local_rank = rank, local_rank
        self.parallel_config = types.SimpleNamespace(distributed_executor_backend="external_launcher", world_size=1,
                                                     data_parallel_rank_local=0)

    def init_device(self):
        entries = os.environ["VLLM_CPU_OMP_THREADS_BIND"].split("|")
        config = self.parallel_config
        if config.data_parallel_rank_local is not None:
            start = config.data_parallel_rank_local * config.world_size
            entries = entries[start:start + config.world_size]
        return entries[self.rank]  # vLLM indexes with the global rank: IndexError for rank 1


def test_cpu_worker_shim_gives_each_engine_its_own_cores(monkeypatch):
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0|1")
    stub = type("CPUWorker", (_StubCpuWorker,), {})
    monkeypatch.setattr(shims, "_cpu_worker", lambda: stub)
    with pytest.raises(IndexError):
        stub(1, 1).init_device()
    assert shims.SHIMS["vllm_cpu_worker_rank"].needed()
    shims.SHIMS["vllm_cpu_worker_rank"].patch()
    assert not shims.SHIMS["vllm_cpu_worker_rank"].needed()
    assert [stub(rank, rank).init_device() for rank in (0, 1)] == ["0", "1"]
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "0|1"  # restored


def test_cpu_worker_shim_stays_out_of_processes_without_a_bound_cpu_engine(monkeypatch):
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    assert shims._cpu_worker() is None and not shims.SHIMS["vllm_cpu_worker_rank"].needed()


def test_offload_presets_are_refused_on_a_cpu_recipe():
    from swiftkit.train.recipes import RecipeError

    with pytest.raises(RecipeError, match="zero3_offload on a CPU recipe: there is no device to offload from"):
        load_recipe("smoke_tiny", ["launch.deepspeed=zero3_offload"])
