"""The server process of `swiftkit serve`: ms-swift's deploy, driven in-process, with its repairs.

``python -m swiftkit.deploy.deploy_child [--swiftkit-* settings] ARGS`` (started by :mod:`swiftkit.deploy.serve`)
runs ms-swift's ``deploy_main(ARGS)``; the ``--swiftkit-*`` settings (:func:`split_own_args`) are swiftkit's own.

1. **The API key never is on a command line.** ms-swift takes the key only as ``--api_key``, which any user of the
   machine can read in ``ps``. The key travels in this process's environment (:data:`KEY_ENV`, readable only by its
   owner), is removed from it at once (so no engine subprocess inherits it), and is appended to the argument list
   in memory.
2. **One bad request cannot kill the server, nor its batch.** ms-swift's pt engine answers requests from one worker
   thread that batches them; any exception there (a prompt over max_length raises ``MaxLengthError`` while encoding)
   ended the thread (every later request waited forever) and, once caught, still failed every request of its
   batch. The worker hands exceptions to the waiting requests and carries on, and the engine encodes each request
   on its own (``strict = False``), so only the bad one fails.
3. **Bad requests never reach the engine** (:func:`guard_deploy`): the deploy app is wrapped in
   :class:`swiftkit.deploy.serve_guard.ServeGuard` (key → 401, size → 413, body pace → 408); each chat is encoded
   with the served template before it is queued, so an over-long prompt gets HTTP 400 with the limit before any
   batch or stream starts; a malformed body gets 400, not FastAPI's 422; uvicorn closes idle connections.
4. **The server dies with its parent** (:func:`die_with_parent`): SIGKILL of `swiftkit serve` cannot leave it serving.

The patches check the shape of ms-swift they patch and stop the server at start with one line when it changed.
"""
from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from typing import Any, Optional, Sequence

from swiftkit.core.errors import SwiftkitError
from swiftkit.deploy.serve_guard import (
    KEEP_ALIVE_S,
    GuardSettings,
    ServeGuard,
    error_body,
    head_timeout_protocol,
)

KEY_ENV = "SWIFTKIT_DEPLOY_API_KEY"
"""The environment variable the key reaches this process in; never passed on."""
MAX_BYTES_FLAG = "--swiftkit-max-request-bytes"
IDLE_FLAG = "--swiftkit-idle-timeout"
PARENT_FLAG = "--swiftkit-parent-pid"
GRACEFUL_SHUTDOWN_S = 5
"""On SIGTERM uvicorn waits this long for open requests (streams included), then closes them."""
PR_SET_PDEATHSIG = 1


def own_args(settings: GuardSettings, parent_pid: int) -> list[str]:
    """The ``--swiftkit-*`` settings :func:`split_own_args` reads back (put before ms-swift's arguments)."""
    return [MAX_BYTES_FLAG, str(settings.max_request_bytes), IDLE_FLAG, f"{settings.idle_timeout_s:g}",
            PARENT_FLAG, str(parent_pid)]


def split_own_args(argv: Sequence[str]) -> tuple[GuardSettings, Optional[int], list[str]]:
    """(guard settings, parent pid or None, ms-swift's arguments) from the child's argument list."""
    values: dict[str, str] = {}
    rest: list[str] = []
    items = iter(argv)
    for token in items:
        if token in (MAX_BYTES_FLAG, IDLE_FLAG, PARENT_FLAG):
            values[token] = next(items, "")
        else:
            rest.append(token)
    try:
        settings = GuardSettings(
            max_request_bytes=int(values.get(MAX_BYTES_FLAG, GuardSettings.max_request_bytes)),
            idle_timeout_s=float(values.get(IDLE_FLAG, GuardSettings.idle_timeout_s)))
        parent = int(values[PARENT_FLAG]) if PARENT_FLAG in values else None
    except ValueError as exc:
        raise SwiftkitError(f"deploy_child: bad --swiftkit-* setting: {exc}")
    return settings, parent, rest


