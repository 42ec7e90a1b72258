"""The GPU fast path: each switch on or off with why, never on a CPU recipe, overridable, its flags parse with
ms-swift's own argument class, and the memory estimate follows liger."""
from __future__ import annotations

import pytest

from swiftkit.train.fast_path import fast_path, liger_on
from swiftkit.train.plan import Cluster, plan
from swiftkit.train.recipes import RecipeError, load_recipe
from swiftkit.train.sizing import size_recipe


def everything(_name: str) -> bool:
    return True


def nothing(_name: str) -> bool:
    return False


def test_a_cpu_recipe_never_takes_it():
    switches = fast_path(load_recipe("smoke_tiny"), everything)
    assert [s.on for s in switches] == [False, False, False]
    assert all("cpu recipe" in s.why for s in switches)
    with pytest.raises(RecipeError, match="liger_kernel on a CPU recipe"):
        load_recipe("smoke_tiny", ["launch.liger_kernel=true"])


def test_on_where_the_stack_has_it_and_each_says_why():
    recipe = load_recipe("muice_full")
    on = {s.name: s for s in fast_path(recipe, everything)}
    assert on["liger_kernel"].on and on["flash_attn"].on
    assert not on["padding_free"].on and "one sample per micro-batch" in on["padding_free"].why
    off = {s.name: s for s in fast_path(recipe, nothing)}
    assert not off["liger_kernel"].on and "liger-kernel is not installed here" in off["liger_kernel"].why
    assert not off["flash_attn"].on and not off["padding_free"].on
    batched = load_recipe("muice_full", ["per_device_batch_size=2", "global_batch_size=16"])
    assert {s.name: s.on for s in fast_path(batched, everything)}["padding_free"]
    other = load_recipe("muice_full", ["model_type=internlm2"])
    assert "is not one liger patches" in fast_path(other, everything)[0].why


def test_the_recipe_overrides_auto():
    recipe = load_recipe("muice_full", ["launch.liger_kernel=false", "launch.flash_attn=false"])
    switches = {s.name: s for s in fast_path(recipe, everything)}
    assert not switches["liger_kernel"].on and switches["liger_kernel"].why == "launch.liger_kernel: false in the recipe"
    assert not switches["flash_attn"].on
    forced = load_recipe("muice_full", ["launch.padding_free=true"])
    padding = {s.name: s for s in fast_path(forced, nothing)}["padding_free"]
    assert not padding.on and "flash_attn is off" in padding.why  # never a flag that cannot run
    with pytest.raises(RecipeError, match="padding_free needs flash_attn"):
        load_recipe("muice_full", ["launch.padding_free=true", "launch.flash_attn=false"])


def test_its_flags_are_planned_and_parse_with_ms_swift():
    from transformers import HfArgumentParser

    from swiftkit.stack.dialect import swift_api

    recipe = load_recipe("muice_full", ["per_device_batch_size=2", "global_batch_size=16"])
    fast = fast_path(recipe, everything)
    argv = plan(recipe, Cluster(nproc_per_node=8), fast=fast).method_argv
    assert argv[argv.index("--use_liger_kernel") + 1] == "true"
    assert argv[argv.index("--attn_impl") + 1] == "flash_attn"
    assert argv[argv.index("--padding_free") + 1] == "true"
    namespace, rest = HfArgumentParser(swift_api("TrainArguments")).parse_known_args(argv)
    assert rest == [] and namespace.use_liger_kernel and namespace.padding_free
    assert "--use_liger_kernel" not in plan(recipe, Cluster(nproc_per_node=8), fast=fast_path(recipe, nothing)).argv


def test_the_estimate_follows_liger():
    recipe = load_recipe("muice_full")
    assert liger_on(fast_path(recipe, everything)) and not liger_on(fast_path(recipe, nothing))
    plain = size_recipe(recipe, 8, liger=False).estimate.part("logits")
    fused = size_recipe(recipe, 8, liger=True).estimate.part("logits")
    assert fused < plain / 10
