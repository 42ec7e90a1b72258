"""What `swiftkit eval` measures: the held-out prompts, the base model's and the tuned checkpoint's greedy answers to
them (same conversation, same system prompt), the identity probe for persona runs, and the run's logged losses.

Generation goes through each model's own saved chat template, as a client gets it: transformers (:mod:`swiftkit.run.probe`)
where vLLM cannot run, vLLM where it can (swiftkit.stack.backend). The result is the report as a dict (see
:mod:`swiftkit.evaluate.report` for the files); metrics come from :mod:`swiftkit.evaluate.metrics`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from swiftkit.core.errors import SwiftkitError
from swiftkit.core.jsonl import read_lines
from swiftkit.evaluate import metrics as eval_metrics
from swiftkit.run.rundir import RunInfo, read_run_info
from swiftkit.stack.backend import Backend, default_backend, require_backend

DEFAULT_LIMIT = 20
DEFAULT_MAX_NEW_TOKENS = 256


# --- prompts ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prompt:
    """One held-out conversation: the messages sent (system first when there is one, ending with the user turn) and
    the reference answer (the record's last assistant message; None for a bare prompt)."""

    messages: tuple[dict, ...]
    reference: Optional[str]
    where: str
    """file:line it came from."""

    @property
    def prompt(self) -> str:
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")

    @property
    def system(self) -> Optional[str]:
        return self.messages[0]["content"] if self.messages and self.messages[0]["role"] == "system" else None


def prompt_from_record(record: Any, where: str, system: Optional[str]) -> Prompt:
    """A prep/messages record (``{"messages": [...]}``), ``{"prompt": ..., "reference": ..., "system": ...}``, or a
    bare string. A conversation without its own system message gets ``system`` (the run's), as prep wrote it."""
    if isinstance(record, str):
        record = {"prompt": record}
    if not isinstance(record, dict):
        raise SwiftkitError(f"{where}: expected an object with messages or prompt, got {type(record).__name__}")
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                                     and m.get("role") in ("system", "user", "assistant")
                                                     for m in messages):
            raise SwiftkitError(f"{where}: field messages: a list of {{role, content}} with roles system/user/assistant")
        reference = None
        if messages and messages[-1]["role"] == "assistant":
            reference, messages = messages[-1]["content"], messages[:-1]
        if not messages or messages[-1]["role"] != "user":
            raise SwiftkitError(f"{where}: field messages: no user turn to answer")
    elif isinstance(record.get("prompt"), str) and record["prompt"].strip():
        messages = [{"role": "user", "content": record["prompt"]}]
        if isinstance(record.get("system"), str):
            messages.insert(0, {"role": "system", "content": record["system"]})
        reference = record.get("reference") if isinstance(record.get("reference"), str) else None
    else:
        raise SwiftkitError(f"{where}: needs a messages list or a non-empty prompt field")
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    if system and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system})
    return Prompt(tuple(messages), reference, where)


def read_prompts(path: str | Path, system: Optional[str], limit: int) -> list[Prompt]:
    """The first ``limit`` prompts of a file: one per line, each a JSON object (see :func:`prompt_from_record`) or,
    when the line does not start with ``{``, the prompt text itself. Errors name file:line."""
    file = Path(path)
    if not file.is_file():
        raise SwiftkitError(f"{path}: no such prompts file")
    prompts: list[Prompt] = []
    for lineno, line in read_lines(file):
        if len(prompts) >= limit:
            break
        text = line.strip()
        where = f"{path}:{lineno}"
        if text.startswith("{"):
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise SwiftkitError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from exc
        else:
            record = text
        prompts.append(prompt_from_record(record, where, system))
    if not prompts:
        raise SwiftkitError(f"{path}: no prompts in the file")
    return prompts


def val_prompts(info: RunInfo, run: Path, system: Optional[str], limit: int) -> list[Prompt]:
    """The first ``limit`` records of the run's val files."""
    if not info.val_files:
        raise SwiftkitError(f"{run}: the run has no val files; pass --prompts FILE")
    prompts: list[Prompt] = []
    for name in info.val_files:
        if not Path(name).is_file():
            raise SwiftkitError(f"val file {name}: not found (pass --prompts FILE)")
        prompts += read_prompts(name, system, limit - len(prompts))
        if len(prompts) >= limit:
            break
    return prompts


# --- models -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Contender:
    """One column of answers: a name (base, tuned, compare) and what to load."""

    side: str
    label: str
    spec: Any
    """swiftkit.run.probe.ProbeModel."""
    max_lora_rank: Optional[int] = None


