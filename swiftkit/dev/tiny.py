"""Build the tiny random Qwen2 (about 9.8M parameters, the real Qwen tokenizer, offline) that the smoke runs train:
:func:`build_tiny_model`, byte-identical for a seed. `swiftkit tiny-model` (swiftkit/cli/commands/tiny_model.py) is its
command.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datasets_prep.atomic import sha256_file, write_json
from datasets_prep.qwen_tokenizer import ENDOFTEXT_ID, IM_END_ID

MARKER = "swiftkit_tiny.json"


@dataclass(frozen=True)
class TinySpec:
    """Everything that decides the bytes of a tiny model."""

    seed: int = 0
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 2048
    eos_token_ids: tuple[int, ...] = field(default=(IM_END_ID, ENDOFTEXT_ID))


def file_hashes(model_dir: Path) -> dict[str, str]:
    """sha256 of every file in the folder except the marker, by relative path."""
    return {
        str(p.relative_to(model_dir)): sha256_file(p)
        for p in sorted(model_dir.rglob("*"))
        if p.is_file() and p.name != MARKER
    }


def _spec_json(spec: TinySpec) -> dict:
    data = asdict(spec)
    data["eos_token_ids"] = list(spec.eos_token_ids)
    return data


def is_built(out: Path, spec: TinySpec) -> bool:
    """True when ``out`` holds a tiny model built from ``spec`` whose files are unchanged since."""
    marker = out / MARKER
    if not marker.is_file():
        return False
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return data.get("spec") == _spec_json(spec) and data.get("files") == file_hashes(out)


def build_tiny_model(out: str | Path, spec: TinySpec = TinySpec(), *, force: bool = False) -> Path:
    """Write the tiny model into ``out`` (built in a sibling temp folder, then renamed into place)."""
    out = Path(out)
    if not force and is_built(out, spec):
        return out
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from datasets_prep.qwen_tokenizer import cached_tokenizer_dir

    tok_dir = cached_tokenizer_dir()
    tok_files = sorted(p for p in tok_dir.iterdir() if p.is_file())
    vocab = len(json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"])
    added = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8")).get("added_tokens", [])
    vocab_size = max([vocab - 1] + [t["id"] for t in added]) + 1
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=ENDOFTEXT_ID,
        eos_token_id=IM_END_ID,
        pad_token_id=ENDOFTEXT_ID,
        torch_dtype="float32",
        use_sliding_window=False,
        rope_theta=1000000.0,
    )
    config.architectures = ["Qwen2ForCausalLM"]
    with torch.random.fork_rng():  # leave the caller's RNG as it was
        torch.manual_seed(spec.seed)
        model = Qwen2ForCausalLM(config).to(torch.float32).eval()
    generation = GenerationConfig(
        bos_token_id=ENDOFTEXT_ID,
        eos_token_id=list(spec.eos_token_ids),
        pad_token_id=ENDOFTEXT_ID,
        do_sample=False,
    )

    tmp = out.with_name(f".{out.name}.building")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        generation.save_pretrained(str(tmp))
        for path in tok_files:
            shutil.copyfile(path, tmp / path.name)
        write_json(tmp / MARKER, {"spec": _spec_json(spec), "files": file_hashes(tmp)})
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
