"""Which tokens training learns from: a recipe's first records encoded exactly as `swift sft` will encode them.

The template is ms-swift's own, built from the flags of the recipe's plan (``--template``, ``--model_type``,
``--max_length``, ``--truncation_strategy``, ``--loss_scale``, ``--system``, ...) with the tokenizer of the model
the plan trains (``--model``: the recipe's model or its init_from checkpoint). A record is split into runs of
masked tokens (label -100: the prompt, the system prompt, the template's markup) and trained tokens (the answers
and their end-of-turn token). Two problems are flagged: a record whose last end-of-turn token carries no label (the
model never learns to stop), and a record longer than max_length (ms-swift's default ``truncation_strategy delete``
drops it from training; ``left``/``right`` cut it).

With ``--ids`` a record is shown token by token, the view seed 002 built by hand: each token's id, its label (the
id itself where training learns it, -100 where the loss ignores it) and its text, one row each.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from swiftkit.core.errors import SwiftkitError
from swiftkit.core.local_model import local_model_dir

IGNORE = -100
DIM, GREEN, YELLOW, RESET = "\x1b[2m", "\x1b[32m", "\x1b[33m", "\x1b[0m"

BOOL_FLAGS = ("enable_thinking", "add_non_thinking_prefix", "use_chat_template")


# --- the template training uses ----------------------------------------------------------------------------------

def argv_flags(argv: Sequence[str]) -> dict[str, list[str]]:
    """``--name v1 v2 --other v`` -> {name: [v1, v2], other: [v]}."""
    flags: dict[str, list[str]] = {}
    current: Optional[str] = None
    for item in argv:
        if item.startswith("--"):
            current = item[2:]
            flags[current] = []
        elif current is not None:
            flags[current].append(item)
    return flags


def template_kwargs(flags: dict[str, list[str]]) -> dict[str, Any]:
    """get_template keyword arguments from the plan's flags, with ms-swift's own defaults and conversions."""
    one = {k: v[0] for k, v in flags.items() if v}
    kwargs: dict[str, Any] = {
        "default_system": one.get("system"),
        "max_length": int(one["max_length"]) if "max_length" in one else None,
        "truncation_strategy": one.get("truncation_strategy", "delete"),
        "loss_scale": one.get("loss_scale", "default"),
    }
    if kwargs["truncation_strategy"] == "delete":  # ms-swift: deleted at load time = raise while encoding
        kwargs["truncation_strategy"] = "raise"
    for key in ("agent_template", "response_prefix"):
        if key in one:
            kwargs[key] = one[key]
    for key in BOOL_FLAGS:
        if key in one:
            kwargs[key] = one[key].lower() in ("true", "1", "yes")
    return kwargs


@dataclass
class TrainingTemplate:
    template: Any
    """ms-swift Template in train mode."""
    truncation_strategy: str
    """As `swift sft` takes it: delete, left, right, split."""
    model_dir: str
    loss_scale: str
    train_files: list[str]
    """The recipe's data.train, absolute (as planned)."""

    def describe(self) -> str:
        return (f"template {self.template.template_meta.template_type}, tokenizer {self.model_dir}, max_length "
                f"{self.template.max_length}, truncation_strategy {self.truncation_strategy}, loss_scale "
                f"{self.loss_scale}")


def training_template(recipe_name: str, overrides: Sequence[str] = ()) -> TrainingTemplate:
    """The recipe's plan -> ms-swift's template in train mode, as `swift sft` builds it."""
    from swiftkit.stack.remote_code import refuse_remote_code
    from swiftkit.train.launch import plan_run

    planned = plan_run(recipe_name, overrides=list(overrides))  # lists runs/, writes nothing
    recipe = planned.recipe
    if recipe.method != "sft":
        raise SwiftkitError(f"recipe {recipe.name}: method {recipe.method} generates its answers; preview shows "
                            "what supervised training (method sft) learns from")
    import logging

    from transformers.utils import logging as hf_logging

    logging.getLogger("swift").setLevel(logging.WARNING)  # its INFO lines would bury the preview
    hf_logging.set_verbosity_error()
    flags = argv_flags(planned.plan.argv)
    model = (flags.get("model") or [recipe.model])[0]
    model_dir = local_model_dir(model, download=False)
    refuse_remote_code(Path(model_dir), recipe.trust_remote_code)

    from swiftkit.stack.dialect import load_template

    kwargs = template_kwargs(flags)
    template = load_template(model_dir, model_type=(flags.get("model_type") or [None])[0],
                             template=(flags.get("template") or [None])[0], **kwargs)
    template.set_mode("train")
    strategy = "delete" if kwargs["truncation_strategy"] == "raise" else kwargs["truncation_strategy"]
    return TrainingTemplate(template, strategy, model_dir, kwargs["loss_scale"], list(recipe.data.train))


