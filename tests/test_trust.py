"""A recipe and a run directory are data: no value becomes a flag, no argument that runs code, sets the environment,
loads another model or sends data away passes through extra_args, every model a plan loads is checked for model
code, and a checkpoint's args.json imports no plugin unless the user says --trust-run-code."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from swiftkit.cli import main as cli_main
from swiftkit.core.errors import SwiftkitError
from swiftkit.train.plan import Cluster, plan
from swiftkit.train.recipes import (
    _RESERVED_EXTRA,
    RecipeError,
    load_recipe,
    parse_recipe,
)
from swiftkit.train.trust import (
    MODEL_FLAGS,
    REFUSED_EXTRA,
    REVIEWED_EXTRA,
    flag_value_problem,
    models_loaded,
)
from tests import helpers

RISKY_NAME = re.compile(r"plugin|register|repo|remote|script|callback|kwargs|(^|_)model($|_type|_revision)|adapters|"
                        r"deepspeed|fsdp|config|env|^load_|ckpt|hub|push|webhook|url|token|smtp|host|port|_dir$|path|"
                        r"optim$|optimizer")
"""ms-swift argument names that may import code, set the environment, load a model or reach the network."""


def _ms_swift_fields() -> set[str]:
    from swift.llm import RLHFArguments, TrainArguments

    return {f.name for cls in (TrainArguments, RLHFArguments) for f in dataclasses.fields(cls)}


def test_every_risky_ms_swift_argument_was_reviewed():
    """A new ms-swift argument with a risky name fails here until trust.py refuses it or lists it as reviewed."""
    fields = _ms_swift_fields()
    unreviewed = sorted(n for n in fields if RISKY_NAME.search(n)
                        and n not in REFUSED_EXTRA and n not in REVIEWED_EXTRA and n not in _RESERVED_EXTRA)
    assert unreviewed == []
    stale = sorted((set(REFUSED_EXTRA) | REVIEWED_EXTRA) - fields)
    assert stale == []  # every listed name is a real argument (a typo would guard nothing)
    assert not set(REFUSED_EXTRA) & REVIEWED_EXTRA


def test_the_audit_can_fail():
    assert RISKY_NAME.search("external_plugins") and RISKY_NAME.search("model_kwargs")
    assert RISKY_NAME.search("reward_model") and RISKY_NAME.search("custom_register_path")


@pytest.mark.parametrize("name", ["external_plugins", "custom_register_path", "model_kwargs", "reward_model",
                                  "ref_model", "teacher_model", "local_repo_path", "load_args", "push_to_hub",
                                  "vllm_engine_kwargs"])
def test_code_env_model_and_network_arguments_are_refused_in_extra_args(name):
    text = (Path("recipes/smoke_tiny.yaml").read_text(encoding="utf-8")
            .replace("  check_model: false", f"  check_model: false\n  {name}: /tmp/x.py"))
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, source="r.yaml", name="smoke_tiny")
    assert f"{name}: refused in extra_args: it " in str(err.value)
    assert str(err.value).startswith("r.yaml:")


def test_a_value_cannot_become_a_flag(capsys):
    code = cli_main(["train", "smoke_tiny", "--set", "extra_args.packing=--external_plugins=/x.py", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 1
    assert "value '--external_plugins=/x.py' of --packing starts with '-' and would read as a flag" in err
    # the same rule holds for every value the plan writes, not only extra_args
    recipe = load_recipe("smoke_tiny").model_copy(update={"model": "--external_plugins=/x.py"})
    with pytest.raises(SwiftkitError, match="of --model starts with '-'"):
        plan(recipe, Cluster(nproc_per_node=1))
    assert flag_value_problem("max_steps", "-1") is None and flag_value_problem("lr", "-1e-3") is None
    assert flag_value_problem("x", "-") is not None


def test_duplicate_keys_and_hidden_cross_field_errors_are_reported(tmp_path):
    text = Path("recipes/smoke_tiny.yaml").read_text(encoding="utf-8")
    with pytest.raises(RecipeError) as err:
        parse_recipe(text.replace("learning_rate: 1.0e-2", "learning_rate: 1.0e-2\nlearning_rate: 5"),
                     source="r.yaml", name="smoke_tiny")
    assert "learning_rate: written twice (first at line" in str(err.value)
    # a field error (max_steps) and a rule between fields (warmup) in the same recipe: both are reported
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, source="r.yaml", name="smoke_tiny", overrides=["max_steps=-5", "warmup_steps=3"])
    assert "max_steps: Input should be greater than or equal to 1" in str(err.value)
    assert "warmup_steps: give warmup_ratio or warmup_steps, not both" in str(err.value)


def test_models_loaded_reads_every_model_flag():
    argv = ["swift", "rlhf", "--model", "/m", "--adapters", "/a", "--ref_adapters", "/a", "--dataset", "/d",
            "--reward_model", "/r"]
    assert models_loaded(argv) == ["/m", "/a", "/r"]
    assert "dataset" not in MODEL_FLAGS


def _code_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "qwen2", "auto_map": {
        "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}}), encoding="utf-8")
    (path / "adapter_config.json").write_text("{}", encoding="utf-8")
    return path


def test_remote_code_check_covers_an_init_from_checkpoint(tmp_path):
    """GRPO continuing an SFT adapter loads it twice (--adapters, --ref_adapters): its auto_map counts."""
    from swiftkit.train.preflight import _remote_code_check

    recipe = load_recipe("smoke_grpo")
    ckpt = _code_folder(tmp_path / "sft" / "checkpoint-5")
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "qwen2"}), encoding="utf-8")
    recipe = recipe.model_copy(update={"model": str(base)})
    p = plan(recipe, Cluster(nproc_per_node=1), init_checkpoint=str(ckpt), init_adapter=True)
    check = _remote_code_check(recipe, p)
    assert not check.ok and "checkpoint-5/config.json: auto_map asks to run" in check.message
    clean = plan(recipe, Cluster(nproc_per_node=1))
    assert _remote_code_check(recipe, clean).ok


def test_a_run_directory_imports_no_plugin_its_args_json_names(full_run, tmp_path, capsys):
    """The checkpoint's args.json names a plugin; `swiftkit infer` ignores it (one line) unless --trust-run-code."""
    run = helpers.copy_run(full_run, tmp_path / "run")
    marker = tmp_path / "plugin-ran"
    plugin = tmp_path / "evil.py"
    plugin.write_text(f"open({str(marker)!r}, 'w').write('ran')\n", encoding="utf-8")
    from swiftkit.run.checkpoint import mark_complete

    for args_json in run.glob("checkpoint-*/args.json"):
        data = json.loads(args_json.read_text(encoding="utf-8"))
        data["external_plugins"] = [str(plugin)]
        args_json.write_text(json.dumps(data), encoding="utf-8")
        mark_complete(args_json.parent)  # whoever shares the run can write its marker too
    prompt = helpers.PAIRS[0][0]
    assert cli_main(["infer", str(run), "--prompt", prompt, "--max-new-tokens", "8", "--backend", "pt"]) == 0
    out = capsys.readouterr()
    assert not marker.exists()
    assert f"ignored external_plugins=['{plugin}']" in out.out + out.err
    assert "pass --trust-run-code to import it" in out.err
    assert cli_main(["infer", str(run), "--prompt", prompt, "--max-new-tokens", "8", "--backend", "pt",
                     "--trust-run-code"]) == 0
    assert marker.read_text() == "ran"
