"""A network backend for httpcore and httpcore2 (httpx's and httpx2's transports; one API in
two packages) whose connection is closed when its TLS handshake is cancelled.

Both close a stream whose handshake fails, but not one whose handshake is cancelled
(``except Exception``), and the connection is not yet their pool's: the socket stays open
until the garbage collector finds it. AkôFlow cuts requests by cancelling them (a webhook
try's timeout, a watch or log follower when a runtime stops, a health probe's deadline), so a
server that accepts connections and never answers the handshake kept one socket per request.

Duck-typed: the pools only call these methods. :func:`cancel_safe_pool` makes the connection
pool of either package over it, for a transport of httpx or httpx2 to use as its own.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from types import ModuleType
from typing import Any


class _ClosedOnCancel:
    """A connected stream whose ``start_tls`` closes it when it does not complete."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data: bytes = await self._stream.read(max_bytes, timeout)
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        try:
            return await self._stream.start_tls(ssl_context, server_hostname, timeout)
        except BaseException:
            await self._stream.aclose()  # closes the socket before its first await
            raise

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class CancelSafeBackend:
    """``backend`` (httpcore's or httpcore2's ``AnyIOBackend()``) with its streams closed
    when their TLS handshake is cancelled."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> _ClosedOnCancel:
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _ClosedOnCancel(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> _ClosedOnCancel:
        stream = await self._backend.connect_unix_socket(path, timeout, socket_options)
        return _ClosedOnCancel(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def cancel_safe_pool(httpcore: ModuleType, ssl_context: ssl.SSLContext, limits: Any) -> Any:
    """``httpcore.AsyncConnectionPool`` (``httpcore``: the module of httpcore or httpcore2)
    with ``limits`` (an ``httpx.Limits`` or ``httpx2.Limits``), TLS by ``ssl_context``, over
    :class:`CancelSafeBackend`: what ``AsyncHTTPTransport`` builds as its ``_pool``."""
    return httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=CancelSafeBackend(httpcore.AnyIOBackend()),
    )
