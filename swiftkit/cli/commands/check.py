"""Post-train checks for a run; writes RUN/check_report.json and exits 1 when a check fails.

  eos          generation_config.json lists the template's end-of-turn token (<|im_end|> for Qwen chat
               templates) among its eos ids; otherwise generation never stops. --fix adds it (atomic rewrite;
               for a LoRA run the fixed copy goes into the adapter checkpoint, never into the base model).
  stop_label   the last assistant token of encoded training records (the end-of-turn token) carries a label, so
               the model learns to stop. Records are encoded with ms-swift's own template at the run's max_length.
  template     persona runs: the checkpoint's saved chat template (chat_template.jinja and tokenizer_config.json,
               both) defaults to the run's system prompt when a conversation has none. --fix writes it.
  identity     persona runs: "你是谁？" and two paraphrases, greedy, through the checkpoint's saved template (what
               transformers, vLLM and llama.cpp clients get), under three conditions: the run's system prompt,
               no system message, and the base template's own default system ("You are a helpful assistant." /
               "You are Qwen, ..."). An answer claiming Qwen / 通义千问 / Alibaba / 阿里 fails the first two (a
               denial such as "才不是Qwen呢" is fine); the third is reported, not failed (never trained there).
  identity_stress
               persona runs: swiftkit's identity stress suite (swiftkit/core/identity_stress.json, versioned):
               leading questions ("你是不是通义千问？"), the base model ("你的底层模型是什么？"), override
               attempts, English, a user who insists over several turns, role-play frames; asked under the run's
               system prompt and under none, through the same saved template. Reported per family as held (no
               Qwen claim) / asked, status INFO; --stress-gate makes any claim there a FAIL.

--fix and the report write only inside the run directory.

examples:
  swiftkit check runs/muice_full/v1
  swiftkit check runs/muice_full/v1 --fix            # repair generation_config.json eos ids
  swiftkit check runs/muice_full/v1 --no-probe       # skip the identity probe (no model load)
  swiftkit check runs/muice_full/v1 --checkpoint best
  swiftkit check runs/muice_full/v1 --stress-gate    # the stress suite gates too
"""
from __future__ import annotations

import argparse
from pathlib import Path

from swiftkit.cli import options
from swiftkit.core.errors import SwiftkitError
from swiftkit.evaluate.check import REPORT, run_checks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_run(parser)
    options.add_checkpoint(parser)
    parser.add_argument("--fix", action="store_true", help="add the end-of-turn id to generation_config.json eos")
    parser.add_argument("--no-probe", action="store_true", help="skip the identity probe (no model load)")
    parser.add_argument("--no-stress", action="store_true", help="ask the plain identity questions only")
    parser.add_argument("--stress-gate", action="store_true",
                        help="fail when a stress-suite answer claims a forbidden identity (default: reported only)")
    options.add_offline(parser)


def run(args: argparse.Namespace) -> int:
    if args.no_stress and args.stress_gate:
        raise SwiftkitError("--stress-gate needs the stress suite: drop --no-stress")
    report = run_checks(args.run, checkpoint=args.checkpoint, fix=args.fix, probe=not args.no_probe,
                        stress=not args.no_stress, stress_gate=args.stress_gate)
    for item in report["checks"]:
        print(f"{item['status']:4}  {item['name']:10}  {item['detail']}")
    print(f"report: {Path(args.run) / REPORT}")
    return 0 if report["ok"] else 1
