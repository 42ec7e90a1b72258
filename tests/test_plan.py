"""Planning: golden plans for every recipe at 1, 2, 8 GPUs and 2 nodes x 8; the global batch is the same in all;
every planned flag is a field of the installed ms-swift's argument class of the recipe's method (TrainArguments for
sft, RLHFArguments for grpo and dpo) and its value parses.

Regenerate the golden files after an intended change with ``UPDATE_GOLDEN=1 pytest tests/test_plan.py``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swiftkit.core.errors import SwiftkitError
from swiftkit.stack.dialect import SWIFT3, SWIFT4, dialect_for, installed_dialect
from swiftkit.train.methods import get_method
from swiftkit.train.plan import REWARD_PLUGIN, Cluster, plan
from swiftkit.train.recipes import Recipe, list_recipes, load_recipe

GOLDEN = Path(__file__).parent / "golden"
NAMES = [p.stem for p in list_recipes()]
CLUSTERS = {
    "1gpu": Cluster(1),
    "2gpu": Cluster(2),
    "8gpu": Cluster(8),
    "2x8": Cluster(8, nnodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29500),
}
CPU_CLUSTERS = {"1proc": Cluster(1), "2proc": Cluster(2)}
"""A CPU recipe (smoke_tiny) is planned for the process counts a CPU machine runs, not for 8 GPUs: its global
batch is sized for memorizing a handful of records, which would not divide over 16 processes."""


def clusters_for(name: str) -> dict[str, Cluster]:
    return CPU_CLUSTERS if load_recipe(name).launch.device == "cpu" else CLUSTERS


def formed_by(recipe: Recipe, clusters: dict[str, Cluster]) -> dict[str, Cluster]:
    """The clusters whose processes x micro-batch divide the recipe's global batch (the others are refused, and
    test_plan_matches_golden pins the refusal: seed 003's global batch of 4 on 8 GPUs)."""
    return {label: c for label, c in clusters.items()
            if recipe.global_batch_size % (c.world_size * recipe.per_device_batch_size) == 0}


def _plans(name: str) -> dict[str, dict]:
    """Each cluster's plan, or the one-line refusal where the recipe's global batch cannot be formed there (a seed's
    batch of 4 on 8 GPUs): the golden file shows both."""
    recipe = load_recipe(name)
    out: dict[str, dict] = {}
    for label, cluster in clusters_for(name).items():
        try:
            p = plan(recipe, cluster, output_dir=f"runs/{name}/v1")
        except SwiftkitError as refused:
            out[label] = {"refused": str(refused)}
            continue
        argv = ["<swiftkit>/train/grpo/swiftkit_plugin.py" if t == REWARD_PLUGIN else t for t in p.argv]  # machine-independent
        out[label] = {"env": p.env, "argv": argv, "gradient_accumulation_steps": p.gradient_accumulation_steps}
    return out


@pytest.mark.parametrize("name", NAMES)
def test_plan_matches_golden(name: str):
    got = _plans(name)
    path = GOLDEN / f"plan_{name}.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(json.dumps(got, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    assert path.is_file(), f"{path} missing: run UPDATE_GOLDEN=1 pytest {__file__}"
    assert got == json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", NAMES)
def test_global_batch_is_the_same_on_every_cluster(name: str):
    recipe = load_recipe(name)
    assert formed_by(recipe, clusters_for(name)), f"{name}: no planned cluster forms its global batch"
    for cluster in formed_by(recipe, clusters_for(name)).values():
        p = plan(recipe, cluster)
        argv = p.argv
        per_device = int(argv[argv.index("--per_device_train_batch_size") + 1])
        accum = int(argv[argv.index("--gradient_accumulation_steps") + 1])
        assert per_device * accum * cluster.world_size == recipe.global_batch_size


def test_muice_8_gpus_env_and_deepspeed():
    p = plan(load_recipe("muice_full"), Cluster(8))
    assert p.env == {"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7", "NPROC_PER_NODE": "8"}
    assert p.argv[:2] == ["swift", "sft"]
    assert p.argv[p.argv.index("--deepspeed") + 1] == "zero2"
    assert p.argv[p.argv.index("--gradient_accumulation_steps") + 1] == "1"  # global 8 = 8 processes x 1
    assert p.argv[p.argv.index("--max_length") + 1] == "4096"
    assert "--system" not in p.argv  # the data carries the system prompt


