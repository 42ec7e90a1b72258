"""Checks that run before any training process starts; each failure is one line naming the file or field.

- the installed ms-swift speaks a dialect swiftkit supports;
- the model is a readable local folder (with config.json) or a hub id;
- every dataset file exists and is non-empty;
- max_length fits the model's ``max_position_embeddings`` when its config is readable;
- the GPUs requested are visible and the estimated memory per GPU fits them (cuda recipes);
- DeepSpeed / bitsandbytes are installed when the plan uses them;
- ``init_from`` names a checkpoint the recipe can start from;
- GRPO (swiftkit.train.grpo.preflight): batch rules, packages, and every reward run once on a few records;
- DPO (swiftkit.train.dpo.preflight): every record is a preference pair (chosen, a different rejected, one prompt);
- the run goes to a new run directory, unless resuming from an existing checkpoint.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Callable, Optional, Union

from datasets_prep.hub import model_hub
from swiftkit.core.devices import gpu_memory as visible_gpu_memory
from swiftkit.core.devices import visible_gpus
from swiftkit.core.errors import SwiftkitError
from swiftkit.core.local_model import is_local_model
from swiftkit.stack.remote_code import remote_code_files
from swiftkit.train.checks import Check, PreflightReport
from swiftkit.train.data_format import format_check
from swiftkit.train.plan import Cluster, Plan, dataset_file
from swiftkit.train.recipes import Recipe

REGISTRY_CODE = ("swiftkit.stack.model_registry", "swiftkit.stack.dialect")
"""The modules whose code decides the template check's answer (kept per install: swiftkit.stack.answers)."""
EXTRA_ARGS_CODE = ("swiftkit.train.preflight", "swiftkit.train.methods", "swiftkit.stack.dialect")
"""The modules whose code decides the extra_args check's answer."""


def read_model_config(model: str) -> Optional[dict]:
    """config.json of a local model folder, or None when it is not local or not readable."""
    cfg = Path(model).expanduser() / "config.json"
    try:
        return json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def context_length(config: dict) -> Optional[int]:
    for section in (config, config.get("text_config") or {}):
        value = section.get("max_position_embeddings")
        if isinstance(value, int):
            return value
    return None


def _template_check(recipe: Recipe, config: Optional[dict]) -> Check:
    """The model_type and template ms-swift will use, named now; a name it lacks, or a model it cannot type, fails
    here rather than after the weights load (see swiftkit.stack.model_registry)."""
    from dataclasses import asdict

    from swiftkit.stack.answers import remembered
    from swiftkit.stack.model_registry import resolve

    architectures = config.get("architectures") if config else None
    try:  # asked of ms-swift's registry once per question and install (swiftkit.stack.answers: no import per launch)
        found = remembered(
            "template", [recipe.model, recipe.model_type, recipe.template, architectures],
            lambda: asdict(resolve(recipe.model, recipe.model_type, recipe.template, architectures)),
            code=REGISTRY_CODE)
    except SwiftkitError as exc:
        return Check("template", True, f"not checked: {exc}")
    if found["problems"]:
        return Check("template", False, "; ".join(found["problems"]))
    return Check("template", True,
                 f"model_type {found['model_type']}, template {found['template']} ({found['source']})")


def count_rows(names: list[str]) -> Optional[int]:
    """Records in JSONL dataset files (non-blank lines; ``file#N`` counts N); None when a file is not readable."""
    from swiftkit.train.mixing import entry_rows

    rows = [entry_rows(name) for name in names]
    return None if None in rows else sum(r for r in rows if r is not None)


