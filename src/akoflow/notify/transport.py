"""The webhooks' HTTP transport: httpx's own, except that a request cancelled during its TLS
handshake closes its socket.

httpcore (as httpcore2, see :mod:`akoflow.runtimes.kubernetes.http`) closes a stream whose
handshake fails, but not one whose handshake is cancelled (``except Exception``), and the
connection is not yet the pool's: the socket stays open until the garbage collector finds it.
A try is cut by cancelling it (its ``asyncio.timeout``, or the engine stopping), so a receiver
that accepts connections and never answers the handshake kept one socket per try.

Proxies from the environment keep httpx's own transports (their mounts are made by the
client).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx


class _ClosedOnCancel(httpcore.AsyncNetworkStream):
    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            return await self._stream.start_tls(ssl_context, server_hostname, timeout)
        except BaseException:
            await self._stream.aclose()  # closes the socket before its first await
            raise

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _CancelSafeBackend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _ClosedOnCancel(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_unix_socket(path, timeout, socket_options)
        return _ClosedOnCancel(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class CancelSafeTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport()`` (TLS verified with the default CAs, or those named by
    SSL_CERT_FILE / SSL_CERT_DIR; HTTP/1.1) over :class:`_CancelSafeBackend`."""

    def __init__(self) -> None:
        super().__init__()
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx's
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=True, trust_env=True),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_CancelSafeBackend(),
        )
