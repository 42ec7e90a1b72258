"""Convert one dataset source into clean ms-swift messages JSONL, and say what happened to every record.

  swiftkit prep muice --src path/to/Muice-Dataset --out data/muice
  swiftkit prep medical_r1 --src r1_data_example.jsonl --out data/medical_r1 --score-from metrics.quality_f1
  swiftkit prep fortune --src hf://Conard/fortune-telling --out data/fortune
  swiftkit prep query_response --src self_cognition.jsonl --out data/self --model-name 沐雪 Muice --model-author 沐雪工作室 MuiceStudio

SOURCE is one of `swiftkit sources` (muice, fortune, medical_r1, actions, messages, sharegpt, alpaca,
query_response). --src is a file, a folder (the Muice dataset folder: train.jsonl + Customized/*.jsonl go to
train, test.jsonl to val) or a hub id (modelscope://owner/name, hf://owner/name; offline this fails with one line).

Writes into --out: train.jsonl, val.jsonl (one {"messages": [system, user, assistant, ...], "score": x,
"solution": "..."} per line), rejects.jsonl (file, line, reason, raw for every record not used), manifest.json
(counts that reconcile: read = train + val + rejected + duplicates, options, the output columns, where the
score came from, sha256 of inputs and outputs, token-length statistics and which tokenizer counted them) and
lengths.png (histogram with the --max-length line). Tokens are counted with the bundled Qwen tokenizer, or with
--tokenizer: a local tokenizer folder, or a recipe name for the tokenizer that recipe trains with.

solution is the content of the final assistant message, repeated as its own column for GRPO: ms-swift's GRPO
removes that message before generating and passes the other columns to the reward functions. score is a
placeholder drawn per record from --score-choices, unless --score-from FIELD names the record's own rating
(a dotted path into the raw record, e.g. metrics.quality_f1); then a record without a number there is rejected.

The first message is always the source's system prompt (ms-swift lets a data system field beat --system, so it
is written into the data): --system replaces it; --keep-system keeps the data's own where a record has one.
Each option's default is in its help below. Same inputs and seed give byte-identical outputs.

Data as its authors have it: --encoding gbk reads a CSV/JSON/JSONL that Excel saved on Chinese Windows (without
it, such a file is refused with one line saying so); --columns actions=行动,question=问题,answer=回答 renames input
columns before the reader sees them (a FROM the file lacks is an error listing its columns). \\r\\n and lone \\r
inside any message become \\n (counted in the manifest's line_ends_normalized). An actions answer tag <&X&> that the
record's 行动 list does not offer is a reject. With actions, --system replaces the instruction only; each record's
action list follows it. --keep-duplicates keeps exact duplicates (manifest: duplicates_kept). --over-length
drop|truncate rejects, or cuts the last assistant answer of, records over --max-length tokens (manifest:
over_length). A record whose own system prompt gives way to the source's is counted (manifest: system_replaced).
A record holding special-token text in any message (<|im_end|>, <|im_start|>, <|endoftext|>, or another special
token of the counting tokenizer) is a reject naming the message and the token, never escaped: the tokenizer would
read it as the control token (manifest: special_token_rejects); --system holding one is refused.

--out may not overlap --src (the same folder, or one inside the other): refused, as the outputs would replace
or be read as the source. One prep at a time writes into an --out (a lock, OUT/.prep.lock): a second fails at
once naming the first's pid. The outputs appear together when the run finishes; an error, Ctrl-C or SIGTERM
(exit 130/143) leaves the previous data files as they were (without their manifest) and no temp files; a run whose
every record is rejected fails too, after writing rejects.jsonl, empty train/val and a manifest saying why. A record
that cannot be parsed (invalid JSON, nested too deep, not valid Unicode) is a reject; a file or folder under --src
that cannot be read, or that is neither a file nor a folder (a FIFO), is an error naming it; so is a link under
--src to a data file or folder outside it (never read: copy the file in, or pass it as --src). A .prep.lock in
--out that prep did not make (a link, a hard link, a file holding other data) is refused, never written through.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any, Callable, Iterator, Optional

from datasets_prep.options import OVER_LENGTH, PrepOptions
from datasets_prep.raw_format import PROMPT_FORMATS
from swiftkit.cli import options

DEFAULTS = PrepOptions()
"""Every option's default, stated once in :class:`datasets_prep.options.PrepOptions`."""

SHARED = ("val_ratio", "seed", "score_choices", "score_from", "single_turn", "max_length", "over_length", "encoding",
          "columns", "keep_duplicates")
"""PrepOptions fields both `prep` and `prep-all` take."""
PER_SOURCE_EXAMPLES = {"score_from": "medical_r1=metrics.quality_f1", "encoding": "actions=gbk",
                       "columns": "actions=actions=行动,question=问题"}
