"""Drift watched during training: a recipe's ``watch:`` section (:class:`swiftkit.train.recipes.WatchSpec`).

At each checkpoint save (or every N steps), and once before the first step, the weights being trained answer the
identity questions (the plain ones and the first few of each stress-suite family, under the run's system prompt and
under none) and the first few val prompts, greedy and short, and rank 0 writes them atomically into
``RUN/samples/step-N.jsonl`` (one row per answer: kind, family, probe, condition, prompt, turns, answer, reference,
truncated, verdict). `swiftkit eval` shows the persona rate and the answers by step (swiftkit.evaluate.drift).

How, and what it costs:

- :func:`install` (the worker calls it in every rank, like the save wrapper) reads the run's own ``recipe.yaml``;
  without a ``watch:`` section it does nothing. With one, every transformers ``Trainer`` built in the process gets
  a callback, so ms-swift's SFT, GRPO and any trainer built on transformers' are watched alike.
- The model is the trainer's own (no second copy): switched to eval mode, ``model.generate`` under ``no_grad`` on
  left-padded batches of questions, then back to train mode. The conversation is rendered by the trainer's tokenizer with the persona template that the
  save writes into every checkpoint (:func:`swiftkit.run.persona.with_persona`), so "no system" means what a client
  of the checkpoint gets.
- Only global rank 0 generates; the other ranks go on and wait at the next collective. Under DeepSpeed ZeRO-3 the
  weights are sharded, so every rank generates the same prompts with ``synced_gpus`` and rank 0 writes.
- A failure while sampling (out of memory, a template that does not render) is one warning line and ends the watch
  for the run; training goes on.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from datasets_prep.atomic import write_text
from swiftkit.core.errors import SwiftkitError
from swiftkit.core.identity import judge_identity, persona_name
from swiftkit.core.identity_stress import load_suite, questions
from swiftkit.core.jsonl import read_lines
from swiftkit.run.rundir import RUN_INFO, read_run_info, samples_path
from swiftkit.train.recipes import WatchSpec

RECIPE_FILE = "recipe.yaml"
BATCH = 32
"""Questions generated together (left-padded): a watch costs max_new_tokens forward passes per batch, not per row."""
PREFIX = "swiftkit: watch: "


def load_spec(run_dir: str | Path) -> Optional[WatchSpec]:
    """The ``watch:`` section of the run's resolved recipe (RUN/recipe.yaml, written by the launcher); None: off."""
    import yaml

    path = Path(run_dir) / RECIPE_FILE
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SwiftkitError(f"{path}: unreadable recipe ({exc})") from exc
    section = data.get("watch") if isinstance(data, dict) else None
    return None if section is None else WatchSpec.model_validate(section)


@dataclass
class Watch:
    """What the watch asks in a run: the rows (each with its ``messages``) and the persona for the template."""

    run: Path
    spec: WatchSpec
    rows: list[dict[str, Any]]
    system: Optional[str]
    name: Optional[str]
    done: set[int] = field(default_factory=set)
    broken: bool = False


