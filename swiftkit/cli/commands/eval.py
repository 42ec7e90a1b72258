"""Did the fine-tune work? The base model and the tuned checkpoint answer the same held-out prompts (greedy, same
conversation and system prompt, each through its own saved chat template), side by side, with metrics chosen by
the run's data. Writes RUN/eval/report.json and RUN/eval/report.html (one self-contained page: loss curves, the
metrics table, the samples side by side). Persona runs add the identity stress suite (swiftkit/core/
identity_stress.json: leading, base-model, override, English, multi-turn and role-play questions, under the run's
system prompt and under none), base vs tuned per family; a run trained with a recipe `watch:` adds its drift by step
(RUN/samples/: the persona rate, the claim rate, val ROUGE-L and every answer, by training step).

metrics (each only where the data teaches it; "—" otherwise; the report page states the same definitions):
{METRICS}

Prompts: the run's val split (default), or --prompts FILE with one prompt per line: a messages record as prep
writes it (the last assistant message is the reference), {"prompt": ..., "reference": ..., "system": ...}, or plain
text. A prompt without a system message gets the run's system prompt, as prep wrote it into the training data.

Backend: vLLM where the installed vLLM can run (GPU, or its CPU build), transformers (pt) otherwise; one model in
memory at a time.

examples:
  swiftkit eval runs/muice_full/v1                          # val split, first 20 prompts
  swiftkit eval runs/muice_full/v1 --prompts my_prompts.jsonl --limit 50
  swiftkit eval runs/medical_r1_full/v1 --max-new-tokens 1024     # room to think: fewer truncated answers
  swiftkit eval runs/fortune_lora/v2 --compare runs/fortune_lora/v1   # two runs' answers side by side
  swiftkit eval runs/muice_full/v1 --base /models/Qwen2-1.5B-Instruct  # another base folder to compare with
  xdg-open runs/muice_full/v1/eval/report.html
"""
from __future__ import annotations

import argparse
from pathlib import Path

from swiftkit.cli import options
from swiftkit.evaluate.metrics import help_text

__doc__ = __doc__.replace("{METRICS}", help_text())  # the definitions, stated once in swiftkit.evaluate.metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from swiftkit.evaluate.compare import DEFAULT_LIMIT, DEFAULT_MAX_NEW_TOKENS

    options.add_run(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--val", action="store_true", help="prompts from the run's val files (the default)")
    source.add_argument("--prompts", metavar="FILE", help="prompts file: JSONL records or one prompt per line")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help=f"first N prompts (default {DEFAULT_LIMIT})")
    parser.add_argument("--base", metavar="MODEL", help="base model folder or hub id (default: the run's base model)")
    parser.add_argument("--compare", metavar="RUN_B", help="another run directory: its answers in a column beside")
    options.add_checkpoint(parser)
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS,
                        help=f"answer budget; an answer that reaches it counts as truncated "
                             f"(default {DEFAULT_MAX_NEW_TOKENS})")
    options.add_backend(parser)
    parser.add_argument("--no-identity", action="store_true",
                        help="persona runs: skip the identity questions (the stress suite too)")
    parser.add_argument("--no-stress", action="store_true", help="persona runs: the plain identity questions only")
    parser.add_argument("--out", metavar="DIR", help="report folder (default RUN/eval)")
    options.add_offline(parser)


def run(args: argparse.Namespace) -> int:
    from swiftkit.evaluate.compare import EvalOptions, evaluate
    from swiftkit.evaluate.report import EVAL_DIR, columns, table_rows, write_report

    report = evaluate(args.run, EvalOptions(
        prompts_file=args.prompts, limit=args.limit, checkpoint=args.checkpoint, base=args.base,
        compare=args.compare, max_new_tokens=args.max_new_tokens, backend=args.backend,
        identity=not args.no_identity, stress=not args.no_stress))
    json_path, html_path = write_report(report, args.out or Path(args.run) / EVAL_DIR)
    sides = [side for side, _ in columns(report)]
    rows = [("metric", *sides)] + [(r["label"], *(r["cells"][s] for s in sides)) for r in table_rows(report)]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(cell).ljust(w) if i == 0 else str(cell).rjust(w) for i, (cell, w) in
                        enumerate(zip(row, widths))).rstrip())
    print(f"{report['prompts']['count']} prompt(s), {len(report['identity'])} identity question(s); "
          f"data: {', '.join(report['kinds']) or 'plain chat'}")
    stress = report.get("identity_stress")
    for side in sides if stress else []:
        by_family = stress["summary"][side]
        print(f"stress v{stress['version']} {side}: " + ", ".join(
            f"{family} {f['named']}/{f['asked']}" for family, f in by_family.items()))
    if report.get("drift"):
        print("drift: " + ", ".join(f"step {st['step']} persona {st['persona'][0]}/{st['persona'][1]}"
                                    for st in report["drift"]["steps"]))
    print(f"report: {json_path}\npage:   {html_path}")
    return 0
