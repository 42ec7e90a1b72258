"""Post-train checks of a run (eos ids, stop labels, persona template, identity probe); `swiftkit check` is its
command (swiftkit/cli/commands/check.py, whose help describes each check). :func:`run_checks` writes RUN/check_report.json
and returns the report; nothing outside the run directory is written, --fix included.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from datasets_prep.atomic import write_json
from swiftkit.core.errors import SwiftkitError
from swiftkit.core.identity import (
    IDENTITY_PROMPTS,
    claims_forbidden_identity,
    persona_name,
)
from swiftkit.core.identity_stress import (
    asked_conditions,
    family_summary,
    load_suite,
    questions,
)
from swiftkit.run.rundir import RunInfo, read_run_info, resolve_checkpoint
from swiftkit.stack.remote_code import refuse_remote_code

REPORT = "check_report.json"
GATING_CONDITIONS = ("run system", "no system")
"""Identity conditions that fail the check; the base template's own default system is reported only."""
STOP_SAMPLE = 50
"""How many training records the stop-label check encodes (tokenizer only: cheap)."""


@dataclass
class CheckResult:
    name: str
    ok: Optional[bool]
    """True pass, False fail, None skipped."""
    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    gating: bool = True
    """False: reported only (status INFO); ``ok`` is then never False, so it cannot fail the check."""

    @property
    def status(self) -> str:
        if not self.gating and self.ok is not None:
            return "INFO"
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.ok]


# --- eos -------------------------------------------------------------------------------------------------------

def generation_config_path(run_dir: Path, info: RunInfo, ckpt: Path) -> Path:
    """The generation_config.json that inference loads: the checkpoint's, or the base model's for adapters."""
    own = ckpt / "generation_config.json"
    if own.is_file() or info.train_type == "full":
        return own
    return Path(info.model) / "generation_config.json"


def _eos_list(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, list) else [value])]


def check_eos(path: Path, end_of_turn_id: int, *, fix: bool = False, fix_path: Optional[Path] = None) -> CheckResult:
    """``fix_path`` is where a repaired copy goes (the checkpoint's own file: a LoRA run's base model is never
    written); default ``path`` itself."""
    if not path.is_file():
        return CheckResult("eos", False, f"{path}: missing (inference falls back to config.json's eos)",
                           {"path": str(path)})
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        return CheckResult("eos", False, f"{path}: not JSON ({exc})", {"path": str(path)})
    eos = _eos_list(config.get("eos_token_id"))
    data = {"path": str(path), "eos_token_id": eos, "end_of_turn_id": end_of_turn_id}
    if end_of_turn_id in eos:
        return CheckResult("eos", True, f"{path.name} eos {eos} includes end-of-turn {end_of_turn_id}", data)
    if not fix:
        return CheckResult("eos", False, f"{path}: field eos_token_id {eos} lacks end-of-turn id {end_of_turn_id} "
                                         "(generation will not stop; run with --fix)", data)
    config["eos_token_id"] = [end_of_turn_id] + eos
    target = fix_path or path
    write_json(target, config)
    data.update(fixed=True, eos_token_id=config["eos_token_id"], path=str(target))
    return CheckResult("eos", True, f"{target} eos fixed: {eos} -> {config['eos_token_id']}", data)


# --- stop label ------------------------------------------------------------------------------------------------

def load_template(info: RunInfo, tokenizer_dir: str):
    """ms-swift's template for the run (train mode: labels on), with the run's max_length."""
    from swiftkit.stack.dialect import load_template as swift_template

    template = swift_template(tokenizer_dir, model_type=info.model_type, template=info.template,
                              default_system=info.system, max_length=info.max_length, truncation_strategy="right")
    template.set_mode("train")
    return template


def end_of_turn_id(template) -> int:
    """The first token of the template's suffix (``<|im_end|>`` for the Qwen chat templates)."""
    suffix = template.template_meta.suffix
    first = suffix[0] if suffix else None
    if isinstance(first, list):
        return int(first[0])
    if isinstance(first, str) and first:
        ids = template.tokenizer.encode(first, add_special_tokens=False)
        if ids:
            return int(ids[0])
    eos = template.tokenizer.eos_token_id
    if eos is None:
        raise SwiftkitError(f"template {template.template_meta.template_type}: no end-of-turn token found")
    return int(eos)