def die_with_parent(parent_pid: int, poll_s: float = 1.0, grace_s: float = 2 * GRACEFUL_SHUTDOWN_S) -> None:
    """End this process when ``parent_pid`` (the `swiftkit serve` that started it) dies, even by SIGKILL.

    Linux: the kernel sends SIGTERM at the parent's death (``prctl(PR_SET_PDEATHSIG)``). Everywhere: a watchdog
    thread sees this process re-parented and sends the same SIGTERM, then exits hard if the graceful stop
    (uvicorn's, bounded by :data:`GRACEFUL_SHUTDOWN_S`) hangs. A parent already gone ends this at once."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still works
    if os.getppid() != parent_pid:
        raise SwiftkitError(f"the process that started this server (pid {parent_pid}) is gone")

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(1)

    threading.Thread(target=watch, name="swiftkit-parent-watchdog", daemon=True).start()


def take_api_key(environ: Optional[dict[str, str]] = None) -> Optional[str]:
    """The API key from :data:`KEY_ENV`, removed from the environment."""
    env = os.environ if environ is None else environ
    return env.pop(KEY_ENV, None) or None


def _deliver(queues: Sequence[Any], item: Any) -> None:
    for queue, loop in queues:
        asyncio.run_coroutine_threadsafe(queue.put(item), loop)


def make_engine_resilient() -> None:
    """Patch ms-swift's PtEngine so an exception in one batch fails that batch's requests, not the engine; only
    where the installed major has the bug (swiftkit.stack.dialect: ``engine_survives_errors``)."""
    from swiftkit.stack.dialect import installed_dialect, swift_api

    if installed_dialect().engine_survives_errors:
        return
    PtEngine = swift_api("PtEngine")

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


def refuse_overlong(infer_async: Any, default_template: Any) -> Any:
    """``infer_async`` that first encodes the request with the served template (in a worker thread, off the event
    loop) and so raises ms-swift's ``MaxLengthError`` for this request alone, before it is queued into a batch or
    a stream starts (the deploy app answers it HTTP 400 with the message)."""

    async def guarded(infer_request: Any, request_config: Any = None, *args: Any, **kwargs: Any) -> Any:
        template = kwargs.get("template") or default_template
        if template is not None:
            await asyncio.get_running_loop().run_in_executor(None, template.encode, infer_request)
        return await infer_async(infer_request, request_config, *args, **kwargs)

    return guarded


async def _validation_error(request: Any, exc: Any) -> Any:
    """FastAPI's request validation error as HTTP 400 in OpenAI's shape (one line: the first problem)."""
    from fastapi.responses import Response

    problems = exc.errors() if hasattr(exc, "errors") else []
    first = problems[0] if problems else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    message = f"invalid request: {where}: {first.get('msg', str(exc))}"
    return Response(error_body(400, message, "invalid_request"), status_code=400, media_type="application/json")


def _deploy_module() -> Any:
    from swiftkit.stack.dialect import installed_entry

    entry = installed_entry("deploy_main")
    return sys.modules[entry.__module__]


def guard_deploy(settings: GuardSettings, api_key: Optional[str]) -> None:
    """Patch ms-swift's ``SwiftDeploy`` (found beside ``deploy_main``): its app behind :class:`ServeGuard`, chats
    encoded before queuing (:func:`refuse_overlong`), the engine encoding requests one by one, validation errors
    as 400, and uvicorn run with keep-alive, head and shutdown timeouts. SwiftkitError at start when ms-swift's
    deploy no longer has the shape patched here (an untested ms-swift must not serve unguarded)."""
    import inspect

    module = _deploy_module()
    deploy_cls = getattr(module, "SwiftDeploy", None)
    server = getattr(module, "uvicorn", None)
    changed = []
    if deploy_cls is None or not callable(getattr(deploy_cls, "run", None)):
        changed.append("no SwiftDeploy.run")
    elif "uvicorn.run(" not in inspect.getsource(deploy_cls.run):
        changed.append("SwiftDeploy.run no longer calls uvicorn.run")
    if server is None or not callable(getattr(server, "run", None)):
        changed.append("no uvicorn in the deploy module")
    if changed:
        raise SwiftkitError(f"ms-swift's deploy ({module.__name__}) changed shape ({'; '.join(changed)}): "
                            "swiftkit cannot guard the server; use the ms-swift version swiftkit supports")
    if getattr(deploy_cls, "_swiftkit_guarded", False):
        return
    original_init = deploy_cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        app, engine = getattr(self, "app", None), self.__dict__.get("infer_engine")
        if app is None or not hasattr(app, "add_middleware") or engine is None:
            raise SwiftkitError("ms-swift's SwiftDeploy has no FastAPI app or infer engine after start: swiftkit "
                                "cannot guard the server")
        if hasattr(engine, "strict"):
            engine.strict = False  # encode each request of a batch on its own: a bad one fails alone
        self.infer_async = refuse_overlong(engine.infer_async, getattr(self, "template", None))
        from fastapi.exceptions import RequestValidationError

        app.add_exception_handler(RequestValidationError, _validation_error)
        app.add_middleware(ServeGuard, api_key=api_key, settings=settings)

    deploy_cls.__init__ = __init__
    deploy_cls._swiftkit_guarded = True
    module.uvicorn = _GuardedUvicorn(server, settings)


class _GuardedUvicorn:
    """Stands in for the ``uvicorn`` module inside ms-swift's deploy module: ``run`` adds swiftkit's timeouts."""

    def __init__(self, real: Any, settings: GuardSettings) -> None:
        self._real, self._settings = real, settings

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def run(self, app: Any, **kwargs: Any) -> Any:
        idle = self._settings.idle_timeout_s
        kwargs.update(timeout_keep_alive=min(KEEP_ALIVE_S, idle), timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
                      http=head_timeout_protocol(idle))
        return self._real.run(app, **kwargs)


async def _raising_stream(stream: Any) -> Any:
    async for item in stream:
        if isinstance(item, Exception):
            raise item
        yield item


def main(argv: Optional[Sequence[str]] = None) -> int:
    from swiftkit.stack import shims
    from swiftkit.stack.backend import engine_env
    from swiftkit.stack.dialect import flag_value, installed_dialect, installed_entry
    from swiftkit.stack.guards import guard_checkpoint_args

    try:
        settings, parent, args = split_own_args(list(sys.argv[1:] if argv is None else argv))
        if parent is not None:
            die_with_parent(parent)
        key = take_api_key()
        os.environ.update(engine_env(flag_value(args, "infer_backend") or "pt"))  # before vLLM is imported
        shims.apply_all()
        guard_checkpoint_args()  # a run directory runs no code (swiftkit.stack.guards)
        make_engine_resilient()
        guard_deploy(settings, key)
        argv = installed_dialect().translate(args)  # written in the 3.x spelling (swiftkit.stack.dialect)
        installed_entry("deploy_main")(argv + (["--api_key", key] if key else []))
    except SwiftkitError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
