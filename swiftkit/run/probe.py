"""Greedy answers through a checkpoint's own saved chat template: what a transformers, vLLM or llama.cpp client
gets, as opposed to ms-swift's engine (which renders with its built-in template and the run's --system).

Used by `swiftkit check`'s identity probe: the "no system" condition is only meaningful through the saved template.
Model code named in ``auto_map`` never runs unless the run allowed it (``trust_remote_code``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from swiftkit.core.local_model import local_model_dir


@dataclass(frozen=True)
class ProbeModel:
    """What to load: full weights in ``model`` (+ an optional LoRA ``adapter``), the template from ``tokenizer``."""

    model: str
    tokenizer: str
    adapter: Optional[str] = None
    trust_remote_code: bool = False


@dataclass(frozen=True)
class Generation:
    """One greedy answer and whether it ran out of tokens (``max_new_tokens`` reached without an eos token)."""

    text: str
    truncated: bool


def template_answers(spec: ProbeModel, conversations: Sequence[list[dict]], *, max_new_tokens: int = 64) -> list[str]:
    """Greedy answers: each conversation rendered by the saved template (generation prompt added), decoded."""
    return [g.text for g in greedy_generations(spec, conversations, max_new_tokens=max_new_tokens)]


def greedy_generations(spec: ProbeModel, conversations: Sequence[list[dict]], *, max_new_tokens: int = 64,
                       on_answer: Optional[Callable[[Generation], None]] = None) -> list[Generation]:
    """:func:`template_answers` with a truncation flag per answer; ``on_answer`` is called after each (progress)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer, trust_remote_code=spec.trust_remote_code)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(
        spec.model, trust_remote_code=spec.trust_remote_code,
        dtype=torch.float32 if device == "cpu" else "auto").to(device)
    if spec.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, spec.adapter)
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    generations = []
    for conversation in conversations:
        text = tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)
        encoded = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        inputs = {k: encoded[k].to(device) for k in ("input_ids", "attention_mask")}
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                                 top_p=None, top_k=None, pad_token_id=pad)
        new = out[0, inputs["input_ids"].shape[1]:].tolist()
        truncated = len(new) >= max_new_tokens and not eos_ids.intersection(new)
        generation = Generation(tokenizer.decode(new, skip_special_tokens=True).strip(), truncated)
        generations.append(generation)
        if on_answer is not None:
            on_answer(generation)
    return generations


def probe_model_for(run_dir: str | Path, checkpoint: str = "last") -> ProbeModel:
    """The run's checkpoint as a client loads it: full weights, or the base model plus the adapter checkpoint
    (whose own tokenizer files, written by swiftkit, carry the persona template; the base's otherwise)."""
    from swiftkit.run.persona import has_tokenizer
    from swiftkit.run.rundir import read_run_info, resolve_checkpoint

    info = read_run_info(run_dir)
    ckpt = resolve_checkpoint(run_dir, checkpoint).resolve()
    if info.train_type == "full":
        return ProbeModel(str(ckpt), str(ckpt), trust_remote_code=info.trust_remote_code)
    base = local_model_dir(info.model, download=True, why="base model", hub=info.hub)
    tokenizer = str(ckpt) if has_tokenizer(ckpt) else base
    return ProbeModel(base, tokenizer, adapter=str(ckpt), trust_remote_code=info.trust_remote_code)