def contenders(run: Path, info: RunInfo, *, checkpoint: str, base: Optional[str],
               compare: Optional[Path]) -> list[Contender]:
    """base (the run's base model, or ``base``), tuned (the run's checkpoint: full weights or base + adapter) and,
    with ``compare``, that run's last checkpoint. Nothing that ships code runs unless the run allowed it."""
    from swiftkit.core.local_model import local_model_dir
    from swiftkit.run.probe import ProbeModel, probe_model_for
    from swiftkit.stack.remote_code import refuse_remote_code

    base_dir = local_model_dir(base or info.model, download=True, why="base model")
    out = [Contender("base", f"base ({Path(base or info.model).name})",
                     ProbeModel(base_dir, base_dir, trust_remote_code=info.trust_remote_code)),
           Contender("tuned", f"tuned ({run_label(run)})", probe_model_for(run, checkpoint), info.lora_rank)]
    if compare is not None:
        other = read_run_info(compare)
        out.append(Contender("compare", f"compare ({run_label(compare)})", probe_model_for(compare, "last"),
                             other.lora_rank))
    for c in out:
        for folder in {c.spec.model, c.spec.tokenizer, *([c.spec.adapter] if c.spec.adapter else [])}:
            refuse_remote_code(Path(folder), c.spec.trust_remote_code)
    return out


def run_label(run: Path) -> str:
    """``recipe/vN`` for a run directory."""
    return f"{run.resolve().parent.name}/{run.resolve().name}"


# --- generation ---------------------------------------------------------------------------------------------------

def generate(contender: Contender, conversations: Sequence[list[dict]], *, backend: Backend, max_new_tokens: int,
             max_model_len: int, on_answer: Callable[[Any], None]) -> list[Any]:
    """Greedy answers (swiftkit.run.probe.Generation) of one contender to every conversation."""
    if backend == "vllm":
        return vllm_generations(contender, conversations, max_new_tokens=max_new_tokens, max_model_len=max_model_len,
                                on_answer=on_answer)
    from swiftkit.run.probe import greedy_generations

    return greedy_generations(contender.spec, conversations, max_new_tokens=max_new_tokens, on_answer=on_answer)


def vllm_generations(contender: Contender, conversations: Sequence[list[dict]], *, max_new_tokens: int,
                     max_model_len: int, on_answer: Callable[[Any], None],
                     gpu_memory_utilization: float = 0.85) -> list[Any]:
    """vLLM's chat API: the same saved chat template, greedy; a LoRA checkpoint as a LoRA request on the base. The
    engine is torn down afterwards so the next contender gets the GPU memory back."""
    import gc
    import os

    import torch

    from swiftkit.stack.backend import engine_env

    os.environ.update(engine_env("vllm"))  # before vLLM is imported
    from vllm import LLM, SamplingParams

    from swiftkit.core.devices import visible_gpus
    from swiftkit.run.probe import Generation

    spec = contender.spec
    llm = LLM(model=spec.model, tokenizer=spec.tokenizer, trust_remote_code=spec.trust_remote_code,
              tensor_parallel_size=max(visible_gpus(), 1), gpu_memory_utilization=gpu_memory_utilization,
              max_model_len=max_model_len, enable_lora=bool(spec.adapter),
              **({"max_lora_rank": max(contender.max_lora_rank or 8, 8)} if spec.adapter else {}), seed=0)
    lora = None
    if spec.adapter:
        from vllm.lora.request import LoRARequest

        lora = LoRARequest("tuned", 1, spec.adapter)
    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
    try:
        outputs = llm.chat([list(c) for c in conversations], params, lora_request=lora, use_tqdm=False)
        generations = []
        for output in outputs:
            choice = output.outputs[0]
            generation = Generation(choice.text.strip(), choice.finish_reason == "length")
            generations.append(generation)
            on_answer(generation)
        return generations
    finally:
        del llm
        try:
            from vllm.distributed.parallel_state import (
                destroy_distributed_environment,
                destroy_model_parallel,
            )

            destroy_model_parallel()
            destroy_distributed_environment()
        except (ImportError, RuntimeError, AssertionError):  # another vLLM layout, or nothing to tear down
            pass
        gc.collect()
        torch.cuda.empty_cache()


# --- the run's logs -----------------------------------------------------------------------------------------------

def _step(entry: dict, index: int) -> int:
    if isinstance(entry.get("step"), int):
        return entry["step"]
    progress = str(entry.get("global_step/max_steps", ""))
    head = progress.split("/", 1)[0]
    return int(head) if head.isdigit() else index + 1


