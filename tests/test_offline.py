"""Offline is a mode: with --offline, HF_HUB_OFFLINE=1 or MODELSCOPE_OFFLINE=1, every hub lookup reads the local cache
only and, when the cache does not have it, fails at once with one whole line, and no connection is attempted."""
from __future__ import annotations

import os
import socket
import time

import pytest

from swiftkit.cli import main as cli_main
from swiftkit.core.errors import SwiftkitError

HF_MODEL = "hfl/llama-3-chinese-8b-instruct-v3"  # actions_lora's model (hub: hf)
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MODELSCOPE_OFFLINE")


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Every connection attempt is recorded and refused; the hub caches are empty folders; offline variables unset."""
    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("the test allows no network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms-cache"))
    for name in OFFLINE_VARS:
        monkeypatch.delenv(name, raising=False)
    return attempts


def test_dry_run_of_a_hub_recipe_offline_fails_the_model_in_one_line_without_a_connection(no_network, capsys):
    started = time.monotonic()
    code = cli_main(["train", "actions_lora", "--dry-run", "--offline"])
    out = capsys.readouterr().out
    assert code == 1 and no_network == []
    (line,) = [x for x in out.splitlines() if "remote_code" in x]
    assert line.lstrip("# ").startswith("FAIL remote_code: hub model hfl/llama-3-chinese-8b-instruct-v3: not in the local "
                                   "Hugging Face cache (offline: HF_HUB_OFFLINE=1 or --offline)")
    assert line.rstrip().endswith("--set model=/path/to/folder")  # whole, not cut
    assert "USE_HF=1" in out and "hub id on Hugging Face" in out  # the plan says the hub
    assert not any(os.environ.get(name) for name in OFFLINE_VARS)  # --offline was for that command only
    assert time.monotonic() - started < 120  # the dry run imports ms-swift; the lookup itself is timed below


@pytest.mark.parametrize("hub, variable", [("hf", "HF_HUB_OFFLINE"), ("hf", "TRANSFORMERS_OFFLINE"),
                                           ("modelscope", "MODELSCOPE_OFFLINE")])
def test_offline_variable_makes_a_hub_lookup_fail_at_once(no_network, monkeypatch, hub, variable):
    from swiftkit.core.local_model import local_model_dir
    from swiftkit.stack.remote_code import hub_remote_code_files

    monkeypatch.setenv(variable, "1")
    for lookup in (lambda: hub_remote_code_files("Qwen/Qwen2.5-1.5B", hub=hub),
                   lambda: local_model_dir("Qwen/Qwen2.5-1.5B", download=True, hub=hub)):
        started = time.monotonic()
        with pytest.raises(SwiftkitError) as caught:
            lookup()
        assert time.monotonic() - started < 5
        message = str(caught.value)
        assert "\n" not in message and "Qwen/Qwen2.5-1.5B: not in the local" in message and "--offline" in message
    assert no_network == []


def test_offline_reads_the_local_cache(no_network, monkeypatch, tmp_path):
    """Offline is not "always fail": a model in the cache is found there (and checked for model code)."""
    from swiftkit.core.local_model import local_model_dir
    from swiftkit.stack.remote_code import hub_remote_code_files

    repo = tmp_path / "hf-cache" / "models--Qwen--Qwen2.5-1.5B"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    (snapshot / "config.json").write_text('{"auto_map": {"AutoModel": "m.Model"}}')
    ms = tmp_path / "ms-cache" / "models" / "Qwen--Qwen2.5-1.5B" / "snapshots" / "master"
    ms.mkdir(parents=True)
    (ms / "config.json").write_text("{}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MODELSCOPE_OFFLINE", "1")
    assert hub_remote_code_files("Qwen/Qwen2.5-1.5B", hub="hf") == [snapshot / "config.json"]
    assert local_model_dir("Qwen/Qwen2.5-1.5B", download=True, hub="hf") == str(snapshot)
    assert hub_remote_code_files("Qwen/Qwen2.5-1.5B", hub="modelscope") == []
    assert local_model_dir("Qwen/Qwen2.5-1.5B", download=True, hub="modelscope") == str(ms)
    assert no_network == []


@pytest.mark.parametrize("src", ["hf://owner/some-data", "modelscope://owner/some-data"])
def test_prep_offline_fails_at_once_for_a_dataset_not_in_the_cache(no_network, capsys, tmp_path, src):
    started = time.monotonic()
    code = cli_main(["prep", "muice", "--src", src, "--out", str(tmp_path / "o"), "--no-progress", "--offline"])
    err = capsys.readouterr().err.strip()
    assert time.monotonic() - started < 5 and code == 1 and no_network == []
    assert len(err.splitlines()) == 1 and "not in the local cache" in err and "--offline" in err


def test_offline_is_per_hub(no_network, monkeypatch):
    from datasets_prep.hub import hub_offline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_offline("hf") and not hub_offline("modelscope")