def val_use_check(recipe: Recipe) -> Optional[Check]:
    """What the val rows cost or buy, in rows: evaluated (and so not trained on), held out for ``swiftkit eval``, or
    trained on. None when the recipe has no val files."""
    role = recipe.val_role
    if role == "none":
        return None
    val, train = count_rows(list(recipe.data.val)), count_rows(list(recipe.data.train))
    if val is None or train is None:
        return Check("data.val", True, f"val_use {role}: rows not countable here (a file is missing)")
    share = f"{val} of {val + train} rows ({100 * val / max(val + train, 1):.0f} %)"
    if role == "eval":
        text = (f"{share} evaluated every {recipe.eval_steps} steps, not trained on "
                f"(`--set data.val_use=train` with no eval_steps trains on them)")
    elif role == "holdout":
        text = (f"{share} held out for `swiftkit eval` / `infer --val`, not trained on and not evaluated during "
                f"training (`--set data.val_use=train` trains on them)")
    else:
        text = (f"{share} trained on with the train files: the recipe does not evaluate (no held-out rows: "
                f"`swiftkit eval` needs --prompts; `--set data.val_use=holdout` keeps them unseen)")
    return Check("data.val", True, text)


def _remote_code_check(recipe: Recipe, plan: Plan) -> Check:
    """No model the plan loads ships code (config.json / tokenizer_config.json auto_map), or the recipe trusts it:
    the base model, an ``init_from`` checkpoint, a reference or reward model (:func:`swiftkit.train.trust.models_loaded`
    reads them off the planned flags). A hub model is checked on its small files, fetched as ms-swift would fetch them
    before loading it."""
    from swiftkit.stack.remote_code import hub_remote_code_files
    from swiftkit.train.trust import models_loaded

    found: list[Path] = []
    for model in models_loaded(plan.argv):
        try:
            found += remote_code_files(model) if is_local_model(model) else hub_remote_code_files(model, hub=recipe.hub)
        except SwiftkitError as exc:
            return Check("remote_code", False, str(exc))
    if found and not recipe.trust_remote_code:
        return Check("remote_code", False, f"{found[0]}: auto_map asks to run the model repository's own code, and "
                                           "ms-swift would run it; set `trust_remote_code: true` in the recipe if you "
                                           "trust it")
    if found:
        return Check("remote_code", True, "the model's own code will run (recipe sets trust_remote_code)")
    return Check("remote_code", True, "no model code to run")


def _persona_check(recipe: Recipe) -> Check:
    """A persona recipe has a system prompt, and it is inert text for the base model's tokenizer
    (:func:`swiftkit.run.persona.persona_problem`): checked now, since the persona step runs after training."""
    from datasets_prep.vocab import SPECIAL_TOKEN_TEXTS
    from swiftkit.run.persona import (
        TOKENIZER_CONFIG,
        added_tokens,
        first_record_system,
        persona_problem,
    )

    system = recipe.data.system or first_record_system([dataset_file(n) for n in recipe.data.train])
    if not system:
        return Check("persona", False, "a persona recipe needs a system prompt: data.system, or a system message in "
                                       "the first train record")
    local = Path(recipe.model) / TOKENIZER_CONFIG
    special, source = (added_tokens(recipe.model), str(local)) if local.is_file() else (
        list(SPECIAL_TOKEN_TEXTS), "the Qwen chat tokens (the model's tokenizer is not local)")
    problem = persona_problem(system, special)
    if problem:
        return Check("persona", False, f"{problem} (checked against {source})")
    return Check("persona", True, f"{len(system)} characters, no control-token text ({source})")


def swanlab_credentials(environ: Optional[dict[str, str]] = None) -> Optional[str]:
    """Where SwanLab would find an API key (what it reads: the env var, then ./.swanlab/.netrc, then the user's
    .netrc under $SWANLAB_ROOT or ~/.swanlab); None when nowhere."""
    env = os.environ if environ is None else environ
    if env.get("SWANLAB_API_KEY"):
        return "SWANLAB_API_KEY"
    root = Path(env.get("SWANLAB_ROOT") or env.get("SWANLAB_SAVE_DIR") or Path.home() / ".swanlab")
    for netrc in (Path.cwd() / ".swanlab" / ".netrc", root / ".netrc"):
        if netrc.is_file():
            return str(netrc)
    return None