# --- one record ---------------------------------------------------------------------------------------------------

@dataclass
class Segment:
    trained: bool
    ids: list[int]
    text: str


@dataclass
class RecordPreview:
    number: int
    where: str
    tokens: int
    """Encoded length before any truncation."""
    segments: list[Segment] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dropped: bool = False
    table: list[tuple[int, int, str]] = field(default_factory=list)
    """(id, label, text) of every token shown, filled when asked for (``--ids``)."""

    @property
    def trained(self) -> int:
        return sum(len(s.ids) for s in self.segments if s.trained)


def segments(ids: Sequence[int], labels: Sequence[int], decode) -> list[Segment]:
    """Runs of consecutive masked / trained tokens, each decoded (special tokens shown)."""
    out: list[Segment] = []
    for token, label in zip(ids, labels):
        trained = label != IGNORE
        if out and out[-1].trained == trained:
            out[-1].ids.append(token)
        else:
            out.append(Segment(trained, [token], ""))
    for seg in out:
        seg.text = decode(seg.ids)
    return out


def _encode(template, messages: list[dict], max_length: Optional[int]) -> dict:
    saved = template.max_length
    template.max_length = max_length
    try:
        return template.encode({"messages": messages})
    finally:
        template.max_length = saved


def byte_level_table() -> dict[str, int]:
    """GPT-2 byte-level BPE's printable stand-ins -> the bytes they stand for (Qwen, Llama-3: tokens are byte runs)."""
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


def token_text(tokenizer: Any, token: int, table: Optional[dict[str, int]] = None) -> str:
    """One token's text. A token that holds part of a character (a Chinese character is 3 UTF-8 bytes; the rarer
    ones span tokens) has no text of its own: its bytes are shown as ``<0xE7><0xAD>`` where the vocabulary is
    byte-level, else the decoder's replacement character."""
    text = tokenizer.decode([token], skip_special_tokens=False)
    if "\ufffd" not in text:
        return text
    piece = tokenizer.convert_ids_to_tokens(token)
    table = table if table is not None else byte_level_table()
    if isinstance(piece, str) and piece and all(c in table for c in piece):
        return "".join(f"<0x{table[c]:02X}>" for c in piece)
    return text


def token_rows(tokenizer: Any, ids: Sequence[int], labels: Sequence[int]) -> list[tuple[int, int, str]]:
    """(id, label, text) per token."""
    table = byte_level_table()
    return [(token, label, token_text(tokenizer, token, table)) for token, label in zip(ids, labels)]


def preview_record(tt: TrainingTemplate, record: Any, number: int, where: str, eot: int,
                   tokens: bool = False) -> RecordPreview:
    """Encode one record as training does; the segments to show, the warnings and, with ``tokens``, every token's
    id, label and text."""
    from swiftkit.evaluate.check import stop_label_ok

    template = tt.template
    messages = record.get("messages") if isinstance(record, dict) else None
    if not isinstance(messages, list) or not messages:
        return RecordPreview(number, where, 0, warnings=[
            f"record {number} ({where}): no messages list: not a prep output, training would not read it this way"])

    def decode(ids: list[int]) -> str:
        return template.tokenizer.decode(ids, skip_special_tokens=False)

    full = _encode(template, messages, None)
    length = len(full["input_ids"])
    limit = template.max_length
    preview = RecordPreview(number, where, length)
    too_long = limit is not None and length > limit
    if too_long and tt.truncation_strategy in ("delete", "split"):
        preview.dropped = tt.truncation_strategy == "delete"
        preview.segments = segments(full["input_ids"], full["labels"], decode)
        if tokens:
            preview.table = token_rows(template.tokenizer, full["input_ids"], full["labels"])
        preview.warnings.append(
            f"record {number}: {length} tokens > max_length {limit}: training drops it (truncation_strategy delete; "
            "--set extra_args.truncation_strategy=right keeps a cut copy)" if preview.dropped else
            f"record {number}: {length} tokens > max_length {limit}: training splits it into pieces "
            "(truncation_strategy split)")
        return preview
    encoded = template.encode({"messages": messages})
    preview.segments = segments(encoded["input_ids"], encoded["labels"], decode)
    if tokens:
        preview.table = token_rows(template.tokenizer, encoded["input_ids"], encoded["labels"])
    if too_long:
        preview.warnings.append(f"record {number}: truncated at max_length {limit} ({length} tokens, "
                                f"truncation_strategy {tt.truncation_strategy})")
    ok, why = stop_label_ok(template, {"messages": messages}, eot)
    if not ok:
        preview.warnings.append(f"record {number}: end-of-turn token {decode([eot])} is not trained ({why})")
    return preview


