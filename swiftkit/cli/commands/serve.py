"""Serve a trained run over an OpenAI-compatible HTTP API with `swift deploy`.

Binds 127.0.0.1:8000 by default (loopback only). --host 0.0.0.0 exposes it on purpose and then requires an API key.
If the port is taken, it stops with one line instead of letting ms-swift silently move to the next free port.
The key comes from $SWIFTKIT_API_KEY or --api-key-file (a file only you can read); clients send
`Authorization: Bearer KEY` on every /v1 path, else HTTP 401. --api-key KEY still works but is visible to every user
in `ps`, so it warns. The key is never printed, logged or put on a command line: the server process gets it through
its environment. Requests are checked before they reach the model: a body over --max-request-bytes gets HTTP 413,
a prompt over the served max length HTTP 400 with the limit (streamed or not; other requests are unaffected), a
malformed one HTTP 400; a connection that sends no complete request within --idle-timeout seconds is closed.
"serving ..." is printed once the server answers. The model name clients send is the recipe name unless
--served-model-name says otherwise. Backend: vLLM where it can run (GPU, or its CPU build), else pt. Ctrl-C or
SIGTERM stops the server and every process it started; if `swiftkit serve` is killed, the server ends with it.
Served conversations are logged to RUN/serve/conversations.jsonl, readable by you alone.

examples:
  swiftkit serve runs/muice_full/v1
  SWIFTKIT_API_KEY=... swiftkit serve runs/muice_full/v1 --host 0.0.0.0 --port 8011
  swiftkit serve runs/muice_full/v1 --api-key-file ~/.config/swiftkit/serve.key   # chmod 600
  curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{"model": "muice_full", "messages": [{"role": "user", "content": "你是谁？"}]}'
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from swiftkit.cli import options
from swiftkit.core.errors import SwiftkitError, Terminated
from swiftkit.deploy.serve import (
    API_KEY_ENV,
    DEFAULT_HOST,
    DEFAULT_PORT,
    read_key_file,
    start_server,
)
from swiftkit.deploy.serve_guard import (
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_REQUEST_BYTES,
    GuardSettings,
)

PS_WARNING = (f"warning: --api-key is visible to every user of this machine in `ps` while the server runs; "
              f"use ${API_KEY_ENV} or --api-key-file instead")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_run(parser)
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST}: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; fails if taken")
    parser.add_argument("--api-key-file", metavar="PATH",
                        help=f"read the key clients must send from PATH (mode 600; default ${API_KEY_ENV})")
    parser.add_argument("--api-key", metavar="KEY", help=f"the key itself (visible in `ps`: prefer ${API_KEY_ENV} or --api-key-file)")
    parser.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES, metavar="N",
                        help=f"refuse larger request bodies with HTTP 413 (default {DEFAULT_MAX_REQUEST_BYTES})")
    parser.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT_S, metavar="SECONDS",
                        help="close a connection that sends no complete request (head, then body) in this time "
                             f"(default {DEFAULT_IDLE_TIMEOUT_S:g})")
    options.add_checkpoint(parser)
    options.add_backend(parser)
    parser.add_argument("--served-model-name", help="model name clients send (default: the recipe name)")
    options.add_offline(parser)


def api_key(args: argparse.Namespace) -> Optional[str]:
    """The key from --api-key-file, --api-key (with the `ps` warning) or $SWIFTKIT_API_KEY, in that order."""
    if args.api_key_file and args.api_key:
        raise SwiftkitError("give --api-key-file or --api-key, not both")
    if args.api_key_file:
        return read_key_file(args.api_key_file)
    if args.api_key:
        print(PS_WARNING, file=sys.stderr, flush=True)
        return args.api_key
    return os.environ.get(API_KEY_ENV) or None


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise SwiftkitError(f"--port {args.port}: must be 1-65535")
    server = start_server(args.run, host=args.host, port=args.port, api_key=api_key(args),
                          checkpoint=args.checkpoint, backend=args.backend,
                          served_model_name=args.served_model_name, log=sys.stdout,
                          guard=GuardSettings(max_request_bytes=args.max_request_bytes,
                                              idle_timeout_s=args.idle_timeout))
    try:
        server.wait_ready(timeout=None)  # "serving" only once it answers: a model can load for minutes
        print(f"serving model '{server.model_name}' on http://{args.host}:{args.port}/v1 (Ctrl-C stops)", flush=True)
        return server.process.wait()
    except Terminated as stop:  # SIGTERM (swiftkit.cli): stop the server's whole process group too
        return 128 + stop.signum
    except KeyboardInterrupt:
        return 130
    finally:
        server.stop()
