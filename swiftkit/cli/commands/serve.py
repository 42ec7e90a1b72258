"""Serve a trained run over an OpenAI-compatible HTTP API with `swift deploy`.

Binds 127.0.0.1:8000 by default (loopback only). --host 0.0.0.0 exposes it on purpose and then requires an API key.
If the port is taken, it stops with one line instead of letting ms-swift silently move to the next free port. With
--api-key (or $SWIFTKIT_API_KEY), requests must send `Authorization: Bearer KEY` (ms-swift answers others with HTTP
400 "API key error"). The key is never printed, logged or put on a command line (`ps` shows every process's
arguments): the server process gets it through its environment. A request over the served max length gets HTTP 400
with the limit, and the server keeps serving. The model name clients send is the recipe name unless
--served-model-name says otherwise. Backend: vLLM where it can run (GPU, or its CPU build), else pt. Ctrl-C or SIGTERM stops the
server and every process it started. Served conversations are logged to RUN/serve/conversations.jsonl.

examples:
  swiftkit serve runs/muice_full/v1
  SWIFTKIT_API_KEY=... swiftkit serve runs/muice_full/v1 --host 0.0.0.0 --port 8011
  curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{"model": "muice_full", "messages": [{"role": "user", "content": "你是谁？"}]}'
"""
from __future__ import annotations

import argparse
import os
import sys

from swiftkit.cli import options
from swiftkit.core.errors import SwiftkitError, Terminated
from swiftkit.deploy.serve import DEFAULT_HOST, DEFAULT_PORT, start_server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_run(parser)
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST}: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; fails if taken")
    parser.add_argument("--api-key", default=os.environ.get("SWIFTKIT_API_KEY"),
                        help="require 'Authorization: Bearer KEY' (default $SWIFTKIT_API_KEY; never printed)")
    options.add_checkpoint(parser)
    options.add_backend(parser)
    parser.add_argument("--served-model-name", help="model name clients send (default: the recipe name)")
    options.add_offline(parser)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise SwiftkitError(f"--port {args.port}: must be 1-65535")
    server = start_server(args.run, host=args.host, port=args.port, api_key=args.api_key,
                          checkpoint=args.checkpoint, backend=args.backend,
                          served_model_name=args.served_model_name, log=sys.stdout)
    print(f"serving model '{server.model_name}' on http://{args.host}:{args.port}/v1 (Ctrl-C stops)", flush=True)

    try:
        return server.process.wait()
    except Terminated as stop:  # SIGTERM (swiftkit.cli): stop the server's whole process group too
        return 128 + stop.signum
    except KeyboardInterrupt:
        return 130
    finally:
        server.stop()