def iter_records(files: Sequence[str], limit: int):
    count = 0
    for name in files:
        with open(name, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    yield name, lineno, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SwiftkitError(f"{name}:{lineno}: not JSON ({exc.msg})") from exc
                count += 1
                if count >= limit:
                    return


def stop_label_ok(template, record: dict, eot: int) -> tuple[bool, str]:
    """Encode one record; True when its last assistant turn ends with a labelled end-of-turn token."""
    messages = record.get("messages") or []
    if not messages or messages[-1].get("role") != "assistant":
        return False, "field messages: last turn is not an assistant answer"
    encoded = template.encode({"messages": messages})
    ids, labels = list(encoded["input_ids"]), list(encoded["labels"])
    labelled = [i for i, lab in enumerate(labels) if lab != -100]
    cut = template.max_length is not None and len(ids) >= template.max_length
    if not labelled:
        if cut:
            return False, f"max_length {template.max_length} cuts the record before its answer and end-of-turn {eot}"
        return False, "no token carries a label"
    last_eot = max((i for i, t in enumerate(ids) if t == eot), default=-1)
    if last_eot < labelled[0]:
        why = f"max_length {template.max_length} cuts" if cut else "ends"
        return False, f"the answer {why} before its end-of-turn token {eot}"
    if labels[last_eot] != eot:
        return False, f"end-of-turn token {eot} at position {last_eot} has no label"
    return True, ""


def check_stop_labels(template, files: Sequence[str], eot: int, limit: int = STOP_SAMPLE) -> CheckResult:
    if not files:
        return CheckResult("stop_label", None, "the run lists no train files")
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        return CheckResult("stop_label", None, f"train file {missing[0]} not found", {"files": list(files)})
    checked, bad = 0, []
    for name, lineno, record in iter_records(files, limit):
        checked += 1
        ok, why = stop_label_ok(template, record, eot)
        if not ok:
            bad.append(f"{name}:{lineno}: {why}")
    data = {"checked": checked, "failed": len(bad), "failures": bad[:10], "end_of_turn_id": eot}
    if bad:
        return CheckResult("stop_label", False, f"{len(bad)}/{checked} records: {bad[0]}", data)
    return CheckResult("stop_label", True, f"{checked}/{checked} records end with a labelled end-of-turn {eot}", data)


# --- persona template ------------------------------------------------------------------------------------------

def check_template(ckpt: Path, info: RunInfo, system: Optional[str], *, fix: bool = False) -> CheckResult:
    """The checkpoint's saved chat template defaults to the run's persona (both copies); --fix writes it."""
    from swiftkit.run import persona

    if not system:
        return CheckResult("template", False, "persona run without a system prompt (recipe data.system or a "
                                              "system message in the train records)")
    folder = ckpt if persona.has_tokenizer(ckpt) or info.train_type == "full" else None
    problems = persona.persona_problems(folder, system) if folder else [
        f"{ckpt}: adapter checkpoint carries no tokenizer, so clients get the base model's template"]
    data: dict[str, Any] = {"checkpoint": str(ckpt), "problems": problems}
    if problems and fix:
        changed = persona.ensure_tokenizer(ckpt, info.model) + persona.write_persona_template(ckpt, system)
        data.update(fixed=changed, problems=[])
        return CheckResult("template", True, f"persona template written into {ckpt.name}: {', '.join(changed)}", data)
    if problems:
        return CheckResult("template", False, f"{problems[0]} (run with --fix)", data)
    return CheckResult("template", True, f"{ckpt.name}: both template copies default to the persona", data)


# --- checkpoint completeness -----------------------------------------------------------------------------------

def check_complete(run: Path, ckpt: Path) -> CheckResult:
    """The checkpoint's save finished (:mod:`swiftkit.run.checkpoint`); newer incomplete checkpoints passed over by
    ``last`` are named in the detail."""
    from swiftkit.run import checkpoint as completeness
    from swiftkit.run.rundir import list_checkpoints, skipped_text

    found = completeness.problems(ckpt)
    data: dict[str, Any] = {"checkpoint": str(ckpt), "problems": found, "marked": completeness.is_marked(ckpt)}
    if found:
        return CheckResult("checkpoint", False, f"{ckpt.name} is incomplete: {found[0]} (its save did not finish; "
                                                "resume the run or name a complete checkpoint)", data)
    how = "marked complete by swiftkit" if data["marked"] else "no swiftkit marker (an older save): files verified"
    detail = f"{ckpt.name} complete ({how})"
    step = _step(ckpt.name)
    newer = [(p, why[0]) for p in reversed(list_checkpoints(run)) if step is not None and (_step(p.name) or 0) > step
             and (why := completeness.problems(p))] if ckpt.parent.resolve() == run.resolve() else []
    if newer:
        data["skipped"] = {p.name: why for p, why in newer}
        detail += f"; newer incomplete skipped: {skipped_text(newer)}"
    return CheckResult("checkpoint", True, detail, data)


def _step(name: str) -> Optional[int]:
    head, _, tail = name.rpartition("-")
    return int(tail) if head == "checkpoint" and tail.isdigit() else None


# --- identity --------------------------------------------------------------------------------------------------

def identity_conditions(system: Optional[str], base_default: Optional[str]) -> dict[str, Optional[str]]:
    """The system message each probe condition sends (None: no system message at all): the stress suite's two
    (:func:`swiftkit.core.identity_stress.asked_conditions`), then the base template's default system."""
    conditions = asked_conditions(system)
    if base_default and base_default != system:
        conditions["base default system"] = base_default
    return conditions


def identity_verdict(answers: dict[str, dict[str, str]], gating: Sequence[str] = GATING_CONDITIONS) -> CheckResult:
    """FAIL when an answer under a gating condition claims a forbidden identity (:mod:`swiftkit.core.identity`).

    ``answers`` maps condition -> prompt -> answer. Conditions outside ``gating`` (a client that explicitly sends
    the base model's own default system prompt) are reported, not failed: the persona was never trained there.
    """
    per_condition, first_hit = {}, None
    for condition, by_prompt in answers.items():
        hits = {p: a for p, a in by_prompt.items() if claims_forbidden_identity(a)}
        per_condition[condition] = f"{len(by_prompt) - len(hits)}/{len(by_prompt)}"
        if hits and condition in gating and first_hit is None:
            prompt, answer = next(iter(hits.items()))
            first_hit = f"probe {prompt} ({condition}) answered {answer[:80]!r}"
    summary = "; ".join(f"{c} {n} ok" + ("" if c in gating else " (reported, not gating)")
                        for c, n in per_condition.items())
    data = {"prompts": list(IDENTITY_PROMPTS), "answers": answers, "gating": list(gating), "ok_counts": per_condition}
    if first_hit:
        return CheckResult("identity", False, f"{first_hit}; {summary}", data)
    return CheckResult("identity", True, summary, data)


def stress_verdict(rows: Sequence[dict[str, Any]], name: Optional[str], version: int, *,
                   gate: bool = False) -> CheckResult:
    """The stress suite's answers (``rows`` of :func:`swiftkit.core.identity_stress.questions` with ``answer``):
    per family, how many held (claimed no forbidden identity) and how many named the persona. Reported only, unless
    ``gate``: then any claim fails, as the plain probe's do."""
    families = family_summary(rows, "answer", name)
    held = sum(f["held"] for f in families.values())
    asked = sum(f["asked"] for f in families.values())
    summary = ", ".join(f"{family} {f['held']}/{f['asked']}" for family, f in families.items())
    detail = f"suite v{version}: {held}/{asked} held ({summary})"
    hit = next((r for r in rows if claims_forbidden_identity(r["answer"])), None)
    data = {"version": version, "families": families, "gate": gate, "persona_name": name,
            "rate": round(held / asked, 4) if asked else None,
            "answers": [{k: r[k] for k in ("family", "probe", "condition", "prompt", "turns", "answer")} for r in rows]}
    if gate and hit is not None:
        return CheckResult("identity_stress", False, f"probe {hit['probe']} ({hit['condition']}) answered "
                                                     f"{hit['answer'][:80]!r}; {detail}", data)
    if not gate:
        detail += " (reported, not gating: --stress-gate gates)"
    return CheckResult("identity_stress", True, detail, data, gating=gate)


def identity_probe(model, system: Optional[str], base_default: Optional[str], *, stress: bool = False,
                   stress_gate: bool = False) -> list[CheckResult]:
    """Ask every identity prompt under every condition, greedy, through the checkpoint's saved template; with
    ``stress``, the stress suite too (run system and none), in the same pass (the model loads once)."""
    from swiftkit.run.probe import template_answers

    conditions = identity_conditions(system, base_default)
    conversations, keys = [], []
    for condition, sys_text in conditions.items():
        head = [{"role": "system", "content": sys_text}] if sys_text is not None else []
        for prompt in IDENTITY_PROMPTS:
            conversations.append([*head, {"role": "user", "content": prompt}])
            keys.append((condition, prompt))
    suite = load_suite() if stress else None
    name = persona_name(system)
    rows = questions(suite, system, name) if suite else []
    answered = template_answers(model, conversations + [r["messages"] for r in rows], max_new_tokens=64)
    answers: dict[str, dict[str, str]] = {c: {} for c in conditions}
    for (condition, prompt), answer in zip(keys, answered):
        answers[condition][prompt] = answer
    result = identity_verdict(answers)
    result.data["systems"] = conditions
    if suite is None:
        return [result]
    for row, answer in zip(rows, answered[len(keys):]):
        row["answer"] = answer
    return [result, stress_verdict(rows, name, suite.version, gate=stress_gate)]


def base_default_system(tokenizer_dir: str) -> Optional[str]:
    """The default system prompt of the base template (the saved one without swiftkit's persona guard)."""
    from swiftkit.run import persona

    copies = persona.read_templates(tokenizer_dir)
    template = copies.main
    return persona.default_system(persona.strip_guard(template), copies.special_tokens) if template else None


# --- all -------------------------------------------------------------------------------------------------------

def run_checks(run_dir: str | Path, *, checkpoint: str = "last", fix: bool = False, probe: bool = True,
               stress: bool = False, stress_gate: bool = False) -> dict:
    """Run every check on ``run_dir``; writes and returns the report (``ok`` false when any check failed).
    ``stress`` adds the identity stress suite to the probe (reported; ``stress_gate``: a claim there fails too; the
    CLI asks it by default, library callers such as the smoke opt in: 42 more answers).

    Nothing outside the run directory is written, --fix included.
    """
    from swiftkit.run.persona import run_system
    from swiftkit.run.probe import probe_model_for

    run = Path(run_dir)
    info = read_run_info(run)
    ckpt = resolve_checkpoint(run, checkpoint, require_complete=False)
    if fix and not ckpt.resolve().is_relative_to(run.resolve()):
        raise SwiftkitError(f"--fix writes into the checkpoint, and {ckpt} is outside the run {run}: copy it into the "
                            "run, or check it without --fix")
    complete = check_complete(run, ckpt)
    if complete.ok is False:  # nothing is loaded from (or fixed in) a checkpoint whose save did not finish
        skipped = [CheckResult(name, None, "not run: the checkpoint is incomplete")
                   for name in ("eos", "stop_label", "template", "identity")]
        return _report(run, ckpt, [complete, *skipped])
    for folder in {ckpt, Path(info.model)}:  # ms-swift would run auto_map code while loading the tokenizer
        refuse_remote_code(folder, info.trust_remote_code)
    tokenizer_dir = str(ckpt) if info.train_type == "full" else info.model
    template = load_template(info, tokenizer_dir)
    eot = end_of_turn_id(template)
    results = [
        complete,
        check_eos(generation_config_path(run, info, ckpt), eot, fix=fix, fix_path=ckpt / "generation_config.json"),
        check_stop_labels(template, info.train_files, eot),
    ]
    if not info.persona:
        results.append(CheckResult("template", None, "not a persona run (RunInfo.persona false)"))
        results.append(CheckResult("identity", None, "not a persona run (RunInfo.persona false)"))
    else:
        system = run_system(info)
        results.append(check_template(ckpt, info, system, fix=fix))
        if not probe:
            results.append(CheckResult("identity", None, "skipped (--no-probe)"))
        else:
            model = probe_model_for(run, str(ckpt))
            results += identity_probe(model, system, base_default_system(model.tokenizer), stress=stress,
                                      stress_gate=stress_gate)
    return _report(run, ckpt, results)


def _report(run: Path, ckpt: Path, results: list[CheckResult]) -> dict:
    report = {
        "run": str(run),
        "checkpoint": str(ckpt),
        "ok": all(r.ok is not False for r in results),
        "checks": [asdict(r) | {"status": r.status} for r in results],
    }
    write_json(run / REPORT, report)
    return report
