"""The launcher: recipe -> plan -> preflight -> run directory -> training processes.

``train()`` is the Python API (the smoke run and ``swiftkit train`` call it). The processes it starts are
``python -m swiftkit.train.worker METHOD <args>`` (one process) or ``python -m torch.distributed.run <torchrun options>
-m swiftkit.train.worker METHOD <args>`` (several), with the same torchrun options ms-swift's ``swift/cli/main.py`` builds
from NPROC_PER_NODE / NNODES / NODE_RANK / MASTER_ADDR / MASTER_PORT; see :mod:`swiftkit.train.worker` for why.

Secrets (SWANLAB_API_KEY, HF_TOKEN, ...) reach the processes through the inherited environment only. They are
never part of the plan, the recorded env, or the run directory, and any occurrence in the process output is masked
before it is logged or shown.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from datasets_prep.atomic import write_json, write_text
from swiftkit.core.errors import SwiftkitError
from swiftkit.core.proc import run_logged
from swiftkit.run.checkpoint import problems as checkpoint_problems
from swiftkit.run.checkpoint import saves_training_state
from swiftkit.run.rundir import (
    RunInfo,
    is_adapter,
    newest_complete,
    next_run_dir,
    node_log_name,
    read_run_info,
    resolve_init,
    skipped_text,
    write_run_info,
)
from swiftkit.train.fast_path import Switch, fast_path
from swiftkit.train.mixing import Mixture, absolute_mix, resolve_mixture
from swiftkit.train.plan import Cluster, Plan, plan
from swiftkit.train.preflight import PreflightReport, preflight
from swiftkit.train.recipes import Recipe, load_recipe
from swiftkit.train.saving import ERROR_PREFIX

TORCHRUN_ENV = ("NPROC_PER_NODE", "MASTER_PORT", "NNODES", "NODE_RANK", "MASTER_ADDR")
"""Same order as ms-swift 3.12's ``get_torchrun_args``."""
DEFAULT_MASTER_PORT = 29500
"""torchrun's rendezvous port when --master-port is not given."""
DEFAULT_JOIN_TIMEOUT = 300
"""Seconds a node of a multi-node run waits for the others (torchrun's own: 900 for the static rendezvous, then retries)."""


@dataclass
class Planned:
    """Everything decided before anything is checked or started: what `swiftkit plan` prints."""

    recipe: Recipe
    cluster: Cluster
    plan: Plan
    run_dir: Path
    resume_checkpoint: Optional[Path]
    init_checkpoint: Optional[Path]
    """The checkpoint ``recipe.init_from`` resolved to; None when unset or not found (preflight then says why)."""
    empty_val: tuple[str, ...]
    """The recipe's val files that exist but are empty (prep --val-ratio 0), left out of the plan."""
    resume_note: Optional[str]
    """``--resume``: which checkpoint, what it restores, which newer incomplete ones were skipped (one line)."""
    fast: tuple[Switch, ...]
    """The GPU fast path's switches, on or off with why (swiftkit.train.fast_path)."""
    mixture: Optional[Mixture]
    """The recipe's data.mix with exact row counts (swiftkit.train.mixing); None when it mixes nothing."""


@dataclass
class Prepared(Planned):
    """A plan and its preflight report (what ``--dry-run`` shows)."""

    preflight: PreflightReport


def torchrun_args(env: dict[str, str], join_timeout: Optional[int] = None) -> Optional[list[str]]:
    """ms-swift's torchrun options from the launch env; None when it would run a single plain process. Several nodes
    also get ``--rdzv_conf timeout=join_timeout``: how long the static rendezvous waits for every node."""
    if "NPROC_PER_NODE" not in env and "NNODES" not in env:
        return None
    out: list[str] = []
    for key in TORCHRUN_ENV:
        if key in env:
            out += [f"--{key.lower()}", env[key]]
    if int(env.get("NNODES", "1")) > 1 and join_timeout is not None:
        out += ["--rdzv_conf", f"timeout={join_timeout}"]
    return out


