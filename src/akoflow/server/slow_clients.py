"""Bounds on slow clients: a request's headers must arrive within the header timeout of the
connection (or of the previous answer on it), its body within the body timeout of its headers.

uvicorn has neither: its keep-alive timeout only covers a connection idle between requests,
so a client sending half a header, or a body one byte at a time, would hold a connection (and
a request's memory) forever. The header bound lives in the HTTP protocol (the application
sees nothing before the headers are complete); the body bound is a small ASGI middleware that
answers 408 and closes the connection.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Mapping
from typing import Any

import h11
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from akoflow.errors import AkoflowError

HEADER_TIMEOUT_ENV = "AKOFLOW_SERVER_HEADER_TIMEOUT"
BODY_TIMEOUT_ENV = "AKOFLOW_SERVER_BODY_TIMEOUT"
DEFAULT_HEADER_TIMEOUT = 20.0  # s: a request line and headers are a few hundred bytes
DEFAULT_BODY_TIMEOUT = 120.0  # s: the largest body (128 MiB) at about 1 MiB/s
KEEP_ALIVE_TIMEOUT = 5  # s: an idle connection between requests (uvicorn's own timer)

_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 37\r\n\r\nthe request headers came too slowly\r\n"
)


class BadTimeout(AkoflowError, ValueError):
    """A timeout setting that is not a positive number of seconds."""


def timeout_setting(environ: Mapping[str, str], name: str, default: float) -> float:
    """Seconds from ``environ[name]`` (``default`` when unset or empty)."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise BadTimeout(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


def timeouts(environ: Mapping[str, str] = os.environ) -> tuple[float, float]:
    """(header timeout, body timeout) as configured."""
    return (
        timeout_setting(environ, HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT),
        timeout_setting(environ, BODY_TIMEOUT_ENV, DEFAULT_BODY_TIMEOUT),
    )


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's headers.

    The timer runs while the connection waits for a request (h11's client state IDLE) and
    stops once the headers are parsed; it restarts for the next request on the connection.
    A connection that sent part of a request by then gets a 408 and is closed; one that
    sent nothing is just closed (as uvicorn's keep-alive timer does).
    """

    header_timeout = DEFAULT_HEADER_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._partial_request = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_request_state()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_request_state()

    def _follow_request_state(self) -> None:
        """Run the timer while the client owes bytes and nothing else bounds the wait: a
        request's headers, or the rest of a body the answer did not need (read and dropped
        by uvicorn). uvicorn's keep-alive timer covers a connection idle between requests."""
        if self.transport.is_closing() or self.timeout_keep_alive_task is not None:
            self._cancel_header_timer()
            return
        if self._client_owes_bytes():
            # Bytes h11 holds without a complete request yet: a partial request.
            self._partial_request = self.conn.their_state is h11.IDLE and bool(
                self.conn.trailing_data[0]
            )
            if self._header_timer is None:
                self._arm_header_timer()
        else:
            self._partial_request = False
            self._cancel_header_timer()

    def _client_owes_bytes(self) -> bool:
        theirs = self.conn.their_state
        if theirs is h11.IDLE:
            return True
        answered = self.conn.our_state in (h11.DONE, h11.MUST_CLOSE)
        return answered and theirs is h11.SEND_BODY

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._client_owes_bytes():
            return
        if self._partial_request:
            self.transport.write(_TIMEOUT_ANSWER)
        self.transport.close()


def header_deadline_protocol(seconds: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class for uvicorn's ``http`` setting, with this header timeout."""
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout": seconds})


class BodyTooSlow(AkoflowError):
    """The request body did not arrive in time (answered 408 by the error handlers)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request body did not arrive within {seconds:g} s")


class BodyDeadline:
    """ASGI middleware: a request's body must have arrived ``seconds`` after its headers.

    Only reads of the body are bounded: once it is complete, ``receive`` is passed through
    untouched (a streaming answer waits on it for the client's disconnect, without limit).
    """

    def __init__(self, app: ASGIApp, seconds: float = DEFAULT_BODY_TIMEOUT) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = time.monotonic() + self.seconds
        body_done = False

        async def bounded_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            left = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), max(left, 0.0))
            except TimeoutError:
                raise BodyTooSlow(self.seconds) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await self.app(scope, bounded_receive, send)
