"""The server process of `swiftkit serve`: ms-swift's deploy, driven in-process, with two repairs.

``python -m swiftkit.deploy.deploy_child ARGS`` (started by :mod:`swiftkit.deploy.serve`) runs ms-swift's ``deploy_main(ARGS)``.

1. **The API key never is on a command line.** ms-swift takes the key only as ``--api_key``, which any user of the
   machine can read in ``ps``. The key travels in this process's environment (:data:`KEY_ENV`, readable only by its
   owner), is removed from it at once (so no engine subprocess inherits it), and is appended to the argument list
   in memory.
2. **One bad request cannot kill the server.** ms-swift's pt engine answers requests from one worker thread; any
   exception there (a prompt over max_length raises ``MaxLengthError`` while encoding) ends the thread, and every
   later request waits forever while /health still says 200. The worker is made to hand the exception to the
   requests of that batch and carry on: they get HTTP 400 with ms-swift's message (``Current length of row(2911)
   is larger than the max_length(2048)``), and the next request is served.
"""
from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, Optional, Sequence

KEY_ENV = "SWIFTKIT_DEPLOY_API_KEY"
"""The environment variable the key reaches this process in; never passed on."""


def take_api_key(environ: Optional[dict[str, str]] = None) -> Optional[str]:
    """The API key from :data:`KEY_ENV`, removed from the environment."""
    env = os.environ if environ is None else environ
    return env.pop(KEY_ENV, None) or None


def _deliver(queues: Sequence[Any], item: Any) -> None:
    for queue, loop in queues:
        asyncio.run_coroutine_threadsafe(queue.put(item), loop)


def make_engine_resilient() -> None:
    """Patch ms-swift's PtEngine so an exception in one batch fails that batch's requests, not the engine."""
    from swift.llm.infer.infer_engine.pt_engine import PtEngine

    if getattr(PtEngine, "_swiftkit_resilient", False):
        return
    original_infer = PtEngine._infer

    def guarded_worker(self: Any) -> None:
        import time

        while True:
            time.sleep(0.01)
            item = self._fetch_infer_requests()
            if item is None:
                continue
            kwargs, queues = item
            try:
                result = original_infer(self, **kwargs)
                if kwargs["request_config"].stream:
                    for batch in result:
                        for (queue, loop), res in zip(queues, batch):
                            asyncio.run_coroutine_threadsafe(queue.put(res), loop)
                    _deliver(queues, None)
                else:
                    for (queue, loop), res in zip(queues, result):
                        asyncio.run_coroutine_threadsafe(queue.put(res), loop)
            except Exception as exc:  # noqa: BLE001 - handed to the waiting requests, which answer HTTP 400
                _deliver(queues, exc)

    original_async = PtEngine.infer_async

    async def infer_async(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = await original_async(self, *args, **kwargs)
        if isinstance(result, Exception):
            raise result
        if hasattr(result, "__aiter__"):
            return _raising_stream(result)
        return result

    PtEngine._infer_worker = guarded_worker
    PtEngine.infer_async = infer_async
    PtEngine._swiftkit_resilient = True


async def _raising_stream(stream: Any) -> Any:
    async for item in stream:
        if isinstance(item, Exception):
            raise item
        yield item


def main(argv: Optional[Sequence[str]] = None) -> int:
    from swiftkit.stack import shims

    import os

    from swiftkit.stack.backend import engine_env
    from swiftkit.stack.dialect import flag_value

    args = list(sys.argv[1:] if argv is None else argv)
    key = take_api_key()
    os.environ.update(engine_env(flag_value(args, "infer_backend") or "pt"))  # before vLLM is imported
    shims.apply_all()
    from swiftkit.stack.guards import guard_checkpoint_args

    guard_checkpoint_args()
    make_engine_resilient()
    from swiftkit.stack.dialect import installed_entry

    installed_entry("deploy_main")(args + (["--api_key", key] if key else []))
    return 0


if __name__ == "__main__":
    sys.exit(main())