def test_single_gpu_has_no_torchrun_env_and_no_deepspeed():
    p = plan(load_recipe("muice_full"), Cluster(1))
    assert p.env == {"CUDA_VISIBLE_DEVICES": "0"}
    assert "--deepspeed" not in p.argv


def test_multi_node_env_is_what_ms_swift_reads():
    p = plan(load_recipe("actions_lora"), CLUSTERS["2x8"])
    assert p.env == {"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7", "NPROC_PER_NODE": "8", "NNODES": "2",
                     "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500", "USE_HF": "1"}


def test_the_plan_names_the_hub_of_the_model(monkeypatch):
    """actions_lora's model is a Hugging Face id (hub: hf): its plan sets USE_HF=1, which is what ms-swift reads to
    download from Hugging Face; a ModelScope recipe (the default) sets nothing, as ms-swift's default is ModelScope."""
    from swift.utils.env import use_hf_hub

    hf = plan(load_recipe("actions_lora"), Cluster(1))
    assert load_recipe("actions_lora").hub == "hf" and "USE_HF=1 " in hf.shell()
    monkeypatch.delenv("USE_HF", raising=False)
    for key, value in hf.env.items():
        monkeypatch.setenv(key, value)
    assert use_hf_hub()
    ms = plan(load_recipe("muice_full"), Cluster(1))
    assert load_recipe("muice_full").hub == "modelscope" and "USE_HF" not in ms.env
    assert "USE_HF" not in plan(load_recipe("actions_lora", ["hub=modelscope"]), Cluster(1)).env


def test_cpu_recipe_plan():
    p = plan(load_recipe("smoke_tiny"), Cluster(2))
    assert p.env == {"CUDA_VISIBLE_DEVICES": "", "NPROC_PER_NODE": "2"}
    for flag, value in [("--use_cpu", "true"), ("--ddp_backend", "gloo"), ("--torch_dtype", "float32"),
                        ("--check_model", "false"), ("--report_to", "none"), ("--dataloader_num_workers", "0"),
                        ("--save_only_model", "true"), ("--eval_strategy", "no"), ("--add_version", "false")]:
        assert p.argv[p.argv.index(flag) + 1] == value, flag
    # one process: no gloo backend (there is no process group; accelerate fails "Default process group has not
    # been initialized"), still use_cpu; tests/tinyruns.py trains this way through the launcher
    single = plan(load_recipe("smoke_tiny"), Cluster(1))
    assert "--ddp_backend" not in single.argv and single.argv[single.argv.index("--use_cpu") + 1] == "true"
    assert single.env == {"CUDA_VISIBLE_DEVICES": ""}


def test_global_batch_that_does_not_divide_is_refused():
    with pytest.raises(SwiftkitError, match=r"global_batch_size 8 does not divide into 1 node\(s\) x 3 process"):
        plan(load_recipe("muice_full"), Cluster(3))
    with pytest.raises(SwiftkitError, match="does not divide"):
        plan(load_recipe("fortune_lora", ["per_device_batch_size=4"]), Cluster(4))
    # seed 000's hand-written script used 6 GPUs: the error names the nearest global batches that do divide
    with pytest.raises(SwiftkitError, match=r"= 6; nearest that do: --set global_batch_size=6 or "
                                            r"--set global_batch_size=12$"):
        plan(load_recipe("muice_full"), Cluster(6))
    # a seed's batch a cluster cannot form (seed 003: global 4 on one GPU) names the smallest that it can
    with pytest.raises(SwiftkitError, match=r"= 8; nearest that do: --set global_batch_size=8$"):
        plan(load_recipe("medical_r1_full"), Cluster(8))
    with pytest.raises(SwiftkitError, match=r"nearest that do: --set global_batch_size=12$"):  # GRPO: whole groups too
        plan(load_recipe("smoke_grpo"), Cluster(3))
    for suggested in (6, 12):
        plan(load_recipe("muice_full", [f"global_batch_size={suggested}"]), Cluster(6))