def process_command(p: Plan, env: dict[str, str], python: str = sys.executable,
                    join_timeout: Optional[int] = None) -> list[str]:
    """The command that runs plan ``p`` in swiftkit's worker under ``env``: ``-m swiftkit.train.worker METHOD ARGS``."""
    worker = ["-m", "swiftkit.train.worker", p.method, *p.method_argv]
    tr = torchrun_args(env, join_timeout)
    if tr is None:
        return [python, *worker]
    return [python, "-m", "torch.distributed.run", *tr, *worker]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _absolute(recipe: Recipe) -> Recipe:
    """Local model and data paths made absolute, so the run directory's record does not depend on the cwd."""
    from swiftkit.core.local_model import is_local_model

    update: dict = {}
    if is_local_model(recipe.model):
        update["model"] = str(Path(recipe.model).expanduser().resolve())
    data = recipe.data.model_copy(update={
        "train": [str(Path(f).resolve()) for f in recipe.data.train],
        "val": [str(Path(f).resolve()) for f in recipe.data.val],
        "mix": absolute_mix(recipe),
    })
    update["data"] = data
    if recipe.init_from:
        update["init_from"] = str(Path(recipe.init_from).expanduser().resolve())
    return recipe.model_copy(update=update)


def _without_empty_val(recipe: Recipe) -> tuple[Recipe, tuple[str, ...]]:
    """Leave out val files that exist but are empty (``prep --val-ratio 0`` writes an empty val.jsonl); with none
    left, evaluation is off. ms-swift would otherwise fail on the empty dataset after the model has loaded."""
    from swiftkit.train.plan import dataset_file

    def empty(name: str) -> bool:
        path = Path(dataset_file(name))
        return path.is_file() and path.stat().st_size == 0

    dropped = tuple(name for name in recipe.data.val if empty(name))
    if not dropped:
        return recipe, ()
    val = [name for name in recipe.data.val if name not in dropped]
    update: dict = {"data": recipe.data.model_copy(update={"val": val})}
    if not val:
        update["eval_steps"] = None
    return recipe.model_copy(update=update), dropped


def plan_run(
    recipe: str | Path | Recipe,
    *,
    gpus: Optional[int] = None,
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: Optional[str] = None,
    master_port: Optional[int] = None,
    overrides: Sequence[str] = (),
    runs_root: str | Path = "runs",
    run_dir: str | Path | None = None,
    resume: Optional[str] = None,
) -> Planned:
    """Load and plan a recipe and pick its run directory: the one planning path of `plan` and `train`.

    Local model and data paths and the run directory are absolute, so the printed line works from any folder.
    The run directory is ``run_dir`` when given (required for several nodes: each node would otherwise pick its own
    next v<N>), the resumed run's, or the next ``runs_root/<recipe>/v<N>``.
    Reads the recipe and lists the runs root; writes nothing, imports no torch or ms-swift.
    """
    rec, empty_val = _without_empty_val(_absolute(load_recipe(recipe, list(overrides))))
    cluster = Cluster(
        nproc_per_node=gpus if gpus is not None else rec.launch.nproc_per_node,
        nnodes=nnodes, node_rank=node_rank, master_addr=master_addr, master_port=master_port,
    )
    resume_ckpt: Optional[Path] = None
    if nnodes > 1 and not (run_dir or resume):
        raise SwiftkitError(f"--nnodes {nnodes}: name the run directory with --run-dir (the same path on every node, "
                            "on shared storage); each node would otherwise pick its own next version")
    if resume and run_dir:
        raise SwiftkitError("--resume already names the run directory; drop --run-dir")
    resume_note: Optional[str] = None
    if resume:
        target = Path(resume)
        run_dir = target if (target / "swiftkit_run.json").is_file() else target.parent  # a run, or its checkpoint
        trained = read_run_info(run_dir).recipe
        if trained != rec.name:
            raise SwiftkitError(f"--resume {resume}: that run trained recipe '{trained}', not '{rec.name}'")
        resume_ckpt, resume_note = resume_choice(target, run_dir, rec)
    elif run_dir is None:
        run_dir = next_run_dir(runs_root, rec.name)
    run_dir = Path(run_dir).expanduser().resolve()
    init_ckpt: Optional[Path] = None
    if rec.init_from:
        try:
            init_ckpt = resolve_init(rec.init_from).resolve()
        except SwiftkitError:
            init_ckpt = None  # planned as written; preflight reports it
    fast = tuple(fast_path(rec))
    mixture = resolve_mixture(rec)  # reads the row counts of the train and mix files
    p = plan(rec, cluster, output_dir=str(run_dir), resume_from=str(resume_ckpt.resolve()) if resume_ckpt else None,
             init_checkpoint=str(init_ckpt) if init_ckpt else None,
             init_adapter=is_adapter(init_ckpt) if init_ckpt else None, dialect=_installed_dialect(), fast=fast,
             mixture=mixture)
    return Planned(rec, cluster, p, run_dir, resume_ckpt, init_ckpt, empty_val, resume_note, fast, mixture)