def loss_curves(run: Path) -> dict[str, list[list[float]]]:
    """``train`` and ``eval`` loss as [step, loss] pairs from the run's logs (result.json or logging.jsonl)."""
    from swiftkit.run.rundir import log_history

    curves: dict[str, list[list[float]]] = {"train": [], "eval": []}
    for i, entry in enumerate(log_history(run)):
        if "loss" in entry and "train_loss" not in entry:
            curves["train"].append([_step(entry, i), float(entry["loss"])])
        if "eval_loss" in entry:
            curves["eval"].append([_step(entry, i), float(entry["eval_loss"])])
    return curves


def log_figures(curves: dict[str, list[list[float]]]) -> dict[str, Optional[float]]:
    """Final train loss, final eval loss and its perplexity (None when not logged)."""
    digits = eval_metrics.DIGITS
    train = curves["train"][-1][1] if curves["train"] else None
    loss = curves["eval"][-1][1] if curves["eval"] else None
    ppl = math.exp(loss) if loss is not None and loss < 700 else None
    return {"train_loss": None if train is None else round(train, digits),
            "eval_loss": None if loss is None else round(loss, digits),
            "eval_perplexity": None if ppl is None else round(ppl, digits)}


# --- the whole evaluation -----------------------------------------------------------------------------------------

@dataclass
class EvalOptions:
    prompts_file: Optional[str] = None
    """None: the run's val split."""
    limit: int = DEFAULT_LIMIT
    checkpoint: str = "last"
    base: Optional[str] = None
    """Base model to compare against; None: the run's."""
    compare: Optional[str] = None
    """A second run directory whose tuned answers go beside this run's."""
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    backend: Optional[Backend] = None
    identity: bool = True
    stress: bool = True
    """Persona runs: the identity stress suite too (swiftkit.core.identity_stress), base vs tuned per family."""
    progress: bool = True


def identity_questions(system: Optional[str]) -> list[dict[str, Any]]:
    """`swiftkit check`'s identity prompts under the gating conditions: the run's system prompt, and none (the saved
    chat template's default)."""
    from swiftkit.core.identity import IDENTITY_PROMPTS
    from swiftkit.evaluate.check import identity_conditions

    rows = []
    for condition, sys_text in identity_conditions(system, None).items():
        head = [{"role": "system", "content": sys_text}] if sys_text is not None else []
        rows += [{"condition": condition, "prompt": p, "messages": [*head, {"role": "user", "content": p}]}
                 for p in IDENTITY_PROMPTS]
    return rows


def answered_sample(prompt: Prompt, generations: dict[str, Any]) -> dict[str, Any]:
    """One row of report.json's ``samples``: the prompt, its reference, each column's answer, truncation and scores."""
    sample: dict[str, Any] = {"prompt": prompt.prompt, "system": prompt.system, "messages": list(prompt.messages),
                              "reference": prompt.reference, "where": prompt.where}
    sample.update({side: g.text for side, g in generations.items()})
    sample["truncated"] = {side: g.truncated for side, g in generations.items()}
    sample["scores"] = {side: eval_metrics.sample_scores(sample, side) for side in generations}
    return sample