def _swanlab_check(recipe: Recipe) -> Check:
    """SwanLab in cloud mode with no key stops at its interactive login after the model and data have loaded (or
    crashes without a TTY): decide here, in one line."""
    if recipe.report.swanlab_mode == "local":
        return Check("swanlab", True, "local mode: logs under ./swanlog, no key needed")
    found = swanlab_credentials()
    if found:
        return Check("swanlab", True, f"cloud mode, key from {found}")
    return Check("swanlab", False, "report_to swanlab needs a key: export SWANLAB_API_KEY (or run `swanlab login`), or "
                                   "--set report.swanlab_mode=local, or --set report.report_to=[none]")


def _extra_args_check(recipe: Recipe) -> Check:
    """Every extra_args name is a field of the ms-swift argument class the method's entry point parses, and every
    value has that field's type: a typo (``pakcing``) would otherwise stop training after the model and data have
    loaded, and a string where a switch belongs is no switch."""
    import dataclasses
    import difflib

    from swiftkit.stack.answers import remembered
    from swiftkit.train.methods import get_method

    method = get_method(recipe.method)

    def ask() -> list[str]:
        from swiftkit.stack.dialect import swift_api

        fields = {f.name: f for f in dataclasses.fields(swift_api(method.arguments))}
        problems = []
        for name, value in recipe.extra_args.items():
            if name not in fields:
                close = difflib.get_close_matches(name, sorted(fields), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                problems.append(f"'{name}' is not a `swift {' '.join(method.command)}` argument{hint}")
                continue
            problem = value_type_problem(fields[name].type, value)
            if problem:
                problems.append(f"'{name}': {problem}")
        return problems

    try:  # once per question and install, as the template check (swiftkit.stack.answers)
        inputs = [method.name, method.arguments, sorted(recipe.extra_args.items())]
        problems = remembered("extra_args", inputs, ask, code=EXTRA_ARGS_CODE)
    except SwiftkitError as exc:
        return Check("extra_args", False, f"cannot read ms-swift's {method.arguments} to check them ({exc})")
    if problems:
        return Check("extra_args", False, "; ".join(problems))
    return Check("extra_args", True, f"{', '.join(recipe.extra_args)}: {method.arguments} fields")


_BOOL_TEXT = ("true", "false", "True", "False", "1", "0")


def value_type_problem(annotation: object, value: object) -> Optional[str]:
    """Why ``value`` does not fit an ms-swift field typed ``annotation`` (bool, int, float, Literal, their Optional
    and List forms; other types are not checked here)."""
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        if value is None or not inner:
            return None
        problems = [value_type_problem(a, value) for a in inner]
        return None if any(p is None for p in problems) else problems[0]
    if origin in (list, typing.List):
        return value_type_problem(args[0], value) if args else None
    if origin is typing.Literal:
        return None if value in args or str(value) in map(str, args) else f"{value!r} is not one of {list(args)}"
    if annotation is bool:
        ok = isinstance(value, bool) or (isinstance(value, str) and value in _BOOL_TEXT)
        return None if ok else f"{value!r} is not a switch (true or false)"
    if annotation in (int, float):
        what = "an integer" if annotation is int else "a number"
        if isinstance(value, bool):
            return f"{value!r} is not {what}"
        try:
            number = float(value)  # type: ignore[arg-type]
            if annotation is int and (not number.is_integer() or (isinstance(value, str) and not value.strip(
                    ).lstrip("-").isdigit())):
                raise ValueError
        except (TypeError, ValueError):
            return f"{value!r} is not {what}"
    return None


def _init_check(recipe: Recipe, init_checkpoint: Optional[Path]) -> Check:
    """``init_from`` names a checkpoint this recipe can start from."""
    from swiftkit.run.rundir import is_adapter, resolve_init

    if init_checkpoint is None:
        try:
            init_checkpoint = resolve_init(str(recipe.init_from))
        except SwiftkitError as exc:
            return Check("init_from", False, str(exc))
    if is_adapter(init_checkpoint) and recipe.train_type == "full":
        return Check("init_from", False, f"{init_checkpoint} is a LoRA adapter: merge it first (swiftkit export "
                                         "--merge-lora) or set train_type: lora to continue it")
    kind = "LoRA adapter, continued" if is_adapter(init_checkpoint) else "full weights"
    return Check("init_from", True, f"{init_checkpoint} ({kind})")


def _installed(dist: str) -> bool:
    from swiftkit.stack.versions import installed

    return installed(dist) is not None


def preflight(
    recipe: Recipe,
    plan: Plan,
    cluster: Cluster,
    *,
    run_dir: Path,
    resume_checkpoint: Optional[Path] = None,
    init_checkpoint: Optional[Path] = None,
    empty_val: tuple[str, ...] = (),
    gpu_count: Union[int, Callable[[], int], None] = None,
    swift_version: Optional[str] = None,
    gpu_memory: Optional[Callable[[], list[int]]] = None,
) -> PreflightReport:
    """Run every check (never stops at the first failure). ``gpu_count``, ``swift_version`` and ``gpu_memory`` (bytes
    per visible GPU) are injectable."""
    from swiftkit.stack.dialect import dialect_for
    from swiftkit.stack.versions import installed

    report = PreflightReport()
    add = report.checks.append

    version = swift_version if swift_version is not None else installed("ms-swift")
    try:
        dialect = dialect_for(version)
        add(Check("ms-swift", True, f"{version} ({dialect.name} dialect)"))
    except SwiftkitError as exc:
        add(Check("ms-swift", False, str(exc)))

    config = None
    if is_local_model(recipe.model):
        path = Path(recipe.model).expanduser()
        config = read_model_config(recipe.model)
        if not path.is_dir():
            add(Check("model", False, f"{recipe.model}: no such folder"))
        elif config is None:
            add(Check("model", False, f"{path / 'config.json'}: missing or unreadable"))
        else:
            add(Check("model", True, f"{recipe.model}: local folder"))
    else:
        add(Check("model", True, f"{recipe.model}: hub id on {model_hub(recipe.hub)} (downloaded by ms-swift)"))
    add(_template_check(recipe, config))

    for kind, files in (("data.train", recipe.data.train), ("data.val", recipe.data.val)):
        for name in files:
            p = Path(dataset_file(name))
            if not p.is_file():
                add(Check(kind, False, f"{name}: no such file (run `make prep`?)"))
            elif p.stat().st_size == 0:
                add(Check(kind, False, f"{name}: empty file"))
            else:
                add(Check(kind, True, f"{name}: {p.stat().st_size} bytes"))
    for name in empty_val:
        add(Check("data.val", True, f"{name}: empty (prep --val-ratio 0?), left out: training without evaluation"))
    use = val_use_check(recipe)
    if use is not None:
        add(use)
    add(format_check(recipe))

    add(_remote_code_check(recipe, plan))
    if recipe.persona:
        add(_persona_check(recipe))

    ctx = context_length(config) if config else None
    if ctx is None:
        add(Check("max_length", True, f"{recipe.max_length} (model context not readable here)"))
    elif recipe.max_length > ctx:
        add(Check("max_length", False,
                  f"{recipe.max_length} exceeds the model's max_position_embeddings {ctx} ({recipe.model}/config.json)"))
    else:
        add(Check("max_length", True, f"{recipe.max_length} <= max_position_embeddings {ctx}"))

    if recipe.launch.device == "cuda":
        count = gpu_count() if callable(gpu_count) else gpu_count
        if count is None:
            count = visible_gpus()
        if cluster.nproc_per_node > count:
            add(Check("gpus", False, f"{cluster.nproc_per_node} requested per node, {count} visible"))
        else:
            add(Check("gpus", True, f"{cluster.nproc_per_node} requested per node, {count} visible"))
        add(memory_check(recipe, cluster, (gpu_memory or visible_gpu_memory)()))
    else:
        add(Check("gpus", True, f"cpu recipe: {cluster.nproc_per_node} process(es) per node"))
        add(Check("memory", True, "cpu recipe: not checked (no GPU memory to fit)"))

    if "--deepspeed" in plan.argv:
        ok = _installed("deepspeed")
        add(Check("deepspeed", ok, "installed" if ok else "the plan uses --deepspeed but deepspeed is not installed"))
    if recipe.run_train_type == "qlora":
        ok = _installed("bitsandbytes")
        add(Check("qlora", ok, "bitsandbytes installed" if ok else
                  "lora.qlora needs bitsandbytes: pip install -e '.[qlora]' on the CUDA machine"))

    if "swanlab" in recipe.report.report_to:
        add(_swanlab_check(recipe))
    if recipe.extra_args:
        add(_extra_args_check(recipe))
    if recipe.init_from:
        add(_init_check(recipe, init_checkpoint))
    if recipe.grpo is not None:
        from swiftkit.train.grpo.preflight import grpo_checks

        report.checks += grpo_checks(recipe, plan, cluster)
    if recipe.dpo is not None:
        from swiftkit.train.dpo.preflight import dpo_checks

        report.checks += dpo_checks(recipe)

    if cluster.nnodes > 1:
        add(network_check(cluster))
    if resume_checkpoint is not None:
        ok = resume_checkpoint.is_dir()
        add(Check("run_dir", ok, f"resume from {resume_checkpoint}" if ok else f"{resume_checkpoint}: no such checkpoint"))
        if ok:
            topology = resume_topology_check(recipe, cluster, resume_checkpoint)
            if topology is not None:
                add(topology)
    elif cluster.nnodes > 1:
        add(shared_run_dir_check(run_dir, recipe, cluster))
    elif run_dir.exists() and any(run_dir.iterdir()):
        add(Check("run_dir", False, f"{run_dir} already exists and is not empty (use --resume to continue it)"))
    else:
        add(Check("run_dir", True, f"{run_dir} (new)"))
    return report


def memory_check(recipe: Recipe, cluster: Cluster, memory: list[int]) -> Check:
    """The estimated memory per GPU (swiftkit.train.sizing) against the smallest of the GPUs this node's processes
    use, before any model loads. ``launch.memory_check: false`` reports the shortfall without refusing."""
    from swiftkit.train.sizing import (
        GIB,
        TIGHT,
        find_shape,
        fixes,
        recipe_estimate,
        setup_for,
    )

    try:
        shape, source = find_shape(recipe.model, recipe.hub)
    except SwiftkitError as exc:
        return Check("memory", True, f"not estimated: {exc}")
    used = memory[:cluster.nproc_per_node]
    if shape is None or not used:
        return Check("memory", True, f"not estimated: {source if shape is None else 'no GPU memory visible'}")
    setup = setup_for(recipe, cluster.world_size, shape)
    have = min(used)
    need = recipe_estimate(recipe, setup, have).peak
    said = f"~{need / GIB:.1f} GiB per GPU estimated, {have / GIB:.1f} GiB on the smallest visible GPU"
    if need <= have:
        return Check("memory", True, said + (" (tight)" if need > TIGHT * have else ""))
    if not recipe.launch.memory_check:
        return Check("memory", True, said + ": may not fit; training anyway (launch.memory_check false)")
    nearest = fixes(recipe, setup, have)
    return Check("memory", False, said + ": does not fit; " + (f"try {nearest[0]}, or" if nearest else "no single "
                 "change makes it fit (swiftkit plan --gpu-type shows the breakdown);") +
                 " --set launch.memory_check=false to train anyway")


def shared_run_dir_check(run_dir: Path, recipe: Recipe, cluster: Cluster) -> Check:
    """Several nodes name one run directory, started in any order. Node 0 writes the run's records, so it needs the
    folder new, or holding only the other nodes' logs; node k > 0 accepts the folder node 0 is writing (same recipe,
    not finished)."""
    from swiftkit.run.rundir import NODE_LOG, node_log_name

    entries = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
    if cluster.node_rank == 0:
        others = [name for name in entries if not NODE_LOG.match(name)]
        if others:
            return Check("run_dir", False, f"{run_dir} already exists and is not empty ({others[0]}; use --resume to "
                                           "continue it, or a new --run-dir)")
        return Check("run_dir", True, f"{run_dir} (new; node 0 writes the run's records, every node its own log)")
    if (run_dir / "result.json").exists():
        return Check("run_dir", False, f"{run_dir} holds a finished run (result.json); name a new --run-dir")
    info_file = run_dir / "swiftkit_run.json"
    if info_file.is_file():
        try:
            trained = json.loads(info_file.read_text(encoding="utf-8")).get("recipe")
        except (OSError, ValueError):
            trained = None
        if trained != recipe.name:
            return Check("run_dir", False, f"{run_dir} belongs to recipe '{trained}', not '{recipe.name}'")
    return Check("run_dir", True, f"{run_dir} (shared: node 0 writes the run's records, this node "
                                  f"{node_log_name(cluster.node_rank)})")


def network_check(cluster: Cluster, environ: Optional[dict[str, str]] = None) -> Check:
    """Several nodes: gloo's interface exists (``GLOO_SOCKET_IFNAME``) or one routes to the master; node 0 must own
    the master address (it listens there)."""
    from swiftkit.core.network import (
        interface_addresses,
        interface_for,
        interface_names,
        source_address,
    )

    env = os.environ if environ is None else environ
    master = cluster.master_addr or "127.0.0.1"
    named = env.get("GLOO_SOCKET_IFNAME")
    if named:
        have = interface_names()
        missing = [n for n in named.split(",") if n not in have]
        if missing:
            return Check("network", False, f"GLOO_SOCKET_IFNAME={named}: no interface {missing[0]} on this machine "
                                           f"(it has {', '.join(have)})")
        how = f"gloo on {named} (GLOO_SOCKET_IFNAME)"
    elif source_address(master) is None:
        return Check("network", False, f"--master-addr {master}: no route from this machine; check the address, "
                                       "or set GLOO_SOCKET_IFNAME to the interface to use")
    else:
        name = interface_for(master)
        how = (f"gloo on {name} (the route to master {master})" if name else
               f"a route to master {master} exists but no interface owns its source address here (an alias?); "
               "torch picks the interface: set GLOO_SOCKET_IFNAME to choose")
    if cluster.node_rank == 0:
        try:
            resolved = socket.gethostbyname(master)
        except OSError:
            resolved = master
        own = set(interface_addresses().values())
        if resolved not in own and not resolved.startswith("127.") and source_address(resolved) != resolved:
            return Check("network", False, f"--master-addr {master} is not an address of this machine, and node 0 "
                                           "listens there: give node 0's own address")
    return Check("network", True, how)


def resume_topology_check(recipe: Recipe, cluster: Cluster, checkpoint: Path) -> Optional[Check]:
    """A DeepSpeed checkpoint's optimizer state is partitioned over the processes that saved it, and DeepSpeed cannot
    re-partition it: resuming at another process count fails after the model has loaded. None: nothing to check."""
    from swiftkit.run.rundir import saved_world_size

    saved = saved_world_size(checkpoint)
    if saved is None:
        return None
    if saved == cluster.world_size:
        return Check("resume", True, f"{checkpoint.name}: DeepSpeed state of {saved} process(es), as planned")
    if str(recipe.extra_args.get("resume_only_model", "")).lower() in ("true", "1"):
        return Check("resume", True, f"{checkpoint.name}: saved by {saved} process(es), planned {cluster.world_size}: "
                                     "weights only (extra_args.resume_only_model), optimizer and schedule restart")
    return Check("resume", False, f"{checkpoint.name} was saved by {saved} DeepSpeed process(es) and this plan runs "
                                  f"{cluster.world_size}: DeepSpeed cannot re-partition its optimizer state; resume "
                                  f"with the same --gpus/--nnodes, or --set extra_args.resume_only_model=true "
                                  f"(weights only: optimizer and schedule restart)")