def resume_choice(target: Path, run_dir: Path, recipe: Recipe) -> tuple[Optional[Path], Optional[str]]:
    """The checkpoint ``--resume TARGET`` continues from, and the one line that says which and what it restores.

    A run directory resumes from its newest complete checkpoint (:mod:`swiftkit.run.checkpoint`), passing over newer
    incomplete ones (named in the line); a checkpoint folder must itself be complete. A checkpoint saved with
    ``save_only_model`` (the smoke's default) holds no optimizer or scheduler state: resuming from it is allowed (the
    weights are what a crash would otherwise lose, and refusing would leave every default run unresumable), and the
    line says plainly that the optimizer starts empty and the learning-rate schedule starts again from its first step.
    A missing checkpoint folder is left to preflight (``None``: "no such checkpoint").
    """
    if target == run_dir:
        ckpt, skipped = newest_complete(run_dir)
        if ckpt is None:
            found = f": {skipped_text(skipped)}" if skipped else " (no checkpoint-* folder)"
            raise SwiftkitError(f"--resume {target}: no complete checkpoint to continue from{found}")
    else:
        if not target.is_dir():
            return target, None
        problems = checkpoint_problems(target)
        if problems:
            newest, _ = newest_complete(run_dir)
            other = f"; the newest complete one is {newest}" if newest is not None else ""
            raise SwiftkitError(f"--resume {target}: incomplete checkpoint ({problems[0]}){other}")
        ckpt, skipped = target, []
    if str(recipe.extra_args.get("resume_only_model", "")).lower() in ("true", "1"):
        state = ("weights only (extra_args.resume_only_model): the optimizer starts empty and the learning-rate "
                 "schedule starts again from its first step")
    elif saves_training_state(ckpt):
        state = "optimizer, learning-rate schedule and RNG state restored"
    else:
        state = ("weights only (saved with save_only_model): the optimizer starts empty and the learning-rate "
                 "schedule starts again from its first step")
    note = f"resuming from {ckpt.name}: {state}"
    if skipped:
        note += f"; skipped {skipped_text(skipped)}"
    return ckpt, note


def prepare(recipe: str | Path | Recipe, *, gpu_count: Optional[int] = None,
            gpu_memory: Optional[Callable[[], list[int]]] = None, **options: object) -> Prepared:
    """:func:`plan_run` (same ``options``) plus preflight. Starts nothing, writes nothing. ``gpu_count`` and
    ``gpu_memory`` (bytes per visible GPU) stand in for the machine's GPUs (tests)."""
    planned = plan_run(recipe, **options)  # type: ignore[arg-type]
    report = preflight(planned.recipe, planned.plan, planned.cluster, run_dir=planned.run_dir,
                       resume_checkpoint=planned.resume_checkpoint, init_checkpoint=planned.init_checkpoint,
                       empty_val=planned.empty_val, gpu_count=gpu_count, gpu_memory=gpu_memory)
    return Prepared(**vars(planned), preflight=report)


def _installed_dialect():
    from swiftkit.stack.dialect import SWIFT3, dialect_for
    from swiftkit.stack.versions import installed

    try:
        return dialect_for(installed("ms-swift"))
    except SwiftkitError:
        return SWIFT3  # preflight reports the unsupported version as a failure


def record_run(prep: Prepared) -> None:
    """Write the run directory's records before training: RunInfo, recipe, versions, data manifests."""
    from swiftkit.stack.versions import stack_versions

    rec, run = prep.recipe, prep.run_dir
    run.mkdir(parents=True, exist_ok=True)
    write_text(run / "recipe.yaml", rec.to_yaml())
    write_json(run / "versions.json", stack_versions())
    for folder in sorted({Path(f).parent for f in [*rec.data.train, *rec.data.val, *rec.mix_files]}):
        manifest = folder / "manifest.json"
        if manifest.is_file():
            write_text(run / "data" / f"{folder.name}.manifest.json", manifest.read_text(encoding="utf-8"))
    write_run_info(run, RunInfo(
        recipe=rec.name,
        model=rec.model,
        model_type=rec.model_type,
        template=rec.template,
        train_type=rec.run_train_type,
        max_length=rec.max_length,
        train_files=[*rec.trained_files, *rec.mix_files],
        val_files=rec.held_out_files,  # never rows training saw: eval and infer --val read them as unseen prompts
        system=rec.data.system,
        lora_rank=rec.lora.rank if rec.lora else None,
        persona=rec.persona,
        trust_remote_code=rec.trust_remote_code,
        method=rec.method,
        argv=list(prep.plan.argv),
        env=dict(prep.plan.env),
        data_mix=prep.mixture.to_json() if prep.mixture else [],
    ))