def test_bad_cluster_options():
    with pytest.raises(SwiftkitError, match="--master-addr"):
        plan(load_recipe("muice_full"), Cluster(8, nnodes=2))
    with pytest.raises(SwiftkitError, match="--node-rank 2"):
        plan(load_recipe("muice_full"), Cluster(8, nnodes=2, node_rank=2, master_addr="h"))
    with pytest.raises(SwiftkitError, match="--gpus 0"):
        plan(load_recipe("muice_full"), Cluster(0))


def test_qlora_switch_adds_bnb_4bit():
    argv = plan(load_recipe("fortune_lora"), Cluster(1)).argv  # the seed's 4-bit load
    assert argv[argv.index("--quant_method") + 1] == "bnb"
    assert argv[argv.index("--quant_bits") + 1] == "4"
    assert "--quant_bits" not in plan(load_recipe("fortune_lora", ["lora.qlora=false"]), Cluster(1)).argv
    assert argv[argv.index("--bnb_4bit_compute_dtype") + 1] == "bfloat16"
    fp16 = plan(load_recipe("fortune_lora", ["lora.qlora=true", "torch_dtype=float16"]), Cluster(1)).argv
    assert fp16[fp16.index("--bnb_4bit_compute_dtype") + 1] == "float16"  # follows the recipe (fp16-only cards)


def test_dialect_translation_and_refusal():
    p3 = plan(load_recipe("medical_r1_full"), Cluster(1), dialect=SWIFT3)
    p4 = plan(load_recipe("medical_r1_full"), Cluster(1), dialect=SWIFT4)
    assert "--train_type" in p3.argv and "--train_type" not in p4.argv
    assert p4.argv[p4.argv.index("--tuner_type") + 1] == "full"
    assert p4.argv[p4.argv.index("--model_type") + 1] == "qwen2"
    assert p4.argv[p4.argv.index("--template") + 1] == "qwen2_5"  # only the documented renames
    assert len(p3.argv) == len(p4.argv)
    assert dialect_for("3.12.6") is SWIFT3 and dialect_for("4.6.0") is SWIFT4
    for bad in ("3.11.2", "2.6.1", "5.0.0", None):
        with pytest.raises(SwiftkitError, match=r"supports ms-swift >=3.12,<3.13"):
            dialect_for(bad)


def test_plan_cli_imports_no_torch_and_hides_secrets(tmp_path: Path):
    code = (
        "import sys, json\n"
        "from swiftkit.cli import main\n"
        "rc = main(['plan', 'muice_full', '--json', '--runs-root', sys.argv[1]])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'swift', 'transformers', 'deepspeed'))\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy}))\n"
    )
    env = {**os.environ, "SWANLAB_API_KEY": "sk-plan-secret-1234", "HF_TOKEN": "hf_plan_secret_5678"}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env,
                         check=True).stdout
    *plan_lines, last = out.strip().splitlines()
    assert json.loads(last) == {"rc": 0, "heavy": []}
    printed = json.loads("\n".join(plan_lines))
    assert printed["argv"][printed["argv"].index("--output_dir") + 1] == str(tmp_path / "muice_full" / "v1")
    assert "sk-plan-secret-1234" not in out and "hf_plan_secret_5678" not in out


# ---- every planned flag against ms-swift's own argument classes (imports ms-swift: ~10 s, once) ----


@pytest.fixture(scope="module")
def method_parsers():
    import dataclasses

    from transformers import HfArgumentParser

    from swiftkit.stack.dialect import swift_api
    from swiftkit.train.methods import METHODS

    out = {}
    for method in METHODS.values():
        cls = swift_api(method.arguments)  # the installed major's class (`make test-swift4` runs this on 4.x)
        out[method.name] = (HfArgumentParser(cls), {f.name for f in dataclasses.fields(cls)})
    return out


@pytest.fixture(scope="module")
def sft_parser(method_parsers):
    return method_parsers["sft"]