def val_rows(val_files: list[str], limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` val records as questions: messages up to the last user turn, the answer as reference."""
    rows: list[dict[str, Any]] = []
    for name in val_files:
        if len(rows) >= limit or not Path(name).is_file():
            continue
        for lineno, line in read_lines(name):
            if len(rows) >= limit:
                break
            try:
                messages = json.loads(line).get("messages")
            except (json.JSONDecodeError, AttributeError):
                continue
            if not isinstance(messages, list) or not messages:
                continue
            reference = messages[-1]["content"] if messages[-1].get("role") == "assistant" else None
            messages = messages[:-1] if reference is not None else messages
            if messages and messages[-1].get("role") == "user":
                rows.append({"kind": "val", "probe": f"{Path(name).name}:{lineno}", "prompt": messages[-1]["content"],
                             "turns": sum(m.get("role") == "user" for m in messages), "reference": reference,
                             "messages": messages})
    return rows


def plan_watch(run_dir: str | Path, spec: WatchSpec) -> Watch:
    """The questions of a run: identity ones for a persona run (plain + the first stress probes of each family), then
    the val prompts."""
    from swiftkit.run.persona import run_system

    run = Path(run_dir)
    info = read_run_info(run)
    system = run_system(info)
    name = persona_name(system)
    rows: list[dict[str, Any]] = []
    if info.persona:
        rows += [{"kind": "identity", **row}
                 for row in questions(load_suite(), system, name, plain=True, per_family=spec.stress_per_family)]
    rows += val_rows(info.val_files, spec.val_prompts)
    return Watch(run, spec, rows, system if info.persona else None, name)


def answer_rows(watch: Watch, model: Any, tokenizer: Any, step: int, *, synced: bool = False) -> list[dict[str, Any]]:
    """Every question answered by ``model`` now, greedy (rows without their messages, with the answer)."""
    import torch

    from swiftkit.run.persona import with_persona

    template = tokenizer.chat_template
    if watch.system and isinstance(template, str):
        template = with_persona(template, watch.system)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    device = next(model.parameters()).device
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"  # a batch of prompts ends where generation starts
    out = []
    try:
        with torch.no_grad():
            for start in range(0, len(watch.rows), BATCH):
                batch = watch.rows[start:start + BATCH]
                texts = [tokenizer.apply_chat_template(row["messages"], chat_template=template, tokenize=False,
                                                       add_generation_prompt=True) for row in batch]
                encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
                ids = encoded["input_ids"].to(device)
                generated = model.generate(input_ids=ids, attention_mask=encoded["attention_mask"].to(device),
                                           max_new_tokens=watch.spec.max_new_tokens, do_sample=False,
                                           temperature=None, top_p=None, top_k=None, pad_token_id=pad,
                                           use_cache=True, synced_gpus=synced)
                for row, tokens in zip(batch, generated[:, ids.shape[1]:].tolist()):
                    new = _until_eos(tokens, eos_ids, pad)
                    answer = tokenizer.decode(new, skip_special_tokens=True).strip()
                    result = {k: v for k, v in row.items() if k != "messages"}
                    result.update(step=step, answer=answer,
                                  truncated=len(new) >= watch.spec.max_new_tokens and not eos_ids.intersection(new))
                    if row["kind"] == "identity":
                        result["verdict"] = judge_identity(answer, watch.name)
                    out.append(result)
    finally:
        tokenizer.padding_side = side
        if was_training:
            model.train()
    return out


def _until_eos(tokens: list[int], eos_ids: set[int], pad: Optional[int]) -> list[int]:
    """One row of a batched generation up to and including its first eos (the rest is padding)."""
    for i, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[:i + 1]
    return tokens


def write_samples(watch: Watch, step: int, rows: list[dict[str, Any]]) -> Path:
    """RUN/samples/step-N.jsonl, atomically."""
    path = samples_path(watch.run, step)
    write_text(path, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows))
    return path


def summary_line(step: int, rows: list[dict[str, Any]], path: Path) -> str:
    identity = [r for r in rows if r["kind"] == "identity"]
    named = sum(r["verdict"] == "named" for r in identity)
    claims = sum(r["verdict"] == "claims" for r in identity)
    return (f"{PREFIX}step {step}: persona {named}/{len(identity)}, claims {claims}/{len(identity)}, "
            f"{len(rows) - len(identity)} val answer(s) -> {path.parent.name}/{path.name}")


def sample(watch: Watch, model: Any, tokenizer: Any, step: int, *, rank0: bool, zero3: bool) -> None:
    """One sampling at ``step`` (once per step; rank 0 only unless ZeRO-3); a failure ends the watch, not training."""
    if watch.broken or step in watch.done or not (rank0 or zero3):
        return
    watch.done.add(step)
    try:
        rows = answer_rows(watch, model, tokenizer, step, synced=zero3)
        if rank0:
            path = write_samples(watch, step, rows)
            print(summary_line(step, rows, path), file=sys.stderr, flush=True)
    except Exception as exc:  # noqa: BLE001 - the watch is an observer: training goes on without it
        watch.broken = True
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        print(f"swiftkit: warning: watch stopped at step {step}: {type(exc).__name__}: {first}", file=sys.stderr,
              flush=True)


def install(output_dir: Optional[str | Path]) -> bool:
    """Give every transformers Trainer built in this process the watch callback, when the run's recipe has a
    ``watch:`` section; False when it has none (or there is no run directory)."""
    if not output_dir or not (Path(output_dir) / RUN_INFO).is_file():
        return False
    spec = load_spec(output_dir)
    if spec is None:
        return False
    watch = plan_watch(output_dir, spec)
    from transformers import Trainer, TrainerCallback
    from transformers.integrations import is_deepspeed_zero3_enabled

    class DriftCallback(TrainerCallback):
        def _sample(self, state: Any, kwargs: dict) -> None:
            model, tokenizer = kwargs.get("model"), kwargs.get("processing_class")
            tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor wraps its tokenizer
            if model is None or tokenizer is None:
                return
            sample(watch, model, tokenizer, state.global_step, rank0=state.is_world_process_zero,
                   zero3=is_deepspeed_zero3_enabled())

        def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            self._sample(state, kwargs)

        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            if watch.spec.every and state.global_step % watch.spec.every == 0:
                self._sample(state, kwargs)

        def on_save(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            if watch.spec.every is None:
                self._sample(state, kwargs)

    if getattr(Trainer.__init__, "_swiftkit_watch", False):
        return True
    original = Trainer.__init__

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        self.add_callback(DriftCallback())

    __init__._swiftkit_watch = True  # type: ignore[attr-defined]
    Trainer.__init__ = __init__
    return True