def execute(prep: Prepared, *, on_output: Optional[Callable[[str], None]] = None,
            join_timeout: int = DEFAULT_JOIN_TIMEOUT) -> Path:
    """Start the training processes and wait. Output goes to the node's log in the run directory (``train.log`` on
    node 0, ``train.node<k>.log`` on node k; secrets masked) and to ``on_output`` line by line. Raises SwiftkitError
    when training fails.

    Several nodes share one run directory (on shared storage): node 0 writes the run's records before training and
    the persona template after; node k writes its own log, and its ranks write what every rank saves (DeepSpeed
    shards, RNG state) into the checkpoints. Node k waits up to ``join_timeout`` seconds for node 0 to listen, then
    torchrun's rendezvous waits as long for every node; after the rendezvous, ms-swift's ``ddp_timeout`` applies.
    """
    prep.preflight.raise_if_failed()
    cluster = prep.cluster
    leader = cluster.node_rank == 0
    say = on_output or (lambda line: print(line, file=sys.stderr))
    if prep.resume_note and leader:
        say(f"swiftkit: {prep.resume_note}")
    if prep.resume_checkpoint is not None:  # the recipe as resumed (overrides may differ) goes beside the first one's
        if leader:
            write_text(prep.run_dir / f"recipe.resume-{prep.resume_checkpoint.name}.yaml", prep.recipe.to_yaml())
    elif leader:
        record_run(prep)
    launch_env = dict(prep.plan.env)
    if prep.plan.world_size > 1 and cluster.nnodes == 1 and "MASTER_PORT" not in launch_env:
        launch_env["MASTER_PORT"] = str(_free_port())  # parallel local runs must not collide on torchrun's 29500
    if cluster.nnodes > 1:
        launch_env.update(multinode_env(cluster, say))
        if not leader:
            wait_for_master(cluster, join_timeout, say)
    env = child_env(prep.recipe, launch_env)
    cmd = process_command(prep.plan, launch_env, join_timeout=join_timeout if cluster.nnodes > 1 else None)
    log = prep.run_dir / node_log_name(cluster.node_rank)
    started = time.time()
    errors: list[str] = []

    def output(line: str) -> None:
        if ERROR_PREFIX in line:  # a rank's one-line fatal error (a failed checkpoint save), maybe after tqdm's \r
            errors.append(line.split(ERROR_PREFIX, 1)[1])
        if on_output is not None:
            on_output(line)

    code, _ = run_logged(cmd, log, env=env, on_output=output, append=prep.resume_checkpoint is not None)
    if prep.recipe.persona and leader:  # every checkpoint saved, also those of a run that failed later
        persona_into_checkpoints(prep.run_dir, on_output)
    if code != 0:
        if cluster.nnodes > 1 and not _workers_started(prep.run_dir, started):
            raise SwiftkitError(f"node {cluster.node_rank}: no training process started: the {cluster.nnodes} nodes "
                                f"did not all join within {join_timeout} s (--join-timeout), or torchrun failed before "
                                f"(a taken --master-port?); every node needs the same --master-addr, --master-port and "
                                f"--run-dir; see {log}")
        if errors:
            raise SwiftkitError(f"training stopped: {errors[-1]}; see {log}")
        raise SwiftkitError(f"training failed with exit status {code}; see {log}")
    return prep.run_dir


def _workers_started(run_dir: Path, since: float) -> bool:
    """Whether a training process of this launch began: each rank writes its shim evidence first thing."""
    return any(p.stat().st_mtime >= since - 1 for p in (run_dir / "swiftkit_shims").glob("rank*.json"))