def evaluate(run_dir: str | Path, options: Optional[EvalOptions] = None) -> dict[str, Any]:
    """Every answer and metric of the report (see swiftkit.evaluate.report for its files)."""
    from swiftkit.core.identity import persona_name
    from swiftkit.core.identity_stress import load_suite, questions
    from swiftkit.run.persona import run_system

    options = options or EvalOptions()
    run = Path(run_dir)
    info = read_run_info(run)
    if options.limit < 1:
        raise SwiftkitError(f"--limit {options.limit}: must be at least 1")
    if options.max_new_tokens < 1:
        raise SwiftkitError(f"--max-new-tokens {options.max_new_tokens}: must be at least 1")
    compare = Path(options.compare) if options.compare else None
    if compare is not None:
        read_run_info(compare)
    system = run_system(info)
    if options.prompts_file:
        prompts = read_prompts(options.prompts_file, system, options.limit)
    else:
        prompts = val_prompts(info, run, system, options.limit)
    identity_rows = identity_questions(system) if info.persona and options.identity else []
    name = persona_name(system)
    suite = load_suite() if identity_rows and options.stress else None
    stress_rows = questions(suite, system, name) if suite else []
    backend = options.backend or default_backend()
    require_backend(backend)
    sides = contenders(run, info, checkpoint=options.checkpoint, base=options.base, compare=compare)
    conversations = [list(p.messages) for p in prompts] + [row["messages"] for row in identity_rows + stress_rows]
    answers = _answer_all(sides, conversations, backend=backend, max_new_tokens=options.max_new_tokens,
                          max_model_len=info.max_length + options.max_new_tokens, progress=options.progress)

    samples = [answered_sample(p, {c.side: answers[c.side][i] for c in sides}) for i, p in enumerate(prompts)]
    for j, row in enumerate(identity_rows + stress_rows):
        for c in sides:
            row[c.side] = answers[c.side][len(prompts) + j].text
        row["ok"] = {c.side: eval_metrics.identity_ok(row[c.side], name) for c in sides}
    curves = {"tuned": loss_curves(run)}
    if compare is not None:
        curves["compare"] = loss_curves(compare)
    metrics, counts = {}, {}
    for c in sides:
        counts[c.side] = {**eval_metrics.sample_counts(samples, c.side),
                          **eval_metrics.identity_counts(identity_rows, c.side, name)}
        values = eval_metrics.sample_metrics(samples, c.side)
        values.update(eval_metrics.identity_metrics(identity_rows, c.side, name))
        values.update(log_figures(curves[c.side]) if c.side in curves else
                      {"train_loss": None, "eval_loss": None, "eval_perplexity": None})
        metrics[c.side] = values
    kinds = eval_metrics.data_kinds(samples, info.persona)
    identity_keys = [k for k in metrics["tuned"] if k.startswith("identity_")]
    return {
        "run": str(run.resolve()),
        "run_label": run_label(run),
        "recipe": info.recipe,
        "train_type": info.train_type,
        "base_model": str(sides[0].spec.model),
        "checkpoint": str(sides[1].spec.adapter or sides[1].spec.model),
        "compare": None if compare is None else {"run": str(compare.resolve()),
                                                 "checkpoint": str(sides[2].spec.adapter or sides[2].spec.model)},
        "columns": [{"side": c.side, "label": c.label} for c in sides],
        "prompts": {"source": options.prompts_file or "val", "count": len(prompts), "limit": options.limit},
        "generation": {"backend": backend, "greedy": True, "max_new_tokens": options.max_new_tokens,
                       "template": "each model's saved chat template"},
        "system": system,
        "persona_name": name,
        "kinds": kinds,
        "metric_rows": eval_metrics.metric_rows(kinds, identity_keys, name),
        "metrics": metrics,
        "counts": counts,
        "curves": curves,
        "samples": samples,
        "identity": [{k: v for k, v in row.items() if k != "messages"} for row in identity_rows],
        "identity_stress": None if suite is None else stress_report(suite, stress_rows, [c.side for c in sides], name),
        "drift": drift_report(run, name),
    }


def stress_report(suite: Any, rows: list[dict[str, Any]], sides: Sequence[str], name: Optional[str]) -> dict[str, Any]:
    """report.json's ``identity_stress``: the suite's version and families (in the suite's order), per side and family the counts of
    :func:`swiftkit.core.identity_stress.family_summary` (asked, held: no claim, named: the persona and no claim;
    named is eval's identity rule), and every row (its conversation, each side's answer and verdict)."""
    from swiftkit.core.identity_stress import family_summary

    return {"version": suite.version,
            "families": [{"family": f, "asks": about} for f, about in suite.families.items()],  # a list: JSON sorts keys
            "summary": {side: family_summary(rows, side, name) for side in sides},
            "rows": rows}


def drift_report(run: Path, name: Optional[str]) -> Optional[dict[str, Any]]:
    """The answers a recipe's ``watch:`` wrote during training (RUN/samples/step-N.jsonl), summed up by step; None
    when the run has none."""
    from swiftkit.evaluate.drift import drift_summary
    from swiftkit.run.rundir import read_samples

    by_step = read_samples(run)
    return drift_summary(by_step, name) if by_step else None


def _answer_all(sides: Sequence[Contender], conversations: list[list[dict]], *, backend: Backend,
                max_new_tokens: int, max_model_len: int, progress: bool) -> dict[str, list[Any]]:
    """Each contender answers every conversation in turn (one model in memory at a time), under one progress bar."""
    from tqdm import tqdm

    bar = tqdm(total=len(sides) * len(conversations), desc="eval", unit="answer", disable=None if progress else True,
               dynamic_ncols=True)
    answers = {}
    try:
        for c in sides:
            bar.set_postfix_str(c.side)
            answers[c.side] = generate(c, conversations, backend=backend, max_new_tokens=max_new_tokens,
                                       max_model_len=max_model_len, on_answer=lambda _: bar.update(1))
    finally:
        bar.close()
    return answers