def preview_records(tt: TrainingTemplate, n: int, tokens: bool = False) -> Iterator[RecordPreview]:
    """The first ``n`` records of the recipe's train files (``tokens``: with every token's id, label and text)."""
    from swiftkit.evaluate.check import end_of_turn_id, iter_records

    files = tt.train_files
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise SwiftkitError(f"train file {missing[0]}: not found (run `make prep`, or --set data.train=[FILE])")
    eot = end_of_turn_id(tt.template)
    for number, (name, lineno, record) in enumerate(iter_records(files, n), 1):
        yield preview_record(tt, record, number, f"{name}:{lineno}", eot, tokens)


# --- printing -----------------------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _clean(text: str) -> str:
    """Newlines shown as ↵ (a trained newline is a token too); no terminal control character from the data reaches
    the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text).replace("\n", "↵\n")


def _head(preview: RecordPreview) -> str:
    state = "DROPPED by training" if preview.dropped else f"{preview.trained} trained"
    return f"── record {preview.number} · {preview.where} · {preview.tokens} tokens, {state}"


def _warnings(preview: RecordPreview, color: bool) -> list[str]:
    return [f"{YELLOW}warning: {w}{RESET}" if color else f"warning: {w}" for w in preview.warnings]


_VISIBLE = str.maketrans({" ": "␣", "\n": "↵", "\t": "⇥"})


def visible(text: str) -> str:
    """A token's text on one table row: space, newline and tab as ␣ ↵ ⇥ (a token may be nothing but those), other
    control characters as \\xNN."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text.translate(_VISIBLE))


IDS_HEAD = ("label = id: training learns to predict this token from the ones before it (the loss shifts by one); "
            "label -100: the loss ignores it")


def render_ids(preview: RecordPreview, *, color: bool) -> str:
    """One row per token: position, id, label (-100 for masked), text; trained rows green on a terminal."""
    width = max([len(str(len(preview.table) - 1)), 3])
    id_width = max([len(str(t)) for t, _, _ in preview.table] + [2])
    label_width = max([len(str(label)) for _, label, _ in preview.table] + [5])
    lines = [_head(preview), f"{'pos'.rjust(width)}  {'id'.rjust(id_width)}  {'label'.rjust(label_width)}  text"]
    for pos, (token, label, text) in enumerate(preview.table):
        row = f"{str(pos).rjust(width)}  {str(token).rjust(id_width)}  {str(label).rjust(label_width)}  {visible(text)}"
        lines.append(f"{GREEN if label != IGNORE else DIM}{row}{RESET}" if color else row)
    return "\n".join(lines + _warnings(preview, color))


def render(preview: RecordPreview, *, color: bool) -> str:
    """Masked runs dim and trained text green on a terminal; ``[-100 × N]`` and the trained text otherwise."""
    head = _head(preview)
    texts = [_clean(seg.text) for seg in preview.segments]
    if texts and texts[-1].endswith("\n"):  # a trailing newline is already shown as ↵
        texts[-1] = texts[-1][:-1]
    body = []
    for seg, text in zip(preview.segments, texts):
        if color:
            body.append(f"{GREEN if seg.trained else DIM}{text}{RESET}")
        else:
            body.append(text if seg.trained else f"[-100 × {len(seg.ids)}]")
    return "\n".join([head, "".join(body)] + _warnings(preview, color))