"""Of those, the ones `prep-all` takes per source (``SOURCE=VALUE``, repeatable; a rating field, a file encoding and
column names belong to one source's files), with an example each."""
PER_SOURCE = tuple(PER_SOURCE_EXAMPLES)
ONE_SOURCE = ("system", "keep_system", "model_name", "model_author", "prompt_format")
"""Fields only `prep` takes: a system prompt or persona name is one source's (prep-all's sources each have their
own prompt, and none of them has {{NAME}} placeholders)."""
RESOLVED = ("tokenizer",)
"""Fields both take whose option is resolved first (--tokenizer may name a recipe: :func:`tokenizer_folder`)."""


def _scores(text: str) -> list[float]:
    """Numbers only; ``prep`` refuses those the output cannot hold (nan, inf) with one line."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one score")
    return values


def _per_source(field: str, metavar: str, help_text: str) -> dict[str, Any]:
    """argparse keywords of option ``field`` in its `prep-all` form: ``SOURCE=VALUE``, repeatable."""
    return dict(action="append", default=[], metavar=f"SOURCE={metavar}",
                help=f"{help_text}; for one source, repeatable, e.g. {PER_SOURCE_EXAMPLES[field]}")


def add_option_arguments(parser: argparse.ArgumentParser, *, per_source: bool = False) -> None:
    """The prep options, defined once: `swiftkit prep` (``per_source=False``) and `swiftkit prep-all`
    (``per_source=True``: --score-from, --encoding and --columns take ``SOURCE=VALUE``, and the options of
    :data:`ONE_SOURCE` are not offered). Parsed back into PrepOptions by :func:`prep_options`."""
    d = DEFAULTS
    if not per_source:
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--system", help="system prompt for every record (replaces the source default and the "
                                            "data's; for actions it replaces the instruction and the record's action "
                                            "list stays)")
        group.add_argument("--keep-system", action="store_true", default=d.keep_system,
                           help="keep each record's own system prompt; the default only where a record has none")
    parser.add_argument("--val-ratio", type=float, default=d.val_ratio,
                        help=f"val share when the source has no val file (default {d.val_ratio})")
    parser.add_argument("--seed", type=int, default=d.seed,
                        help=f"seed for split, score and action shuffling (default {d.seed})")
    parser.add_argument("--score-choices", type=_scores, default=list(d.score_choices),
                        help=f"placeholder scores drawn per record (default {','.join(f'{c:g}' for c in d.score_choices)}"
                             "); unused with --score-from")
    score_help = ("take each record's score from this field of the raw record, a dotted path such as "
                  "metrics.quality_f1 (a number, or text that parses as one, as in CSV); a record without one is "
                  "rejected. Default: placeholder scores from --score-choices")
    encoding_help = ("text encoding of CSV/JSON/JSONL inputs (default utf-8; e.g. gbk or gb18030 for a CSV saved by "
                     "Excel on Chinese Windows, utf-8-sig)")
    columns_help = ("rename input columns/fields before the reader sees them (CSV, Parquet, JSON objects), e.g. "
                    "actions=行动,question=问题,answer=回答")
    if per_source:
        parser.add_argument("--score-from", **_per_source("score_from", "FIELD", score_help))
        parser.add_argument("--encoding", **_per_source("encoding", "ENC", encoding_help))
        parser.add_argument("--columns", **_per_source("columns", "FROM=TO,...", columns_help))
    else:
        parser.add_argument("--score-from", metavar="FIELD", help=score_help)
        parser.add_argument("--encoding", metavar="ENC", help=encoding_help)
        parser.add_argument("--columns", metavar="FROM=TO,...", help=columns_help)
    parser.add_argument("--single-turn", action="store_true", help="keep only the first user/assistant exchange")
    parser.add_argument("--max-length", type=int, default=d.max_length,
                        help=f"token length reported against (default {d.max_length})")
    if not per_source:
        parser.add_argument("--model-name", nargs=2, metavar=("ZH", "EN"), help="fills {{NAME}} placeholders")
        parser.add_argument("--model-author", nargs=2, metavar=("ZH", "EN"), help="fills {{AUTHOR}} placeholders")
        parser.add_argument("--prompt-format", choices=PROMPT_FORMATS, default=d.prompt_format,
                            help=f"chat: messages records (default {d.prompt_format}); raw: seed 004's plain text "
                                 "(### 指令 / ### 问题 / ### 回答, <思考> markers), one exchange per record, for a "
                                 "recipe with data.prompt_format: raw")
    parser.add_argument("--tokenizer", metavar="DIR|RECIPE",
                        help="count tokens (statistics, --over-length) with this tokenizer: a local folder (loaded by "
                             "transformers, never with remote code; records rendered with its chat template when it "
                             "has one) or a recipe name for its model's tokenizer (a local folder or the local hub "
                             "cache; otherwise the bundled one, said in one line). Default: the bundled Qwen "
                             "tokenizer")
    parser.add_argument("--keep-duplicates", action="store_true",
                        help="keep exact duplicate records (counted as kept, in the manifest's duplicates_kept)")
    parser.add_argument("--over-length", choices=OVER_LENGTH, default=d.over_length,
                        help=f"records over --max-length tokens (default {d.over_length}): keep (counted), drop "
                             "(rejected, naming the count) or truncate (the last assistant message cut to fit)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def tokenizer_folder(args: argparse.Namespace, command: str) -> Optional[str]:
    """--tokenizer as a folder (None: the bundled tokenizer); a recipe whose model is not available locally says so
    on stderr, one line."""
    if args.tokenizer is None:
        return None
    from swiftkit.train.recipe_tokenizer import resolve_tokenizer

    choice = resolve_tokenizer(args.tokenizer)
    if choice.note:
        print(f"swiftkit {command}: {choice.note}", file=sys.stderr, flush=True)
    return choice.folder


def prep_options(args: argparse.Namespace, per_source: Optional[dict[str, dict[str, str]]] = None,
                 source: Optional[str] = None, tokenizer: Optional[str] = None) -> PrepOptions:
    """The PrepOptions that the options of :func:`add_option_arguments` say, with --tokenizer already resolved to
    ``tokenizer`` (:func:`tokenizer_folder`). `prep-all` passes ``per_source`` ({field: {source: value}}) and the
    ``source`` being converted."""
    values: dict[str, Any] = {name: getattr(args, name) for name in SHARED}
    values["tokenizer"] = tokenizer
    if per_source is None:
        values.update({name: getattr(args, name) for name in ONE_SOURCE})
    else:
        values.update({name: per_source[name].get(source) for name in PER_SOURCE})
    return PrepOptions(**values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="source name (see `swiftkit sources`)")
    parser.add_argument("--src", required=True, help="file, folder, modelscope://owner/name or hf://owner/name")
    parser.add_argument("--out", required=True, help="output folder (created)")
    add_option_arguments(parser)
    options.add_offline(parser)


def summary_line(manifest: dict[str, Any], out: str) -> str:
    """What prep did, for a person: the counts on one line; a second line when records' own system prompts were
    replaced (a user who did not expect it would otherwise learn it only from the manifest)."""
    kept = f" (kept {manifest['duplicates_kept']} duplicate(s))" if manifest.get("duplicates_kept") else ""
    line = (f"{manifest['source']}: read {manifest['read']}, train {manifest['train']}, val {manifest['val']}, "
            f"rejected {manifest['rejected']}, duplicates {manifest['duplicates']}{kept} -> {out}")
    stats = manifest.get("token_lengths")
    if stats and stats.get("records"):
        line += (f" | tokens min {stats['min']} median {stats['median']} p95 {stats['p95']} max {stats['max']}, "
                 f"{stats['over_max_length']} over {stats['max_length']} (tokenizer: {stats['tokenizer']})")
    replaced = manifest.get("system_replaced")
    if replaced:
        by = "--system" if manifest["options"].get("system") is not None else "the source's default"
        line += (f"\n  {replaced} of {manifest['read']} records read had their own system prompt replaced (by {by}; "
                 "--keep-system keeps each record's own)")
    return line


@contextlib.contextmanager
def record_bar(desc: str) -> Iterator[Callable[[int], None]]:
    """A tqdm bar on stderr counting input records; yields the ``progress`` callback ``prep`` takes."""
    from tqdm import tqdm

    with tqdm(desc=desc, unit=" rec", file=sys.stderr, disable=None, leave=True) as bar:
        yield bar.update


def run(args: argparse.Namespace) -> int:
    from datasets_prep.interrupt import Interrupted, stop_on_signals
    from datasets_prep.oserrors import shown
    from datasets_prep.pipeline import prep
    from datasets_prep.registry import get_source

    get_source(args.source)  # unknown source fails before any work
    options = prep_options(args, tokenizer=tokenizer_folder(args, "prep"))
    out = shown(args.out)
    try:
        with stop_on_signals():  # SIGINT/SIGTERM unwind like an error: temp files removed, lock released
            if args.no_progress:
                manifest = prep(args.source, args.src, args.out, options)
            else:
                with record_bar(f"prep {args.source}") as update:
                    manifest = prep(args.source, args.src, args.out, options, progress=update)
    except Interrupted as stop:
        print(f"swiftkit prep: {stop}; no partial output left in {out}", file=sys.stderr)
        return stop.exit_code
    print(summary_line(manifest, out))
    if manifest["rejected"]:
        print(f"  {manifest['rejected']} rejected record(s): see {out}/rejects.jsonl")
    if manifest.get("special_token_rejects"):
        print(f"  warning: {manifest['special_token_rejects']} of them hold special-token text (<|im_end|>, "
              "<|endoftext|>, ...), which would train as control tokens: their reasons name each one")
    return 0