@pytest.mark.parametrize("name", NAMES)
def test_every_planned_flag_is_an_argument_of_its_method_and_parses(name: str, method_parsers):
    variants = [load_recipe(name)]
    if variants[0].lora is not None:  # QLoRA on and off
        variants.append(load_recipe(name, [f"lora.qlora={str(not variants[0].lora.qlora).lower()}"]))
    for recipe in variants:
        parser, fields = method_parsers[recipe.method]
        for label, cluster in formed_by(recipe, clusters_for(name)).items():
            p = plan(recipe, cluster, output_dir="/tmp/out", resume_from="/tmp/out/checkpoint-1",
                     dialect=installed_dialect())
            argv = p.method_argv
            flags = [t[2:] for t in argv if t.startswith("--")]
            cls = get_method(recipe.method).arguments
            assert not set(flags) - fields, f"{name}@{label}: not {cls} fields: {set(flags) - fields}"
            namespace, rest = parser.parse_known_args(argv)  # parses values without building model or trainer
            assert rest == [], f"{name}@{label}: unparsed {rest}"
            assert namespace.model == (recipe.init_from if recipe.init_from and recipe.train_type == "full"
                                       else recipe.model)
            assert namespace.gradient_accumulation_steps * namespace.per_device_train_batch_size * \
                cluster.world_size == recipe.global_batch_size
            if recipe.grpo is not None:
                g = recipe.grpo
                assert namespace.rlhf_type == "grpo" and namespace.num_generations == g.num_generations
                assert namespace.reward_funcs == [r.name for r in g.rewards]
                assert namespace.reward_weights == [r.weight for r in g.rewards]
                assert recipe.global_batch_size % g.num_generations == 0  # ms-swift's generation batch rule
                if namespace.eval_strategy != "no":
                    assert namespace.per_device_eval_batch_size * cluster.world_size % g.num_generations == 0
                assert namespace.external_plugins == [REWARD_PLUGIN]
            if recipe.dpo is not None:
                d = recipe.dpo
                assert (namespace.rlhf_type, namespace.beta, namespace.loss_type) == ("dpo", d.beta, [d.loss_type])
                assert namespace.rpo_alpha == d.rpo_alpha and namespace.label_smoothing == d.label_smoothing


def test_the_flag_check_catches_a_wrong_flag(sft_parser):
    parser, fields = sft_parser
    assert "max_seq_length" not in fields  # so a planned --max_seq_length would fail the test above
    _, rest = parser.parse_known_args(["--model", "m", "--max_seq_length", "5"])
    assert rest == ["--max_seq_length", "5"]
    with pytest.raises(SystemExit):  # a value that does not parse fails too
        parser.parse_known_args(["--model", "m", "--max_length", "lots"])


# ---- GRPO: the method axis in plans ----


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_grpo_plan_is_swift_rlhf_with_rewards_and_vllm_colocate():
    p = plan(load_recipe("actions_grpo"), Cluster(8))
    assert p.argv[:4] == ["swift", "rlhf", "--rlhf_type", "grpo"] and p.method == "grpo"
    assert p.method_argv[:2] == ["--rlhf_type", "grpo"]  # what the worker hands to rlhf_main
    i = p.argv.index("--reward_funcs")
    assert p.argv[i + 1:i + 4] == ["swiftkit_action", "swiftkit_reference", "swiftkit_repetition"]
    assert _value(p.argv, "--external_plugins") == REWARD_PLUGIN and Path(REWARD_PLUGIN).is_file()
    for flag, value in [("--use_vllm", "true"), ("--vllm_mode", "colocate"), ("--vllm_gpu_memory_utilization", "0.4"),
                        ("--sleep_level", "1"), ("--num_generations", "8"), ("--log_completions", "true")]:
        assert _value(p.argv, flag) == value, flag
    assert _value(p.argv, "--per_device_eval_batch_size") == "1"  # 1 x 8 processes = one group of 8
    assert _value(plan(load_recipe("actions_grpo"), Cluster(1)).argv, "--per_device_eval_batch_size") == "8"


def test_grpo_rollout_backends():
    pt = plan(load_recipe("smoke_grpo"), Cluster(2)).argv
    assert _value(pt, "--use_vllm") == "false" and "--vllm_mode" not in pt
    server = plan(load_recipe("actions_grpo", ["grpo.rollout.backend=vllm_server",
                                               "grpo.rollout.server_host=10.0.0.9"]), Cluster(8)).argv
    assert _value(server, "--vllm_mode") == "server" and _value(server, "--vllm_server_host") == "10.0.0.9"
    assert _value(server, "--vllm_server_port") == "8000" and "--sleep_level" not in server


