"""The server's front door: what a request must pass before ms-swift's deploy app (and its engine) sees it.

:class:`ServeGuard` is a plain ASGI middleware, so it is tested without a model and works whatever web framework
ms-swift uses behind it:

- **the key** (when one is set): every path but ``/health`` and ``/ping`` needs ``Authorization: Bearer KEY``, else
  HTTP 401 (the openai client raises ``AuthenticationError``); checked before a byte of the body is read;
- **the size**: a body over ``max_request_bytes`` gets HTTP 413 naming the limit, from its Content-Length before
  reading, or as soon as a body sent without one passes the limit; nothing oversized is parsed or tokenized;
- **the pace**: the whole body must arrive within ``body_timeout_s`` (HTTP 408), so a slow client cannot hold a
  request open; an idle connection's timeout is :func:`head_timeout_protocol`'s;
- **a stream that fails after it started** ends with an OpenAI-shaped SSE error event (``data: {"error": …}``), which
  the openai client raises, instead of a cut connection.

Errors have OpenAI's shape (``{"error": {"message", "type", "code"}}``) plus ms-swift's top-level ``message`` /
``object`` so clients of either keep working.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_REQUEST_BYTES = 1 << 20
"""1 MiB: a chat far over any served max length still fits; a 10 MB prompt does not."""
DEFAULT_IDLE_TIMEOUT_S = 15.0
"""A connection must deliver a request's head (and then its body) within this many seconds."""
KEEP_ALIVE_S = 5.0
"""uvicorn's keep-alive between requests on one connection (its default, stated here so it stays set)."""
OPEN_PATHS = frozenset({"/health", "/ping"})
"""Liveness probes: answered without the key (they say nothing about the model)."""

log = logging.getLogger("swiftkit.serve")


@dataclass(frozen=True)
class GuardSettings:
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S


def error_body(status: int, message: str, code: Optional[str] = None) -> bytes:
    """An error in OpenAI's shape, with ms-swift's ``message``/``object`` beside it."""
    kind = {401: "authentication_error", 408: "timeout_error", 413: "invalid_request_error"}.get(
        status, "invalid_request_error" if status < 500 else "server_error")
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code},
                       "message": message, "object": "error"}, ensure_ascii=False).encode()


async def send_error(send: Send, status: int, message: str, code: Optional[str] = None,
                     extra_headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = error_body(status, message, code)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *extra_headers]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _header(scope: Scope, name: bytes) -> Optional[bytes]:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


class _Refused(Exception):
    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class _Gone(Exception):
    """The client disconnected while sending its body: nothing to answer."""


class ServeGuard:
    """ASGI middleware: key (401), size (413) and body pace (408) before the app; SSE error event after a stream
    started. ``api_key=None`` serves without a key."""

    def __init__(self, app: App, *, api_key: Optional[str] = None, settings: GuardSettings = GuardSettings()) -> None:
        self.app = app
        self.key = f"Bearer {api_key}".encode() if api_key else None
        self.settings = settings

    def _authorized(self, scope: Scope) -> bool:
        given = _header(scope, b"authorization") or b""
        return self.key is None or hmac.compare_digest(given, self.key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("path") not in OPEN_PATHS and not self._authorized(scope):
            await send_error(send, 401, "API key error: send 'Authorization: Bearer KEY' with the server's key",
                             "invalid_api_key", ((b"www-authenticate", b"Bearer"),))
            return
        try:
            body = await self._read_body(scope, receive)
        except _Refused as refused:
            await send_error(send, refused.status, refused.message, refused.code)
            return
        except _Gone:
            return
        await self._forward(scope, _replay(body, receive), send)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.settings.max_request_bytes
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise _Refused(400, f"Content-Length {declared[:40]!r} is not a number", "invalid_request")
            if size > limit:
                raise _Refused(413, f"request body of {size} bytes is over the server's limit of {limit} bytes "
                                    "(swiftkit serve --max-request-bytes)", "request_too_large")
        try:
            return await asyncio.wait_for(self._collect(receive, limit), self.settings.idle_timeout_s)
        except asyncio.TimeoutError:
            raise _Refused(408, f"request body not received within {self.settings.idle_timeout_s:g} s",
                           "request_timeout")

    @staticmethod
    async def _collect(receive: Receive, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Gone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _Refused(413, f"request body over the server's limit of {limit} bytes "
                                    "(swiftkit serve --max-request-bytes)", "request_too_large")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = {"started": False, "sse": False, "done": False}

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
                state["sse"] = (_header(message, b"content-type") or b"").startswith(b"text/event-stream")
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["done"] = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - a started stream must end with an error event, not a cut
            if not (state["started"] and state["sse"]) or state["done"]:
                raise
            log.error("stream failed after it started: %s: %s", type(exc).__name__, exc)
            event = {"error": {"message": f"{type(exc).__name__}: {exc}", "type": "server_error", "param": None,
                               "code": "stream_failed"}}
            await send({"type": "http.response.body", "more_body": False,
                        "body": f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that hands the app the body already read, then the client's later messages (disconnects)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def head_timeout_protocol(timeout_s: float) -> type:
    """uvicorn's HTTP protocol class, closing a connection that has not sent a complete request head within
    ``timeout_s`` of opening or of its last response (uvicorn arms no timer before the first request, and a
    client dripping header bytes resets its keep-alive timer forever)."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    base: Any = AutoHTTPProtocol

    class HeadTimeoutProtocol(base):
        _swiftkit_head_timer: Optional[asyncio.TimerHandle] = None
        _swiftkit_cycle: Any = None

        def _swiftkit_arm(self, cycle: Any) -> None:
            """Close the connection unless a request newer than ``cycle`` starts within ``timeout_s``."""
            self._swiftkit_disarm()
            self._swiftkit_cycle = cycle
            self._swiftkit_head_timer = self.loop.call_later(timeout_s, self._swiftkit_expire)

        def _swiftkit_disarm(self) -> None:
            if self._swiftkit_head_timer is not None:
                self._swiftkit_head_timer.cancel()
                self._swiftkit_head_timer = None

        def _swiftkit_expire(self) -> None:
            self._swiftkit_head_timer = None
            if self.cycle is self._swiftkit_cycle and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._swiftkit_arm(self.cycle)

        def connection_lost(self, exc: Optional[Exception]) -> None:
            self._swiftkit_disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not self._swiftkit_cycle:  # a complete request head arrived: a new cycle began
                self._swiftkit_disarm()

        def on_response_complete(self) -> None:
            finished = self.cycle
            super().on_response_complete()  # may already start a pipelined request (a new cycle)
            if self.cycle is finished and not self.transport.is_closing():
                self._swiftkit_arm(finished)

    return HeadTimeoutProtocol