def multinode_env(cluster: Cluster, say: Callable[[str], None], environ: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The interface gloo uses: ``GLOO_SOCKET_IFNAME`` as the user set it, else the one that routes to the master
    (gloo would otherwise bind the hostname's address, 127.0.0.1 in most containers, and never connect)."""
    from swiftkit.core.network import interface_for

    env = os.environ if environ is None else environ
    if env.get("GLOO_SOCKET_IFNAME"):
        say(f"swiftkit: node {cluster.node_rank}: gloo on {env['GLOO_SOCKET_IFNAME']} (GLOO_SOCKET_IFNAME)")
        return {}
    name = interface_for(cluster.master_addr or "127.0.0.1")
    if name is None:  # preflight reported it; torch picks
        return {}
    say(f"swiftkit: node {cluster.node_rank}: gloo on {name} (the route to {cluster.master_addr})")
    return {"GLOO_SOCKET_IFNAME": name}


def wait_for_master(cluster: Cluster, timeout: int, say: Callable[[str], None]) -> None:
    """Node k > 0: wait until node 0 listens on the rendezvous port; one line after ``timeout`` seconds."""
    from swiftkit.core.network import wait_for_port

    host, port = cluster.master_addr or "127.0.0.1", cluster.master_port or DEFAULT_MASTER_PORT
    said = [False]

    def waiting(elapsed: float) -> None:
        if not said[0]:
            say(f"swiftkit: node {cluster.node_rank}: waiting for node 0 at {host}:{port} (up to {timeout} s)")
            said[0] = True

    error = wait_for_port(host, port, timeout, on_wait=waiting)
    if error is not None:
        raise SwiftkitError(f"node {cluster.node_rank}: node 0 at {host}:{port} did not answer within {timeout} s "
                            f"({error}); check --master-addr/--master-port, that node 0 is started, and the firewall")


HUB_LOGIN_ENV = ("MODELSCOPE_API_TOKEN",)
"""Tokens ms-swift logs in to the hub with at every start when they are set (``BaseArguments.__post_init__``)."""


def child_env(recipe: Recipe, launch_env: dict[str, str], environ: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The training processes' environment: the caller's plus the plan's. A hub login token is passed only when
    the run needs the hub (a hub model id): ms-swift would otherwise log in at every start, which fails offline."""
    from swiftkit.core.local_model import is_local_model

    env = {**(os.environ if environ is None else environ), **launch_env}
    if is_local_model(recipe.model):
        for key in HUB_LOGIN_ENV:
            env.pop(key, None)
    return env


def persona_into_checkpoints(run_dir: Path, on_output: Optional[Callable[[str], None]] = None) -> None:
    """Write the persona into every complete checkpoint's chat template (swiftkit.run.persona; the worker already
    wrote it into each before marking it complete, so this finds work only in checkpoints saved another way); a
    failure is reported, not raised: the weights are fine, and `swiftkit check --fix` can write the template later."""
    from swiftkit.run.persona import apply_to_run

    say = on_output or (lambda line: print(line, file=sys.stderr))
    try:
        changed = apply_to_run(run_dir)
    except SwiftkitError as exc:
        say(f"swiftkit: warning: persona template not written: {exc}")
        return
    except OSError as exc:  # disk full: one line, the checkpoints as they are
        say(f"swiftkit: warning: persona template not written: {exc.strerror or exc}"
            + (f" ({exc.filename})" if exc.filename else ""))
        return
    for ckpt in changed:
        say(f"swiftkit: persona template written into {Path(ckpt).name}")


def train(
    recipe: str | Path,
    *,
    gpus: Optional[int] = None,
    overrides: Sequence[str] = (),
    runs_root: str | Path = "runs",
    run_dir: str | Path | None = None,
    dry_run: bool = False,
    resume: Optional[str] = None,
    on_output: Optional[Callable[[str], None]] = None,
    join_timeout: int = DEFAULT_JOIN_TIMEOUT,
    **cluster: object,
) -> Path:
    """Plan, preflight and (unless ``dry_run``) train ``recipe``; returns the run directory.

    ``cluster`` takes nnodes / node_rank / master_addr / master_port for multi-node runs.
    Raises PreflightError (every failed check) before anything starts, or SwiftkitError if training fails.
    """
    prep = prepare(recipe, gpus=gpus, overrides=overrides, runs_root=runs_root, run_dir=run_dir, resume=resume,
                   **cluster)  # type: ignore[arg-type]
    prep.preflight.raise_if_failed()
    if dry_run:
        return prep.run_dir
    return execute(prep, on_output=on_output, join_timeout=join_timeout)