def test_init_from_adapter_continues_it_and_is_the_reference():
    lora = plan(load_recipe("actions_grpo"), Cluster(1), init_checkpoint="/r/actions_lora/v1/checkpoint-9",
                init_adapter=True).argv
    assert _value(lora, "--model") == "hfl/llama-3-chinese-8b-instruct-v3"
    assert _value(lora, "--adapters") == _value(lora, "--ref_adapters") == "/r/actions_lora/v1/checkpoint-9"
    # full weights: the checkpoint is the model (and, for GRPO, the reference ms-swift loads from it)
    full = plan(load_recipe("medical_r1_grpo"), Cluster(1), init_checkpoint="/r/med/v1/checkpoint-5",
                init_adapter=False).argv
    assert _value(full, "--model") == "/r/med/v1/checkpoint-5" and "--adapters" not in full
    # a LoRA recipe on full SFT weights trains a new adapter on them
    on_full = plan(load_recipe("actions_grpo"), Cluster(1), init_checkpoint="/r/x/checkpoint-3", init_adapter=False).argv
    assert _value(on_full, "--model") == "/r/x/checkpoint-3" and "--adapters" not in on_full
    assert "--adapters" not in plan(load_recipe("actions_lora"), Cluster(1)).argv


def test_reward_options_travel_as_one_env_variable():
    from swiftkit.train.grpo.rewards import OPTIONS_ENV

    assert OPTIONS_ENV not in plan(load_recipe("actions_grpo"), Cluster(1)).env
    p = plan(load_recipe("actions_grpo", ["grpo.rewards.0.options={unoffered_penalty: 0.8}"]), Cluster(1))
    assert json.loads(p.env[OPTIONS_ENV]) == {"swiftkit_action": {"unoffered_penalty": 0.8}}
    assert "unoffered_penalty" not in " ".join(p.argv)


@pytest.mark.parametrize("name", NAMES)
def test_every_recipe_names_a_model_type_and_template_ms_swift_has(name: str):
    """muice_full once said `template: qwen2`, a name ms-swift 3.x does not have (its Qwen2 template is `qwen`):
    training would have failed on the GPU machine."""
    from swiftkit.stack.model_registry import resolve

    recipe = load_recipe(name)
    found = resolve(recipe.model, recipe.model_type, recipe.template)
    assert found.problems == [] and (found.model_type, found.template) == (recipe.model_type, recipe.template)


def test_every_cluster_problem_is_reported_at_once():
    with pytest.raises(SwiftkitError) as err:
        plan(load_recipe("muice_full"), Cluster(0, nnodes=2, node_rank=5, master_port=70000))
    assert str(err.value) == ("--gpus 0: need at least 1; --node-rank 5: must be in 0..1; --nnodes 2: several nodes "
                              "need --master-addr (rank 0's address); --master-port 70000: not a port number")


def test_hybrid_thinking_templates_are_the_installed_registry_s():
    """The templates whose enable_thinking default changed between ms-swift majors are pinned by the plan and by
    infer/serve (swiftkit.stack.dialect.pinned_flags); the set is checked against the installed registry."""
    from swiftkit.stack.dialect import HYBRID_THINKING_TEMPLATES, swift_api

    installed = {name for name, meta in swift_api("TEMPLATE_MAPPING").items()
                 if meta.is_thinking and meta.non_thinking_prefix}
    assert HYBRID_THINKING_TEMPLATES <= installed
    if installed_dialect() is SWIFT3:  # the meaning pinned is 3.12's: exactly its hybrid templates
        assert installed == HYBRID_THINKING_TEMPLATES
    argv = plan(load_recipe("fortune_lora"), Cluster(nproc_per_node=1)).argv
    assert argv[argv.index("--enable_thinking") + 1] == "true"
    assert "--enable_thinking" not in plan(load_recipe("muice_full"), Cluster(nproc_per_node=1)).argv
